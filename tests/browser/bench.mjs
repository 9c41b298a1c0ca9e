// The dashboard's figures, on a server of its own (PLUGWATCH_BIN) with 1,000 plugins:
// - the overview API (a page of 50 with sparklines): median and p95 response time over 30 calls;
// - headless Chromium: navigation to the overview table drawn, median of 5;
// - server CPU per minute with 0, 1 and 10 open live streams of a 50-plugin page, and bytes per event;
// - the bytes the dashboard loads.
// Run with `cargo xtask bench-dashboard`. Figures, not a test: it prints them and fails only if it cannot
// measure.

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, config } from "./lib.mjs";

const bin = process.env.PLUGWATCH_BIN;
const scratch = process.env.PLUGWATCH_SCRATCH;
const fixtures = process.env.PLUGWATCH_FIXTURES;
const PASSWORD = "dashboard bench password";
const PLUGINS = Number(process.env.PLUGINS || 1000);

const port = await new Promise((resolve) => {
  const s = createServer();
  s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const base = `http://127.0.0.1:${port}`;
const dir = join(scratch, "data");
mkdirSync(dir, { recursive: true });
const server = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir], {
  env: { ...process.env, PLUGWATCH_ADMIN_PASSWORD: PASSWORD, PLUGWATCH_LOG: "warn" },
  stdio: ["ignore", "ignore", "inherit"],
});
process.on("exit", () => server.kill("SIGKILL"));
for (let i = 0; ; i++) {
  try { if ((await fetch(`${base}/readyz`)).ok) break; } catch { /* starting */ }
  if (i > 600) throw new Error("the server did not start");
  await new Promise((r) => setTimeout(r, 100));
}

const login = await fetch(`${base}/api/v1/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "admin", password: PASSWORD }) });
const cookie = login.headers.get("set-cookie").split(";")[0];
const { csrf_token: csrf } = await login.json();
const headers = { cookie, "x-csrf-token": csrf };

const echo = readFileSync(join(fixtures, "echo.wasm"));
let started = Date.now();
for (let i = 0; i < PLUGINS; i++) {
  const body = new FormData();
  body.append("manifest", JSON.stringify({ name: `plugin-${String(i).padStart(4, "0")}`, version: "1.0.0" }));
  body.append("component", new Blob([echo]), "echo.wasm");
  const r = await fetch(`${base}/api/v1/plugins`, { method: "POST", headers, body });
  if (r.status !== 201) throw new Error(`upload ${i}: ${r.status} ${await r.text()}`);
}
console.log(`uploaded ${PLUGINS} plugins in ${((Date.now() - started) / 1000).toFixed(1)} s`);
// Some traffic, so that rows have numbers.
for (let i = 0; i < PLUGINS; i += 7) {
  await fetch(`${base}/api/v1/plugins/plugin-${String(i).padStart(4, "0")}/invoke`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: '{"hook":"h","input":1}' });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const p95 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]; };

// The overview API.
const times = [];
let size = 0;
for (let i = 0; i < 30; i++) {
  const t0 = performance.now();
  const r = await fetch(`${base}/api/v1/overview?per_page=50&page=${1 + (i % 20)}&sort=rps&sparkline=true`, { headers });
  size = (await r.text()).length;
  times.push(performance.now() - t0);
}
console.log(`overview API, 50 of ${PLUGINS} plugins with sparklines: median ${median(times).toFixed(1)} ms, p95 ${p95(times).toFixed(1)} ms, ${size} bytes`);
const all = [];
for (let i = 0; i < 10; i++) {
  const t0 = performance.now();
  await (await fetch(`${base}/api/v1/overview`, { headers })).text();
  all.push(performance.now() - t0);
}
console.log(`overview API, all ${PLUGINS} plugins: median ${median(all).toFixed(1)} ms`);

// Chromium: navigation to the table drawn.
const browser = await chromium.launch({ executablePath: config.chromium, args: CHROMIUM_ARGS, headless: true });
const context = await browser.newContext();
const [name, value] = cookie.split("=");
await context.addCookies([{ name, value, url: base }]);
const page = await context.newPage();
const drawn = [];
for (let i = 0; i < 6; i++) {
  const t0 = performance.now();
  await page.goto(`${base}/plugin-monitoring`);
  await page.locator("#plugins tbody tr").nth(49).waitFor();
  if (i > 0) drawn.push(performance.now() - t0);
}
console.log(`Chromium, navigation to the overview table drawn (${PLUGINS} plugins, 50 a page): median ${median(drawn).toFixed(0)} ms, max ${Math.max(...drawn).toFixed(0)} ms`);
const loaded = await page.evaluate(() => performance.getEntriesByType("resource").concat(performance.getEntriesByType("navigation")).map((e) => [e.name, e.decodedBodySize]));
const assets = loaded.filter(([n]) => n.includes("/plugin-monitoring")).reduce((sum, [, b]) => sum + b, 0);
console.log(`the dashboard's files: ${assets} bytes uncompressed (${loaded.filter(([n]) => n.includes("/plugin-monitoring")).length} files)`);
await browser.close();

// Server CPU with 0, 1 and 10 open live streams.
const cpu = () => { const f = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" "); return (Number(f[11]) + Number(f[12])) / 100; };
const names = Array.from({ length: 50 }, (_, i) => `plugin-${String(i).padStart(4, "0")}`).join(",");
async function streams(n, seconds) {
  const controllers = [];
  const bytes = [];
  for (let i = 0; i < n; i++) {
    const controller = new AbortController();
    controllers.push(controller);
    fetch(`${base}/api/v1/live?plugins=${names}`, { headers, signal: controller.signal }).then(async (r) => {
      const reader = r.body.getReader();
      let text = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
        let end;
        while ((end = text.indexOf("\n\n")) >= 0) { bytes.push(end + 2); text = text.slice(end + 2); }
      }
    }).catch(() => {});
  }
  await new Promise((r) => setTimeout(r, 1000));
  const c0 = cpu();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const used = cpu() - c0;
  for (const c of controllers) c.abort();
  return { used, bytes };
}
const seconds = Number(process.env.SECONDS_PER_RUN || 60);
const idle = await streams(0, seconds);
const one = await streams(1, seconds);
const ten = await streams(10, seconds);
console.log(`server CPU over ${seconds} s: no page ${idle.used.toFixed(2)} s, 1 page ${one.used.toFixed(2)} s, 10 pages ${ten.used.toFixed(2)} s; 10 pages / 1 page = ${(ten.used / Math.max(0.01, one.used)).toFixed(2)}; beyond idle: ${((ten.used - idle.used) / Math.max(0.01, one.used - idle.used)).toFixed(2)}`);
console.log(`bytes per event for a 50-plugin page: median ${median(one.bytes)} (the first, sent at once, included)`);
server.kill("SIGTERM");
process.exit(0);
