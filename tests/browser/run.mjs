// plugwatch's browser tests: `node run.mjs [name-part …]` runs every test registered by the `*.test.mjs`
// files beside it (or those whose name contains one of the arguments) in Debian's Chromium against the
// server at PLUGWATCH_URL, signing in with PLUGWATCH_USERNAME (default admin) and PLUGWATCH_PASSWORD.
// `cargo xtask browser` starts a demo server and runs this. Each test gets a fresh browser context; it
// fails on a thrown error, a timeout, or a console error or page error it did not expect. Prints one line
// per test with its duration and exits non-zero if any failed.

import { readdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, Skip, collectConsole, config, formatConsoleErrors, registered, testContext } from "./lib.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const filters = process.argv.slice(2);

function fail(message) {
  console.error(`browser: ${message}`);
  process.exit(2);
}

if (!config.url) fail("set PLUGWATCH_URL to the server under test (`cargo xtask browser` does)");
if (!config.password) fail("set PLUGWATCH_PASSWORD to the admin password (`cargo xtask browser` does)");
if (!config.chromium) fail("no `chromium` on PATH (Debian: apt-get install chromium), or set CHROMIUM");

for (const file of readdirSync(here).filter((f) => f.endsWith(".test.mjs")).sort()) {
  await import(`./${file}`);
}
const selected = registered.filter((t) => filters.length === 0 || filters.some((f) => t.name.includes(f)));
if (selected.length === 0) fail(`no test matches ${filters.join(", ") || "(no test files)"}`);
if (filters.length === 0) rmSync(config.screenshots, { recursive: true, force: true });

/** Rejects after `ms`, so that no test can hang the run. */
function deadline(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return { promise, clear: () => clearTimeout(timer) };
}

async function runOne(browser, { name, fn }) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
  context.setDefaultTimeout(config.actionTimeout);
  context.setDefaultNavigationTimeout(config.navigationTimeout);
  const consoleLog = collectConsole(context);
  const limit = deadline(config.testTimeout, `test ${name}`);
  try {
    const page = await context.newPage();
    await Promise.race([fn(testContext(name, context, page, consoleLog)), limit.promise]);
    const unexpected = consoleLog.unexpected();
    if (unexpected.length > 0) {
      throw new Error(`${unexpected.length} unexpected console or page error(s):\n${formatConsoleErrors(unexpected)}`);
    }
  } finally {
    limit.clear();
    await context.close().catch(() => {});
  }
}

/** An error's message and the frames of its stack in the test files (not playwright's, node's or ours). */
function describe(error) {
  if (!(error instanceof Error)) return String(error);
  const stack = error.stack || "";
  const after = stack.indexOf(error.message);
  const frames = (after >= 0 ? stack.slice(after + error.message.length) : stack).split("\n");
  const ours = frames.filter((l) => /^\s+at /.test(l) && !/node_modules|node:|run\.mjs|lib\.mjs/.test(l));
  return [error.message.replace(/\x1b\[[0-9;]*m/g, ""), ...ours.map((l) => l.trim())].join("\n  ");
}

const started = performance.now();
const browser = await chromium.launch({
  executablePath: config.chromium,
  args: CHROMIUM_ARGS,
  headless: true,
  timeout: 30_000,
});
let passed = 0;
let failed = 0;
let skipped = 0;
try {
  console.log(`browser: ${selected.length} test(s) against ${config.url} in ${browser.version()}`);
  for (const t of selected) {
    const testStarted = performance.now();
    const seconds = () => ((performance.now() - testStarted) / 1000).toFixed(1);
    try {
      await runOne(browser, t);
      passed++;
      console.log(`ok    ${t.name} (${seconds()} s)`);
    } catch (error) {
      if (error instanceof Skip) {
        skipped++;
        console.log(`skip  ${t.name} (${seconds()} s): ${error.message}`);
        continue;
      }
      failed++;
      console.log(`FAIL  ${t.name} (${seconds()} s)`);
      console.log(`  ${describe(error)}`.replace(/\n/g, "\n  "));
    }
  }
} finally {
  await browser.close();
}
const total = ((performance.now() - started) / 1000).toFixed(1);
console.log(`browser: ${total} s; screenshots in ${config.screenshots}`);
console.log(`browser: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
