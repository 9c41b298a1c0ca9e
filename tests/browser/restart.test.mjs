// The live stream across a server restart: the page keeps its session and its stream reconnects by
// itself. The test runs a server of its own (PLUGWATCH_BIN), so that it can stop and start it.

import { spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

import { assert, failedResource, signIn, test } from "./lib.mjs";

const bin = process.env.PLUGWATCH_BIN || "";
const scratch = process.env.PLUGWATCH_SCRATCH || "";
const PASSWORD = "restart test password";

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** Starts `plugwatch serve` on `port` over `dir` and waits (at most 60 s) until it answers /readyz. */
async function start(port, dir) {
  const child = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir], {
    env: { ...process.env, PLUGWATCH_ADMIN_PASSWORD: PASSWORD, PLUGWATCH_LOG: "warn" },
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

function stop(child) {
  return new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGTERM"); });
}

test("the-live-stream-reconnects-after-a-restart", async (t) => {
  if (!bin || !scratch) t.skip("no PLUGWATCH_BIN / PLUGWATCH_SCRATCH");
  const dir = join(scratch, "restart");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  let child = await start(port, dir);
  try {
    // While the server is down the browser's reconnection attempts fail: expected.
    t.console.allow(failedResource("/api/v1/live", 0), "reconnecting while the server restarts");
    t.console.allow((m) => /ERR_CONNECTION_REFUSED|net::ERR/.test(m.text || ""), "reconnecting while the server restarts");
    const base = `http://127.0.0.1:${port}`;
    await t.page.goto(`${base}/plugin-monitoring`);
    await signIn(t.page, { username: "admin", password: PASSWORD });
    await t.page.waitForFunction(() => document.querySelector("#live")?.dataset.state === "connected");
    await stop(child);
    await t.page.waitForFunction(() => document.querySelector("#live").dataset.state === "reconnecting", null, { timeout: 15_000 });
    child = await start(port, dir);
    await t.page.waitForFunction(() => document.querySelector("#live").dataset.state === "connected", null, { timeout: 20_000 });
    assert.equal(new URL(t.page.url()).pathname, "/plugin-monitoring", "still on the dashboard, still signed in");
  } finally {
    await stop(child);
  }
});
