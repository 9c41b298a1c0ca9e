// The live stream across a server restart: the page keeps its session and its stream reconnects by
// itself. The test runs a server of its own (PLUGWATCH_BIN), so that it can stop and start it.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

import { assert, failedResource, freePort, signIn, startServer, stopServer, test } from "./lib.mjs";

const bin = process.env.PLUGWATCH_BIN || "";
const scratch = process.env.PLUGWATCH_SCRATCH || "";
const PASSWORD = "restart test password";

test("the-live-stream-reconnects-after-a-restart", async (t) => {
  if (!bin || !scratch) t.skip("no PLUGWATCH_BIN / PLUGWATCH_SCRATCH");
  const dir = join(scratch, "restart");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  let child = await startServer(bin, port, dir, PASSWORD);
  try {
    // While the server is down the browser's reconnection attempts fail: expected.
    t.console.allow(failedResource("/api/v1/live", 0), "reconnecting while the server restarts");
    t.console.allow((m) => /ERR_CONNECTION_REFUSED|net::ERR/.test(m.text || ""), "reconnecting while the server restarts");
    const base = `http://127.0.0.1:${port}`;
    await t.page.goto(`${base}/plugin-monitoring`);
    await signIn(t.page, { username: "admin", password: PASSWORD });
    await t.page.waitForFunction(() => document.querySelector("#live")?.dataset.state === "connected");
    await stopServer(child);
    await t.page.waitForFunction(() => document.querySelector("#live").dataset.state === "reconnecting", null, { timeout: 15_000 });
    child = await startServer(bin, port, dir, PASSWORD);
    await t.page.waitForFunction(() => document.querySelector("#live").dataset.state === "connected", null, { timeout: 20_000 });
    assert.equal(new URL(t.page.url()).pathname, "/plugin-monitoring", "still on the dashboard, still signed in");
  } finally {
    await stopServer(child);
  }
});
