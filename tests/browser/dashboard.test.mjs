// The dashboard (/plugin-monitoring) against the demo server: live numbers, charts, actions, uploads,
// alerts, roles, escaping of what plugin authors control, accessibility, and signing out.

import { readFileSync } from "node:fs";
import { join } from "node:path";

import { assert, call, failedResource, signIn, test } from "./lib.mjs";

const DASHBOARD = "/plugin-monitoring";
const fixtures = process.env.PLUGWATCH_FIXTURES || "";

/** Signs in and opens `path` of the dashboard. */
async function open(t, path = "") {
  await t.page.goto(t.url(`${DASHBOARD}${path}`));
  await signIn(t.page);
  await t.page.waitForURL((u) => u.pathname.startsWith(DASHBOARD));
}

test("overview-lists-the-demo-plugins-and-updates-live", async (t) => {
  await open(t);
  const rows = t.page.locator("#plugins tbody tr");
  await rows.first().waitFor();
  const names = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.plugin));
  assert.ok(names.length >= 3, `the demo plugins are listed: ${names}`);
  // A live update arrives and changes what is shown, without a reload.
  const live = t.page.locator("#live");
  await t.page.waitForFunction(() => document.querySelector("#live").dataset.state === "connected");
  const seq = Number(await live.getAttribute("data-seq"));
  const before = await t.page.locator("#plugins tbody").innerText();
  const navigations = [];
  t.page.on("framenavigated", (f) => f === t.page.mainFrame() && navigations.push(f.url()));
  await t.page.waitForFunction((s) => Number(document.querySelector("#live").dataset.seq) > s, seq, { timeout: 12_000 });
  await t.page.waitForFunction((b) => document.querySelector("#plugins tbody").innerText !== b, before, { timeout: 12_000 });
  assert.deepEqual(navigations, [], "no reload");
  // Sorting is done by the server, and says so to assistive technology.
  await t.page.getByRole("button", { name: "Requests/s" }).click();
  await t.page.locator('th[aria-sort="descending"]').waitFor();
  await t.screenshot("overview");
  await t.axe();
  // A phone's width: the table scrolls within its box, the page does not.
  await t.page.setViewportSize({ width: 390, height: 844 });
  const overflow = await t.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone`);
  await t.screenshot("overview-phone");
});

test("plugin-page-draws-its-charts-and-toggles-the-plugin", async (t) => {
  await open(t);
  const first = t.page.locator("#plugins tbody tr th a").first();
  const name = await first.innerText();
  await first.click();
  await t.page.waitForURL((u) => u.pathname === `${DASHBOARD}/plugins/${encodeURIComponent(name)}`);
  await t.page.locator('#charts .chart[data-chart="latency"] canvas').waitFor();
  const painted = await t.page.evaluate(() => [...document.querySelectorAll("#charts canvas")].some((c) => {
    const ctx = c.getContext("2d");
    const { data } = ctx.getImageData(0, 0, c.width, c.height);
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
    return false;
  }));
  assert.ok(painted, "a chart canvas is not blank");
  await t.page.locator("#headroom tr").first().waitFor();
  await t.screenshot("plugin");
  await t.axe();
  await t.page.getByRole("button", { name: "Disable" }).click();
  await t.page.getByRole("button", { name: "Enable" }).waitFor();
  await t.page.getByText("disabled", { exact: true }).first().waitFor();
  await t.page.getByRole("button", { name: "Enable" }).click();
  await t.page.getByRole("button", { name: "Disable" }).waitFor();
});

test("a-bad-upload-shows-the-runtimes-reason", async (t) => {
  if (!fixtures) t.skip("no PLUGWATCH_FIXTURES");
  await open(t);
  const first = t.page.locator("#plugins tbody tr th a").first();
  const name = await first.innerText();
  await first.click();
  t.console.allow(failedResource("/api/v1/plugins", 422), "the refused upload");
  t.console.allow(failedResource("/api/v1/plugins", 400), "the refused upload");
  await t.page.locator("#upload-manifest").fill(JSON.stringify({ name, version: "9.9.9" }));
  await t.page.locator("#upload-component").setInputFiles(join(fixtures, "not-a-component.wasm"));
  await t.page.getByRole("button", { name: "Upload" }).click();
  const error = t.page.locator("#upload-error.error");
  await error.waitFor();
  const text = await error.innerText();
  assert.match(text, /WebAssembly|component|magic/i, `the reason is shown: ${text}`);
});

test("what-a-plugin-author-controls-renders-as-text", async (t) => {
  if (!fixtures) t.skip("no PLUGWATCH_FIXTURES");
  await open(t);
  let dialogs = 0;
  t.page.on("dialog", (d) => { dialogs++; d.dismiss(); });
  const manifest = { name: "hostile", version: "1.0.0", description: "<img src=x onerror=alert(1)> <script>alert(2)</script>" };
  const uploaded = await t.page.evaluate(async ({ manifest, wasm }) => {
    const me = await (await fetch("/api/v1/auth/me")).json();
    const body = new FormData();
    body.append("manifest", JSON.stringify(manifest));
    body.append("component", new Blob([new Uint8Array(wasm)]), "hostile.wasm");
    const r = await fetch("/api/v1/plugins", { method: "POST", headers: { "x-csrf-token": me.csrf_token }, body });
    return r.status;
  }, { manifest, wasm: [...readFileSync(join(fixtures, "hostile.wasm"))] });
  assert.ok(uploaded === 201 || uploaded === 409, `uploaded: ${uploaded}`);
  await call(t.page, "POST", "/api/v1/plugins/hostile/invoke", { hook: "order.created", input: {} });
  await t.page.goto(t.url(`${DASHBOARD}/plugins/hostile`));
  await t.page.locator("#runs tbody tr").first().waitFor();
  const html = await t.page.locator("main").innerHTML();
  assert.ok(!/<img[^>]*onerror/i.test(html) && !/<script>alert/i.test(html), "markup is not rendered");
  const text = await t.page.locator("main").innerText();
  assert.ok(text.includes("<script>alert(2)</script>"), "the error message shows as text");
  assert.ok(text.includes("<img src=x onerror=alert(1)>"), "the log line and description show as text");
  assert.equal(dialogs, 0, "no dialog opened");
});

test("an-alert-rule-shows-field-errors-then-fires-on-the-page", async (t) => {
  await open(t, "/alerts");
  t.console.allow(failedResource("/api/v1/alerts/rules", 422), "the invalid rule");
  const form = t.page.locator("#rule-form");
  await form.locator('[name="name"]').fill("Browser test: any traffic");
  await form.locator('[name="threshold"]').fill("5");
  await form.getByRole("button", { name: "Save rule" }).click();
  const error = form.locator('.field-error[data-field="threshold"]');
  await t.page.waitForFunction(() => document.querySelector('.field-error[data-field="threshold"]').textContent !== "");
  assert.match(await error.innerText(), /threshold/);
  // Fires at once on any demo plugin with traffic.
  await form.locator('[name="metric"]').selectOption("throughput");
  await form.locator('[name="threshold"]').fill("0");
  await form.locator('[name="window_secs"]').fill("60");
  await form.locator('[name="for_secs"]').fill("0");
  await form.locator('[name="no_data"]').selectOption("ok");
  await form.getByRole("button", { name: "Save rule" }).click();
  // The page is drawn again with the new rule, and the notice is in the new page.
  await t.page.locator("#rules tbody tr", { hasText: "Browser test: any traffic" }).waitFor();
  assert.match(await t.page.locator("#alerts-message.notice").innerText(), /Saved rule Browser test: any traffic/);
  await t.page.locator("#alerts-now tbody tr", { hasText: "Browser test: any traffic" }).first().waitFor({ timeout: 20_000 });
  await t.screenshot("alerts");
  await t.axe();
  const rules = JSON.parse((await call(t.page, "GET", "/api/v1/alerts/rules")).body).rules;
  const rule = rules.find((r) => r.name === "Browser test: any traffic");
  assert.equal((await call(t.page, "DELETE", `/api/v1/alerts/rules/${rule.id}`)).status, 204);
});

test("a-viewer-sees-no-write-action", async (t) => {
  await open(t);
  const password = "viewer password for the browser test";
  const created = await call(t.page, "POST", "/api/v1/users", { username: "browser-viewer", role: "viewer", password });
  assert.ok(created.status === 201 || created.status === 409, created.body);
  await call(t.page, "POST", "/api/v1/auth/logout");
  await t.context.clearCookies();
  await t.page.goto(t.url(DASHBOARD));
  await signIn(t.page, { username: "browser-viewer", password });
  await t.page.locator("#plugins tbody tr").first().waitFor();
  assert.equal(await t.page.locator('nav a[data-nav="users"]').isVisible(), false, "no users page");
  await t.page.locator("#plugins tbody tr th a").first().click();
  await t.page.locator("#charts canvas").first().waitFor();
  for (const action of ["disable", "enable", "activate", "rollback"]) {
    assert.equal(await t.page.locator(`[data-action="${action}"]`).count(), 0, `no ${action} button`);
  }
  assert.equal(await t.page.locator("#upload").count(), 0, "no upload form");
  await t.page.goto(t.url(`${DASHBOARD}/alerts`));
  await t.page.locator("#rules").waitFor();
  assert.equal(await t.page.locator("#rule-form").count(), 0, "no rule form");
  assert.equal(await t.page.locator('[data-action="silence"], [data-action="test-channel"]').count(), 0);
});

test("admin-pages-and-sign-out", async (t) => {
  await open(t, "/audit");
  await t.page.locator("#audit tbody tr").first().waitFor();
  await t.screenshot("audit");
  await t.axe();
  await t.page.getByRole("link", { name: "Users & tokens" }).click();
  await t.page.locator("#users tbody tr").first().waitFor();
  await t.page.locator('[name="token-name"]').fill(`browser-${Date.now()}`);
  await t.page.getByRole("button", { name: "Create" }).click();
  await t.page.locator("#token-secret").waitFor();
  assert.ok((await t.page.locator("#token-secret").innerText()).length > 20, "the new token is shown once");
  await t.screenshot("users");
  await t.axe();
  await t.page.getByRole("button", { name: "Sign out" }).click();
  await t.page.waitForURL((u) => u.pathname === "/login");
  const response = await t.page.goto(t.url(DASHBOARD));
  assert.equal(new URL(t.page.url()).pathname, "/login", "signed out: the dashboard asks to sign in again");
  assert.equal(response.status(), 200);
});
