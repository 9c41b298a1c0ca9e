// Helpers for plugwatch's browser tests: the settings, registering tests, signing in, console and page
// errors, screenshots and axe-core checks. `run.mjs` runs every `*.test.mjs` beside this file.
//
// A test is `test("name", async (t) => { ... })`; `t` carries:
//   t.page, t.context       a fresh browser context (no cookies, no storage) and its first page
//   t.url(path)             an absolute URL on the server under test
//   t.console               what the context's pages logged; the test fails on any console error or
//                           uncaught page error unless `t.console.allow(predicate, why)` expected it
//   t.screenshot(name?)     target/browser/<name>-light.png and -dark.png (name: the test's)
//   t.axe(options?)         axe-core on the current page, light and dark: fails on serious or critical
//   t.skip(reason)          ends the test as skipped
// Every wait is bounded: the context's default timeouts below, and the runner's per-test timeout.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

export { assert };

const here = fileURLToPath(new URL(".", import.meta.url));

/** The settings, from the environment. */
export const config = {
  url: (process.env.PLUGWATCH_URL || "").replace(/\/+$/, ""),
  username: process.env.PLUGWATCH_USERNAME || "admin",
  password: process.env.PLUGWATCH_PASSWORD || "",
  chromium: process.env.CHROMIUM || which("chromium"),
  screenshots: process.env.PLUGWATCH_SCREENSHOTS || fileURLToPath(new URL("../../target/browser/", import.meta.url)),
  /** Actions (click, fill, waitFor) and navigations, in milliseconds. */
  actionTimeout: 10_000,
  navigationTimeout: 20_000,
  /** A whole test, including its screenshots and axe runs. */
  testTimeout: 60_000,
};

/** The flags Chromium runs with: no sandbox (root in a container), nothing that reaches the internet. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

function which(name) {
  try {
    return execFileSync("which", [name], { encoding: "utf8" }).trim();
  } catch {
    return "";
  }
}

// ---------------------------------------------------------------------------------------------------
// Registering tests

/** @type {{name: string, fn: (t: TestContext) => Promise<void>}[]} */
export const registered = [];

/** Registers a test; `name` is also its screenshots' file name, so keep it a slug (`sign-in-page`). */
export function test(name, fn) {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`test name \`${name}\` is not a slug`);
  if (registered.some((t) => t.name === name)) throw new Error(`two tests are named \`${name}\``);
  registered.push({ name, fn });
}

/** Thrown by `t.skip`: the runner reports the test as skipped. */
export class Skip extends Error {}

/**
 * What one test gets: built by the runner for each test.
 * @typedef {ReturnType<typeof testContext>} TestContext
 */
