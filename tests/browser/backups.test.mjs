// The backups page against a server of its own (PLUGWATCH_BIN): take a backup, verify it, restore it
// (the server restarts in place and the page comes back by itself), with the schedule's state shown,
// accessibility checked, and no backups link for a viewer.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

import { assert, call, failedResource, freePort, signIn, startServer, stopServer, test } from "./lib.mjs";

const bin = process.env.PLUGWATCH_BIN || "";
const scratch = process.env.PLUGWATCH_SCRATCH || "";
const PASSWORD = "backups test password";

test("backups-are-taken-verified-and-restored-from-the-page", async (t) => {
  if (!bin || !scratch) t.skip("no PLUGWATCH_BIN / PLUGWATCH_SCRATCH");
  const dir = join(scratch, "backups");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const child = await startServer(bin, port, dir, PASSWORD, { PLUGWATCH_BACKUP__ENABLED: "false" });
  try {
    // While the server restarts for the restore, the page's live stream and probes fail: expected.
    t.console.allow(failedResource("/api/v1/live", 0), "the restore restarts the server");
    t.console.allow((m) => /ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|net::ERR|Failed to load resource/.test(m.text || ""), "the restore restarts the server");
    const base = `http://127.0.0.1:${port}`;
    await t.page.goto(`${base}/plugin-monitoring/backups`);
    await signIn(t.page, { username: "admin", password: PASSWORD });
    await t.page.locator("#no-backups").waitFor();
    assert.match(await t.page.locator("#backup-schedule").innerText(), /off \(on demand only\)/);

    await t.page.getByRole("button", { name: "Back up now" }).click();
    await t.page.locator("#backups tbody tr").first().waitFor();
    assert.match(await t.page.locator("#backup-notice").innerText(), /taken/);
    assert.ok(!/\bnull\b|undefined/.test(await t.page.locator("#main").innerText()), "no placeholder leaks onto the page");
    await t.screenshot("backups");
    await t.axe();
    await t.page.getByRole("button", { name: "Verify" }).first().click();
    await t.page.getByText(/every checksum of its \d+ members matches/).waitFor();

    // A change after the backup, which the restore takes back.
    const created = await call(t.page, "POST", "/api/v1/users", { username: "after-the-backup", role: "viewer", password: "a viewer password 123" });
    assert.equal(created.status, 201, created.body);
    t.page.on("dialog", (dialog) => dialog.accept());
    await t.page.getByRole("button", { name: "Restore" }).first().click();
    await t.page.getByText(/Restored plugwatch-backup-.* is restarting/).waitFor({ timeout: 30_000 });
    // The page reloads by itself once the server answers again, still signed in.
    await t.page.waitForFunction(() => document.querySelectorAll("#backups tbody tr").length === 2, null, { timeout: 60_000 });
    const reasons = await t.page.locator("#backups tbody tr td:nth-child(2)").allInnerTexts();
    assert.deepEqual(reasons.sort(), ["manual", "pre-restore"]);
    const users = JSON.parse((await call(t.page, "GET", "/api/v1/users")).body).users.map((u) => u.username);
    assert.deepEqual(users, ["admin"], "the user made after the backup is gone with the restored state");

    // A viewer has no backups page.
    const viewer = await call(t.page, "POST", "/api/v1/users", { username: "backup-viewer", role: "viewer", password: "a viewer password 456" });
    assert.equal(viewer.status, 201, viewer.body);
    await call(t.page, "POST", "/api/v1/auth/logout");
    await t.context.clearCookies();
    await t.page.goto(`${base}/plugin-monitoring`);
    await signIn(t.page, { username: "backup-viewer", password: "a viewer password 456" });
    await t.page.waitForFunction(() => document.querySelector("#whoami").textContent.includes("backup-viewer"));
    assert.equal(await t.page.locator('nav a[data-nav="backups"]').isVisible(), false, "no backups link");
    t.console.allow(failedResource("/api/v1/backups", 403), "a viewer opening the backups page");
    await t.page.goto(`${base}/plugin-monitoring/backups`);
    await t.page.getByText(/Cannot load this page: .*manage_backups/).waitFor();
  } finally {
    await stopServer(child);
  }
});