export function testContext(name, context, page, consoleLog) {
  return {
    name,
    context,
    page,
    console: consoleLog,
    url: (path = "/") => new URL(path, config.url + "/").href,
    screenshot: (shot = name) => screenshot(page, shot),
    axe: (options) => axeCheck(page, options),
    skip: (reason) => {
      throw new Skip(reason);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Console messages and page errors

/**
 * Collects the console messages of type `error` and the uncaught errors of every page in `context`.
 * `allow(predicate, why)` expects some of them (a predicate gets {text, url, type}); `unexpected()` is the
 * rest, which the runner fails the test on.
 */
export function collectConsole(context) {
  const errors = [];
  const allowed = [];
  context.on("console", (message) => {
    if (message.type() !== "error") return;
    errors.push({ type: "console", text: message.text(), url: message.location().url || "" });
  });
  context.on("weberror", (webError) => {
    const error = webError.error();
    errors.push({ type: "pageerror", text: error.stack || String(error), url: webError.page()?.url() || "" });
  });
  return {
    errors,
    allow(predicate, why) {
      allowed.push({ predicate, why });
    },
    unexpected() {
      return errors.filter((e) => !allowed.some((a) => a.predicate(e)));
    },
  };
}

/**
 * A predicate for the console error Chromium logs when a fetch gets an error status: "Failed to load
 * resource: the server responded with a status of 401 (Unauthorized)", for exactly that path and status.
 */
export function failedResource(path, status) {
  return (e) =>
    e.type === "console" &&
    e.text.startsWith("Failed to load resource:") &&
    e.text.includes(`status of ${status} `) &&
    new URL(e.url || "about:blank").pathname === path;
}

export function formatConsoleErrors(errors) {
  return errors.map((e) => `  ${e.type}: ${e.text}${e.url ? `\n    at ${e.url}` : ""}`).join("\n");
}

// ---------------------------------------------------------------------------------------------------
// Signing in

/**
 * Signs in through the form of the sign-in page the page shows (or opens `/login?next=…` first when
 * `next` is given), and waits until the browser has left the sign-in page.
 */
export async function signIn(page, { username = config.username, password = config.password, next } = {}) {
  if (next !== undefined) {
    await page.goto(`${config.url}/login?next=${encodeURIComponent(next)}`);
  }
  await fillSignIn(page, { username, password });
  await page.waitForURL((url) => url.pathname !== "/login");
}

/** Fills and submits the sign-in form without waiting for the outcome (for failures). */
export async function fillSignIn(page, { username = config.username, password = config.password } = {}) {
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

// ---------------------------------------------------------------------------------------------------
// Screenshots

/** Saves a full-page screenshot in each colour scheme: `<dir>/<name>-light.png`, `<name>-dark.png`. */
export async function screenshot(page, name) {
  mkdirSync(config.screenshots, { recursive: true });
  const paths = [];
  for (const colorScheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme });
    const path = `${config.screenshots}/${name}-${colorScheme}.png`;
    await page.screenshot({ path, fullPage: true, animations: "disabled" });
    paths.push(path);
  }
  await page.emulateMedia({ colorScheme: "light" });
  return paths;
}

// ---------------------------------------------------------------------------------------------------
// Accessibility

const AXE_SOURCE = readFileSync(`${here}/node_modules/axe-core/axe.min.js`, "utf8");

/** The impacts a check fails on. */
export const FAILING_IMPACTS = ["serious", "critical"];

/**
 * Runs axe-core on the page as it is now, in each colour scheme (contrast differs), and throws on any
 * violation of serious or critical impact, listing each rule and the elements that break it. Lesser ones
 * are printed as notes. `options.context` narrows what is checked (axe's context: a selector, or
 * {include, exclude}); `options.rules` is axe's per-rule configuration, for a rule known not to apply.
 *
 * axe is evaluated in the page through the DevTools protocol rather than added as a <script>: plugwatch's
 * pages have a Content-Security-Policy without 'unsafe-inline', which refuses an inline script tag (and
 * would log a console error), and the test must not weaken that policy to check the page.
 */
export async function axeCheck(page, { context, rules, colorSchemes = ["light", "dark"] } = {}) {
  const failures = [];
  const notes = [];
  for (const colorScheme of colorSchemes) {
    await page.emulateMedia({ colorScheme });
    if (!(await page.evaluate(() => typeof window.axe === "object"))) {
      await page.evaluate(AXE_SOURCE);
    }
    const result = await page.evaluate(
      ([context, rules]) =>
        window.axe.run(context ?? document, {
          resultTypes: ["violations"],
          ...(rules ? { rules } : {}),
        }),
      [context ?? null, rules ?? null],
    );
    for (const violation of result.violations) {
      (FAILING_IMPACTS.includes(violation.impact) ? failures : notes).push({ colorScheme, ...violation });
    }
  }
  await page.emulateMedia({ colorScheme: "light" });
  for (const note of notes) {
    console.log(`    axe note (${note.impact}, ${note.colorScheme}): ${note.id}: ${note.help}`);
  }
  if (failures.length > 0) {
    throw new Error(`axe found ${failures.length} serious or critical violation(s):\n${formatAxe(failures)}`);
  }
}

function formatAxe(violations) {
  return violations
    .map((v) => {
      const nodes = v.nodes
        .slice(0, 10)
        .map((n) => `      ${n.target.join(" ")}: ${n.failureSummary?.replace(/\s*\n\s*/g, "; ") ?? ""}`)
        .join("\n");
      const more = v.nodes.length > 10 ? `\n      … and ${v.nodes.length - 10} more` : "";
      return `  [${v.impact}, ${v.colorScheme}] ${v.id}: ${v.help}\n    ${v.helpUrl}\n${nodes}${more}`;
    })
    .join("\n");
}

/** A JSON API call from the page's session (cookie and CSRF token). */
export async function call(page, method, path, body) {
  return page.evaluate(async ({ method, path, body }) => {
    const me = await (await fetch("/api/v1/auth/me")).json();
    const headers = { "x-csrf-token": me.csrf_token || "" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: await r.text() };
  }, { method, path, body });
}

// ---- A server of a test's own ----

/** A free loopback port. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** Starts `bin serve` on `port` over `dir` (admin password `password`, extra `env`) and waits (at most
 * 60 s) until it answers /readyz. A test that needs a server of its own (to stop it, to restore into it). */
export async function startServer(bin, port, dir, password, env = {}) {
  const child = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir], {
    env: { ...process.env, PLUGWATCH_ADMIN_PASSWORD: password, PLUGWATCH_LOG: "warn", ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return child;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) { child.kill("SIGKILL"); throw new Error("the server did not get ready in 60 s"); }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function stopServer(child) {
  return new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGTERM"); });
}
