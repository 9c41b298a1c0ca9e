// The plugwatch dashboard: a small single-page app over the JSON API and the live stream.
// Everything a plugin author controls reaches the page as text (textContent, never innerHTML).
"use strict";

const BASE = "/plugin-monitoring";
const state = { me: null, live: null, page: null };

// ---- DOM and formatting -------------------------------------------------------------------------------

/** An element with attributes (`on…` functions become listeners) and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const fmt = {
  num(v, digits = 1) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); },
  ms(v) { return v === null || v === undefined ? "–" : v < 1 ? `${(v * 1000).toFixed(0)} µs` : `${v.toFixed(1)} ms`; },
  pct(v) { return v === null || v === undefined ? "–" : `${(v * 100).toFixed(v < 0.1 ? 2 : 1)} %`; },
  bytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  time(t) { return t ? new Date(t).toLocaleString() : "–"; },
};

function status(text) { return h("span", { class: `status ${String(text).replace(/[^a-z_]/g, "")}` }, text); }

function can(permission) {
  const role = state.me && state.me.role;
  if (permission === "operate") return role === "admin" || role === "operator";
  if (permission === "admin") return role === "admin";
  return !!role;
}

// ---- API ----------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.field = body && body.error && body.error.field;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (options.method && options.method !== "GET" && state.me && state.me.csrf_token) {
    headers["x-csrf-token"] = state.me.csrf_token;
  }
  let body = options.body;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body, credentials: "same-origin" });
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
    throw new ApiError(401, null);
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ---- Live stream --------------------------------------------------------------------------------------

/** One EventSource per open page; it reconnects by itself. `onUpdate` gets each event's data. */
function openLive(plugins, onUpdate) {
  closeLive();
  const indicator = document.getElementById("live");
  const query = plugins.length ? `?plugins=${encodeURIComponent(plugins.join(","))}` : "";
  const source = new EventSource(`/api/v1/live${query}`);
  source.addEventListener("update", (event) => {
    indicator.dataset.state = "connected";
    const data = JSON.parse(event.data);
    indicator.textContent = `live · ${new Date(data.at).toLocaleTimeString()}`;
    indicator.dataset.seq = String(data.seq);
    onUpdate(data);
  });
  source.addEventListener("error", () => {
    indicator.dataset.state = "reconnecting";
    indicator.textContent = "reconnecting…";
  });
  state.live = source;
}

function closeLive() {
  if (state.live) state.live.close();
  state.live = null;
}

// ---- Router -------------------------------------------------------------------------------------------

const routes = [
  [/^\/?$/, () => overviewPage()],
  [/^\/plugins\/([^/]+)$/, (m) => pluginPage(decodeURIComponent(m[1]))],
  [/^\/alerts$/, () => alertsPage()],
  [/^\/audit$/, () => auditPage()],
  [/^\/users$/, () => usersPage()],
  [/^\/backups$/, () => backupsPage()],
];

async function route() {
  closeLive();
  const path = window.location.pathname.slice(BASE.length);
  const main = document.getElementById("main");
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    const target = a.getAttribute("href").slice(BASE.length) || "/";
    const current = target === "/" ? path === "" || path === "/" : path.startsWith(target);
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  for (const [pattern, page] of routes) {
    const m = path.match(pattern);
    if (m) {
      main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      try {
        await page(m);
      } catch (e) {
        if (e.status !== 401) main.replaceChildren(h("p", { class: "error", role: "alert" }, `Cannot load this page: ${e.message}`));
      }
      return;
    }
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: BASE }, "Back to the overview")));
}

function go(path) {
  window.history.pushState({}, "", path);
  route();
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const href = a.getAttribute("href");
  if (href && href.startsWith(BASE)) {
    event.preventDefault();
    go(href);
  }
});
window.addEventListener("popstate", route);

function setTitle(text) {
  document.title = `${text} · plugwatch`;
  return h("h1", {}, text);
}

// ---- Overview -----------------------------------------------------------------------------------------

const overview = { sort: "name", order: "asc", q: "", status: "", page: 1, perPage: 50 };

function drawSparkline(canvas, values) {
  const ctx = canvas.getContext("2d");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = 120 * ratio;
  canvas.height = 24 * ratio;
  ctx.scale(ratio, ratio);
  const max = Math.max(1, ...values);
  ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue("--c1").trim() || "#0072b2";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / Math.max(1, values.length - 1)) * 118 + 1;
    const y = 22 - (v / max) * 20;
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
}

function rowCells(row) {
  const live = row.live || {};
  return {
    status: status(row.status),
    version: row.version || "–",
    rps: fmt.num(live.rps, 2),
    p95: fmt.ms(live.p95_ms),
    error_rate: fmt.pct(live.error_rate),
    cpu: fmt.num(live.cpu_cores, 3),
    memory: fmt.bytes(live.memory_peak_bytes),
  };
}

function hostCards(host) {
  const card = (label, value, key) => h("div", { class: "card", dataset: { host: key } }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  if (!host) return [card("Host", "no sample yet", "none")];
  return [
    card("Host CPU", fmt.pct(host.cpu_usage), "cpu"),
    card("Host memory", `${fmt.bytes(host.memory_used_bytes)} of ${fmt.bytes(host.memory_total_bytes)}`, "memory"),
    card("Data disk", `${fmt.pct(host.disk_used_bytes / Math.max(1, host.disk_total_bytes))} used`, "disk"),
    card("plugwatch", `${fmt.bytes(host.process_rss_bytes)} · ${fmt.num(host.process_cpu_usage, 2)} cores`, "process"),
  ];
}

function alertList(alerts) {
  const firing = alerts.filter((a) => a.state !== "pending");
  if (!firing.length) return [];
  return [
    h("h2", {}, `Firing alerts (${firing.length})`),
    h("ul", { id: "alerts-firing" }, firing.map((a) => h("li", {},
      status(a.state), " ", h("strong", {}, a.rule), " — ",
      a.plugin ? h("a", { href: `${BASE}/plugins/${encodeURIComponent(a.plugin)}` }, `${a.plugin} ${a.version || ""}`) : "host",
      `: ${a.summary}`, a.silenced ? " (silenced)" : ""))),
  ];
}

async function overviewPage() {
  const main = document.getElementById("main");
  const params = new URLSearchParams({ sort: overview.sort, order: overview.order, page: overview.page, per_page: overview.perPage, sparkline: "true" });
  if (overview.q) params.set("q", overview.q);
  if (overview.status) params.set("status", overview.status);
  const [data, alerts] = await Promise.all([api(`/api/v1/overview?${params}`), api("/api/v1/alerts")]);
  const alertsBox = h("section", { class: "panel alerts-top", id: "alerts-top", "aria-label": "Firing alerts" }, alertList(alerts.alerts));
  const cards = h("div", { class: "cards", id: "host" }, hostCards(data.host));
  const columns = [["name", "Plugin"], ["status", null], ["version", null], ["rps", "Requests/s"], ["p95", "p95"], ["error_rate", "Errors"], ["cpu", "CPU (cores)"], ["memory", "Peak memory"], ["spark", null]];
  const labels = { status: "Status", version: "Version", spark: "Last hour" };
  const head = h("tr", {}, columns.map(([key, label]) => {
    if (!label) return h("th", { scope: "col" }, labels[key]);
    const sorted = overview.sort === key;
    return h("th", { scope: "col", "aria-sort": sorted ? (overview.order === "asc" ? "ascending" : "descending") : "none" },
      h("button", { type: "button", onclick: () => {
        if (overview.sort === key) overview.order = overview.order === "asc" ? "desc" : "asc";
        else { overview.sort = key; overview.order = key === "name" ? "asc" : "desc"; }
        overview.page = 1;
        overviewPage();
      } }, label));
  }));
  const body = h("tbody", {});
  const rows = new Map();
  for (const row of data.plugins) {
    const cells = rowCells(row);
    const canvas = h("canvas", { class: "sparkline", role: "img", "aria-label": `Requests per minute over the last hour for ${row.name}` });
    const tds = {};
    const tr = h("tr", { dataset: { plugin: row.name } },
      h("th", { scope: "row" }, h("a", { href: `${BASE}/plugins/${encodeURIComponent(row.name)}` }, row.name)),
      ...["status", "version", "rps", "p95", "error_rate", "cpu", "memory"].map((k) => (tds[k] = h("td", { class: k === "status" || k === "version" ? "" : "num", dataset: { col: k } }, cells[k]))),
      h("td", {}, canvas));
    body.append(tr);
    rows.set(row.name, tds);
    if (row.sparkline) requestAnimationFrame(() => drawSparkline(canvas, row.sparkline));
  }
  const filter = h("input", { id: "filter", type: "search", value: overview.q, placeholder: "name contains…" });
  const statusFilter = h("select", { id: "status-filter" }, ["", "running", "disabled", "loading", "failed", "empty"].map((s) => h("option", { value: s, selected: s === overview.status }, s || "any")));
  const apply = () => { overview.q = filter.value.trim(); overview.status = statusFilter.value; overview.page = 1; overviewPage(); };
  filter.addEventListener("change", apply);
  statusFilter.addEventListener("change", apply);
  const pages = Math.max(1, Math.ceil(data.total / overview.perPage));
  main.replaceChildren(
    setTitle("Overview"),
    alertsBox,
    cards,
    h("div", { class: "toolbar" }, h("label", {}, "Filter by name", filter), h("label", {}, "Status", statusFilter),
      h("span", { class: "muted", id: "count" }, `${data.total} plugins`)),
    h("div", { class: "table-wrap" }, h("table", { id: "plugins" }, h("caption", { class: "muted" }, "Numbers over the last minute; refreshed every 5 s"), h("thead", {}, head), body)),
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "prev-page", disabled: overview.page <= 1, onclick: () => { overview.page--; overviewPage(); } }, "Previous"),
      h("span", {}, `Page ${overview.page} of ${pages}`),
      h("button", { type: "button", id: "next-page", disabled: overview.page >= pages, onclick: () => { overview.page++; overviewPage(); } }, "Next")),
  );
  openLive(data.plugins.map((p) => p.name), (update) => {
    cards.replaceChildren(...hostCards(update.host));
    alertsBox.replaceChildren(...alertList(update.alerts));
    for (const [name, row] of Object.entries(update.plugins)) {
      const tds = rows.get(name);
      if (!tds) continue;
      const cells = rowCells(row);
      for (const [k, td] of Object.entries(tds)) td.replaceChildren(cells[k]);
    }
  });
}

// ---- Plugin page --------------------------------------------------------------------------------------

const RANGES = [["15m", 900], ["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800], ["30d", 2592000]];
const COLOURS = ["--c1", "--c2", "--c3", "--c4", "--c5", "--c6"].map((v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim());

function chart(container, title, points, series, range) {
  const width = Math.max(300, container.clientWidth - 16);
  const ink = getComputedStyle(document.body).color;
  const grid = getComputedStyle(document.documentElement).getPropertyValue("--line").trim();
  const data = [points.map((p) => p.t), ...series.map((s) => points.map(s.value))];
  const opts = {
    width, height: 200, title: undefined,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, dash: i % 2 ? [6, 3] : undefined, value: (u, v) => (v === null || v === undefined ? "–" : s.format(v)) }))],
    scales: { x: { time: true, range: () => range } },
    axes: [{ stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid } },
      { stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid }, values: (u, vals) => vals.map((v) => series[0].format(v)), size: 70 }],
    legend: { live: true },
  };
  container.replaceChildren(h("h2", {}, title));
  if (typeof uPlot === "undefined") { container.append(h("p", { class: "error" }, "The chart library did not load.")); return; }
  new uPlot(opts, data, container);
}

async function pluginPage(name) {
  const main = document.getElementById("main");
  const rangeSel = h("select", { id: "range" }, RANGES.map(([label, secs]) => h("option", { value: secs, selected: secs === 3600 }, label)));
  const [detail, headroom, runs] = await Promise.all([
    api(`/api/v1/plugins/${encodeURIComponent(name)}`),
    api(`/api/v1/plugins/${encodeURIComponent(name)}/headroom`).catch(() => null),
    api(`/api/v1/plugins/${encodeURIComponent(name)}/invocations?limit=50`),
  ]);
  const p = detail.plugin;
  const active = detail.versions.find((v) => v.active);
  const charts = h("div", { class: "chart-grid", id: "charts" });
  const message = h("p", { id: "action-message", role: "status" });
  const actions = h("div", { class: "toolbar", id: "actions" });
  if (can("operate")) {
    actions.append(...[
      p.enabled
        ? h("button", { type: "button", dataset: { action: "disable" }, onclick: () => act(`/api/v1/plugins/${encodeURIComponent(name)}/disable`, "Disabled.") }, "Disable")
        : h("button", { type: "button", dataset: { action: "enable" }, onclick: () => act(`/api/v1/plugins/${encodeURIComponent(name)}/enable`, "Enabled.") }, "Enable"),
      p.previous_version ? h("button", { type: "button", dataset: { action: "rollback" }, onclick: () => act(`/api/v1/plugins/${encodeURIComponent(name)}/rollback`, "Rolled back.") }, `Roll back to ${p.previous_version}`) : null,
    ].filter(Boolean));
  }
  async function act(path, done) {
    try { await api(path, { method: "POST" }); message.className = "notice"; message.textContent = done; await pluginPage(name); }
    catch (e) { message.className = "error"; message.textContent = e.message; }
  }
  const versions = h("table", { id: "versions" }, h("thead", {}, h("tr", {}, ["Version", "Created", "Size", "sha256", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, detail.versions.map((v) => h("tr", {}, h("td", {}, v.version, v.active ? " (active)" : ""), h("td", {}, fmt.time(v.created_at)), h("td", {}, fmt.bytes(v.size)), h("td", {}, v.sha256.slice(0, 12)),
      h("td", {}, !v.active && can("operate") ? h("button", { type: "button", dataset: { action: "activate" }, onclick: () => act(`/api/v1/plugins/${encodeURIComponent(name)}/versions/${encodeURIComponent(v.version)}/activate`, `Activated ${v.version}.`) }, "Activate") : "")))));
  const limits = active ? Object.entries(active.limits).map(([k, v]) => h("li", {}, `${k}: ${v}`)) : [];
  const config = active ? [...Object.entries(active.config).map(([k, v]) => h("li", {}, `${k} = ${v}`)), ...active.secret_keys.map((k) => h("li", {}, `${k} = •••• (secret, never shown)`))] : [];
  const headroomRows = headroom ? headroom.limits.map((l) => {
    const bar = h("span", {});
    const share = l.share === null ? null : Math.min(1, l.share);
    if (share === null) bar.className = "w0"; else { bar.style.width = `${(share * 100).toFixed(1)}%`; if (l.share >= 0.8) bar.className = "high"; }
    return h("tr", { dataset: { limit: l.limit } }, h("th", { scope: "row" }, l.limit), h("td", { class: "num" }, l.share === null ? "no data" : fmt.pct(l.share)), h("td", {}, h("div", { class: "bar", role: "img", "aria-label": `${l.limit} ${l.share === null ? "no data" : fmt.pct(l.share)} of its limit` }, bar)));
  }) : [];
  const failuresOnly = h("input", { type: "checkbox", id: "failures-only" });
  const runsBody = h("tbody", {});
  const fillRuns = (list) => runsBody.replaceChildren(...list.map((r) => h("tr", {},
    h("td", {}, fmt.time(r.started_at)), h("td", {}, status(r.outcome)), h("td", {}, r.hook), h("td", { class: "num" }, fmt.ms(r.wall_us / 1000)), h("td", { class: "num" }, fmt.ms(r.cpu_us / 1000)),
    h("td", { class: "num" }, r.instructions ?? "–"), h("td", { class: "num" }, fmt.bytes(r.memory_peak_bytes)), h("td", { class: "num" }, `${r.input_bytes} / ${r.output_bytes}`),
    h("td", { class: "wrap" }, r.detail || "", r.logs.map((l) => h("pre", {}, `[${l.level}] ${l.message}`)))))); 
  fillRuns(runs.invocations);
  failuresOnly.addEventListener("change", async () => fillRuns((await api(`/api/v1/plugins/${encodeURIComponent(name)}/invocations?limit=50&failures=${failuresOnly.checked}`)).invocations));
  const upload = can("operate") ? uploadForm(name, active) : null;
  const liveNumbers = h("div", { class: "cards", id: "plugin-live" });
  const showLive = (row) => {
    const c = rowCells(row || { status: p.status });
    liveNumbers.replaceChildren(...[["Requests/s", c.rps], ["p95", c.p95], ["Errors", c.error_rate], ["CPU (cores)", c.cpu], ["Peak memory", c.memory]].map(([l, v]) => h("div", { class: "card" }, h("div", { class: "label" }, l), h("div", { class: "value" }, v))));
  };
  showLive({ status: p.status, live: p.live });
  main.replaceChildren(
    setTitle(name),
    h("p", {}, status(p.status), " ", p.active_version ? `version ${p.active_version}` : "no active version", p.load_error ? h("span", { class: "error" }, ` — ${p.load_error}`) : "", active && active.description ? h("span", { class: "muted", id: "description" }, ` — ${active.description}`) : ""),
    actions, message, liveNumbers,
    h("div", { class: "toolbar" }, h("label", {}, "Range", rangeSel)),
    charts,
    h("div", { class: "grid-2" },
      h("section", { class: "panel", "aria-labelledby": "headroom-h" }, h("h2", { id: "headroom-h" }, "Headroom (last 5 min, share of its own limits)"), h("table", { id: "headroom" }, h("tbody", {}, headroomRows))),
      h("section", { class: "panel" }, h("h2", {}, "Limits"), h("ul", {}, limits), h("h2", {}, "Hooks"), h("ul", {}, (active ? active.hooks : []).map((hk) => h("li", {}, `${hk.hook} (priority ${hk.priority})`))), h("h2", {}, "Config"), h("ul", {}, config))),
    h("h2", {}, "Versions"), h("div", { class: "table-wrap" }, versions),
    upload,
    h("h2", {}, "Run log"), h("label", { class: "inline" }, h("span", {}, "Failures first (failures only)"), failuresOnly),
    h("div", { class: "table-wrap" }, h("table", { id: "runs" }, h("thead", {}, h("tr", {}, ["Started", "Outcome", "Hook", "Wall", "CPU", "Instructions", "Memory", "In / out bytes", "Detail and log"].map((t) => h("th", { scope: "col" }, t)))), runsBody)),
  );
  const drawCharts = async () => {
    const secs = Number(rangeSel.value);
    const to = Math.floor(Date.now() / 1000);
    const series = await api(`/api/v1/plugins/${encodeURIComponent(name)}/series?from=${to - secs}&to=${to}`);
    const pts = series.points;
    const span = [to - secs, to];
    const outcomes = [...new Set(pts.flatMap((pt) => Object.keys(pt.outcomes).filter((k) => k !== "ok" && pt.outcomes[k] > 0)))];
    const boxes = ["latency", "throughput", "errors", "cpu", "instructions", "memory"].map((k) => h("div", { class: "chart", dataset: { chart: k } }));
    charts.replaceChildren(...boxes);
    chart(boxes[0], "Latency (ms)", pts, [
      { label: "p50", value: (p) => p.p50_ms, format: (v) => v.toFixed(2) },
      { label: "p95", value: (p) => p.p95_ms, format: (v) => v.toFixed(2) },
      { label: "p99", value: (p) => p.p99_ms, format: (v) => v.toFixed(2) }], span);
    chart(boxes[1], "Throughput (requests/s)", pts, [{ label: "requests/s", value: (p) => p.rps, format: (v) => v.toFixed(2) }], span);
    chart(boxes[2], "Errors by outcome (per step)", pts, (outcomes.length ? outcomes : ["plugin_error"]).map((o) => ({ label: o, value: (p) => p.outcomes[o] || 0, format: (v) => v.toFixed(0) })), span);
    chart(boxes[3], "CPU (cores)", pts, [{ label: "cores", value: (p) => p.cpu_cores, format: (v) => v.toFixed(3) }], span);
    chart(boxes[4], "Instructions (per step)", pts, [{ label: "instructions", value: (p) => p.instructions, format: (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : v.toFixed(0)) }], span);
    chart(boxes[5], "Peak memory", pts, [{ label: "bytes", value: (p) => p.memory_peak_bytes, format: (v) => fmt.bytes(v) }], span);
  };
  rangeSel.addEventListener("change", drawCharts);
  await drawCharts();
  openLive([name], (update) => {
    showLive(update.plugins[name]);
    if (Number(rangeSel.value) <= 3600) drawCharts().catch(() => {});
  });
}

function uploadForm(name, active) {
  const manifest = h("textarea", { name: "manifest", id: "upload-manifest", "aria-describedby": "upload-help" },
    JSON.stringify({ name, version: "", hooks: active ? active.hooks : [] }, null, 2));
  const file = h("input", { type: "file", name: "component", id: "upload-component", accept: ".wasm,application/wasm" });
  const result = h("p", { id: "upload-error", role: "alert" });
  const form = h("form", { id: "upload", class: "panel" },
    h("h2", {}, "Upload a new version"),
    h("p", { class: "muted", id: "upload-help" }, "The manifest (JSON) and the component (.wasm); it is checked before it is compiled, and activated when it loads."),
    h("label", {}, "Manifest", manifest), h("label", {}, "Component", file), result,
    h("button", { type: "submit", class: "primary" }, "Upload"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.className = "";
    result.textContent = "Uploading…";
    const body = new FormData();
    body.append("manifest", manifest.value);
    if (file.files[0]) body.append("component", file.files[0]);
    try {
      await api("/api/v1/plugins", { method: "POST", body });
      result.className = "notice";
      result.textContent = "Uploaded.";
      setTimeout(() => pluginPage(name), 500);
    } catch (e) {
      result.className = "error";
      result.textContent = e.message;
    }
  });
  return form;
}

// ---- Alerts -------------------------------------------------------------------------------------------

const METRICS = ["error_rate", "latency_p50", "latency_p95", "latency_p99", "timeouts", "rejected", "throughput", "cpu_time", "instructions", "memory_peak", "headroom", "idle", "host_cpu", "host_memory", "host_disk", "backup_failures"];

function table(id, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", { id }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)));
}

// `said` is a notice from the action that drew the page again: it belongs in the new page, not the old one.
async function alertsPage(said = null) {
  const main = document.getElementById("main");
  const [now, history, rules, silences, channels] = await Promise.all([
    api("/api/v1/alerts"), api("/api/v1/alerts/history?limit=50"), api("/api/v1/alerts/rules"), api("/api/v1/alerts/silences"), api("/api/v1/alerts/channels"),
  ]);
  const message = h("p", { id: "alerts-message", role: "status", class: said ? "notice" : null }, said ?? "");
  const ok = (text) => alertsPage(text);
  const fail = (e) => { message.className = "error"; message.textContent = e.message; };
  const silence = async (a) => {
    try {
      await api("/api/v1/alerts/silences", { method: "POST", json: { rule_id: a.rule_id, plugins: a.plugin || undefined, duration_secs: 3600, comment: `Silenced from the dashboard by ${state.me.name}` } });
      await ok(`Silenced ${a.rule}${a.plugin ? ` on ${a.plugin}` : ""} for an hour.`);
    } catch (e) { fail(e); }
  };
  const nowRows = (alerts) => alerts.map((a) => h("tr", { dataset: { rule: a.rule_id, plugin: a.plugin || "" } },
    h("td", {}, status(a.state)), h("td", {}, status(a.severity)), h("td", {}, a.rule), h("td", {}, a.plugin ? `${a.plugin} ${a.version || ""}` : "host"),
    h("td", { class: "wrap" }, a.summary), h("td", {}, fmt.time(a.since)), h("td", {}, a.silenced ? "silenced" : can("operate") ? h("button", { type: "button", dataset: { action: "silence" }, onclick: () => silence(a) }, "Silence 1 h") : "")));
  const nowBody = h("tbody", {}, nowRows(now.alerts));
  const ruleForm = can("operate") ? ruleEditor(rules.rules, ok) : null;
  const ruleRows = rules.rules.map((r) => h("tr", { dataset: { rule: r.id } }, h("td", {}, r.name), h("td", {}, r.enabled ? "enabled" : "disabled"), h("td", {}, `${r.metric}${r.limit ? `(${r.limit})` : ""} ${r.comparison} ${r.threshold}`),
    h("td", {}, r.scope === "host" ? "host" : r.plugins), h("td", {}, `${r.window_secs} s / for ${r.for_secs} s`), h("td", {}, status(r.severity)),
    h("td", {}, can("operate") ? h("button", { type: "button", dataset: { action: "edit-rule" }, onclick: () => ruleForm && ruleForm.edit(r) }, "Edit") : "")));
  const channelRows = channels.channels.map((c) => {
    const result = h("span", { dataset: { testResult: c.id } });
    return h("tr", { dataset: { channel: c.id } }, h("td", {}, c.name), h("td", {}, c.kind), h("td", {}, c.enabled ? "enabled" : "disabled"), h("td", {}, `≥ ${c.min_severity}`),
      h("td", {}, Object.entries(c.secrets).map(([k, v]) => `${k}: ${v}`).join(", ")),
      h("td", {}, can("operate") ? h("button", { type: "button", dataset: { action: "test-channel" }, onclick: async () => {
        result.textContent = " sending…";
        try { const r = await api(`/api/v1/alerts/channels/${c.id}/test`, { method: "POST" }); result.textContent = r.delivered ? ` delivered: ${r.response}` : ` failed: ${r.error}`; }
        catch (e) { result.textContent = ` ${e.message}`; }
      } }, "Send test") : "", result));
  });
  main.replaceChildren(
    setTitle("Alerts"), message,
    h("h2", {}, "Firing and pending"), h("div", { class: "table-wrap" }, h("table", { id: "alerts-now" }, h("thead", {}, h("tr", {}, ["State", "Severity", "Rule", "On", "Summary", "Since", "Actions"].map((t) => h("th", { scope: "col" }, t)))), nowBody)),
    h("h2", {}, "Rules"), table("rules", ["Name", "State", "Condition", "Selects", "Window / for", "Severity", "Actions"], ruleRows), ruleForm ? ruleForm.element : null,
    h("h2", {}, "Silences"), table("silences", ["Status", "Rule", "Plugins", "Until", "By", "Comment", "Actions"], silences.silences.map((s) => h("tr", {}, h("td", {}, status(s.status)), h("td", {}, s.rule_id ?? "any"), h("td", {}, s.plugins ?? "any"), h("td", {}, fmt.time(s.ends_at)), h("td", {}, s.author), h("td", { class: "wrap" }, s.comment),
      h("td", {}, s.status !== "expired" && can("operate") ? h("button", { type: "button", onclick: async () => { try { await api(`/api/v1/alerts/silences/${s.id}`, { method: "DELETE" }); await ok("Ended the silence."); } catch (e) { fail(e); } } }, "End") : "")))),
    h("h2", {}, "Channels"), table("channels", ["Name", "Kind", "State", "Routes", "Secrets", "Actions"], channelRows),
    h("h2", {}, "History"), table("history", ["When", "Rule", "On", "From → to", "Value", "Threshold", "Silenced"], history.entries.map((e) => h("tr", {}, h("td", {}, fmt.time(e.at)), h("td", {}, e.rule), h("td", {}, e.plugin ? `${e.plugin} ${e.version || ""}` : "host"), h("td", {}, `${e.from} → ${e.to}`), h("td", { class: "num" }, e.value === null ? "no data" : fmt.num(e.value, 4)), h("td", { class: "num" }, e.threshold), h("td", {}, e.silenced ? "silenced" : "")))),
  );
  openLive([], (update) => nowBody.replaceChildren(...nowRows(update.alerts)));
}

function ruleEditor(rules, saved) {
  let editing = null;
  const field = (name, input) => h("label", {}, name, input, h("span", { class: "field-error", dataset: { field: name }, role: "alert" }));
  const inputs = {
    name: h("input", { name: "name", required: true }),
    metric: h("select", { name: "metric" }, METRICS.map((m) => h("option", { value: m }, m))),
    plugins: h("input", { name: "plugins", value: "*" }),
    threshold: h("input", { name: "threshold", type: "number", step: "any", value: "0.05" }),
    window_secs: h("input", { name: "window_secs", type: "number", value: "60" }),
    for_secs: h("input", { name: "for_secs", type: "number", value: "60" }),
    keep_firing_for_secs: h("input", { name: "keep_firing_for_secs", type: "number", value: "0" }),
    comparison: h("select", { name: "comparison" }, [">", ">=", "<", "<="].map((c) => h("option", { value: c }, c))),
    severity: h("select", { name: "severity" }, ["info", "warning", "critical"].map((s) => h("option", { value: s, selected: s === "warning" }, s))),
    no_data: h("select", { name: "no_data" }, ["no_data", "ok", "alerting"].map((s) => h("option", { value: s }, s))),
    limit: h("select", { name: "limit" }, ["", "any", "wall_time", "instructions", "memory", "output", "concurrency"].map((s) => h("option", { value: s }, s || "(none)"))),
    summary: h("input", { name: "summary", value: "" }),
  };
  const title = h("h2", {}, "New rule");
  const form = h("form", { id: "rule-form", class: "panel" }, title, h("div", { class: "form-grid" }, Object.entries(inputs).map(([k, el]) => field(k, el))),
    h("button", { type: "submit", class: "primary" }, "Save rule"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const e of form.querySelectorAll(".field-error")) e.textContent = "";
    const metric = inputs.metric.value;
    const host = metric.startsWith("host_");
    const body = {
      name: inputs.name.value, metric, scope: host ? "host" : "plugins", plugins: host ? "" : inputs.plugins.value,
      threshold: Number(inputs.threshold.value), window_secs: Number(inputs.window_secs.value), for_secs: Number(inputs.for_secs.value),
      keep_firing_for_secs: Number(inputs.keep_firing_for_secs.value), comparison: inputs.comparison.value, severity: inputs.severity.value,
      no_data: inputs.no_data.value, summary: inputs.summary.value,
    };
    if (inputs.limit.value) body.limit = inputs.limit.value;
    try {
      await api(editing ? `/api/v1/alerts/rules/${editing}` : "/api/v1/alerts/rules", { method: editing ? "PUT" : "POST", json: body });
    } catch (e) {
      const slot = form.querySelector(`.field-error[data-field="${e.field}"]`) || form.querySelector(".field-error[data-field=name]");
      slot.textContent = e.message;
      return;
    }
    await saved(`Saved rule ${body.name}.`);
  });
  return {
    element: form,
    edit(r) {
      editing = r.id;
      title.textContent = `Edit rule ${r.name}`;
      for (const [k, el] of Object.entries(inputs)) el.value = r[k] ?? "";
      inputs.name.focus();
    },
  };
}

// ---- Audit, users and tokens --------------------------------------------------------------------------

async function auditPage() {
  const main = document.getElementById("main");
  const audit = await api("/api/v1/audit?limit=200");
  main.replaceChildren(setTitle("Audit log"), table("audit", ["When", "Actor", "Role", "Action", "Target", "From", "Result", "Detail"],
    audit.entries.map((e) => h("tr", {}, h("td", {}, fmt.time(e.at)), h("td", {}, e.actor ?? "–"), h("td", {}, e.role ?? ""), h("td", {}, e.action), h("td", {}, e.target ?? ""), h("td", {}, e.source ?? ""), h("td", {}, status(e.result)), h("td", { class: "wrap" }, e.detail ?? "", e.count > 1 ? ` (×${e.count})` : "")))));
}

async function usersPage() {
  const main = document.getElementById("main");
  const [users, tokens] = await Promise.all([api("/api/v1/users"), api("/api/v1/tokens")]);
  const shown = h("div", { id: "new-token", role: "status" });
  const tokenName = h("input", { name: "token-name", required: true });
  const tokenRole = h("select", { name: "token-role" }, ["invoker", "viewer", "operator", "admin"].map((r) => h("option", { value: r }, r)));
  const tokenForm = h("form", { class: "panel", id: "token-form" }, h("h2", {}, "New API token"), h("label", {}, "Name", tokenName), h("label", {}, "Role", tokenRole), h("button", { type: "submit", class: "primary" }, "Create"), shown);
  tokenForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const t = await api("/api/v1/tokens", { method: "POST", json: { name: tokenName.value, role: tokenRole.value } });
      const secret = h("div", { class: "token", id: "token-secret" }, t.secret);
      shown.replaceChildren(h("p", {}, "Copy it now: it is shown once."), secret,
        h("button", { type: "button", id: "copy-token", onclick: async () => { await navigator.clipboard.writeText(t.secret); shown.append(h("span", { class: "notice" }, " copied")); } }, "Copy"));
    } catch (e) { shown.replaceChildren(h("p", { class: "error" }, e.message)); }
  });
  main.replaceChildren(setTitle("Users and tokens"),
    table("users", ["User", "Role", "Status", "Created"], users.users.map((u) => h("tr", {}, h("td", {}, u.username), h("td", {}, u.role), h("td", {}, u.disabled ? "disabled" : "enabled"), h("td", {}, fmt.time(u.created_at))))),
    h("h2", {}, "Tokens"),
    table("tokens", ["Name", "Owner", "Role", "Expires", "Last used"], tokens.tokens.map((t) => h("tr", {}, h("td", {}, t.name), h("td", {}, t.owner ?? "service"), h("td", {}, t.role), h("td", {}, t.expires_at ? fmt.time(t.expires_at) : "never"), h("td", {}, t.last_used_at ? fmt.time(t.last_used_at) : "never")))),
    tokenForm);
}

async function backupsPage() {
  const main = document.getElementById("main");
  const list = await api("/api/v1/backups");
  const s = list.schedule;
  const notice = h("div", { id: "backup-notice", role: "status", "aria-live": "polite" });
  // By id: after an action the page is drawn again, and the message belongs in the new one.
  const say = (text, cls = "notice") => document.getElementById("backup-notice").replaceChildren(h("p", { class: cls }, text));
  const busy = (button, text) => { button.disabled = true; button.textContent = text; };
  const take = h("button", { type: "button", class: "primary", id: "take-backup", onclick: async () => {
    busy(take, "Taking a backup…");
    try {
      const b = await api("/api/v1/backups", { method: "POST" });
      await backupsPage();
      say(`Backup ${b.id} taken: ${fmt.bytes(b.size_bytes)}.`);
    } catch (e) { say(e.message, "error"); take.disabled = false; take.textContent = "Back up now"; }
  } }, "Back up now");
  const schedule = h("dl", { class: "facts", id: "backup-schedule" },
    h("dt", {}, "Destination"), h("dd", {}, list.destination),
    h("dt", {}, "Schedule"), h("dd", {}, s.enabled ? `every ${fmt.num(s.interval_secs / 3600, 1)} h; keeps the newest ${s.keep_last} and every one younger than ${s.keep_days} days` : "off (on demand only)"),
    h("dt", {}, "Next"), h("dd", {}, s.enabled ? fmt.time(s.next_due_at) : "–"),
    h("dt", {}, "Last success"), h("dd", {}, fmt.time(s.last_success_at)),
    h("dt", {}, "Last failure"), h("dd", { class: s.consecutive_failures ? "error" : "" }, s.last_failure_at ? `${fmt.time(s.last_failure_at)}: ${s.last_error ?? ""} (${s.consecutive_failures} in a row)` : "–"));
  const rows = list.backups.map((b) => {
    const verify = h("button", { type: "button", "data-action": "verify", onclick: async () => {
      busy(verify, "Verifying…");
      try { const v = await api(`/api/v1/backups/${encodeURIComponent(b.id)}/verify`, { method: "POST" }); say(`${b.id}: every checksum of its ${v.members} members matches; the database passes its integrity check.`); }
      catch (e) { say(`${b.id}: ${e.message}`, "error"); }
      verify.disabled = false; verify.textContent = "Verify";
    } }, "Verify");
    const restore = h("button", { type: "button", "data-action": "restore", onclick: async () => {
      if (!window.confirm(`Restore ${b.id}? The current state is backed up first, then replaced; plugwatch restarts.`)) return;
      busy(restore, "Restoring…");
      try {
        const r = await api(`/api/v1/backups/${encodeURIComponent(b.id)}/restore`, { method: "POST" });
        const counts = Object.entries(r.counts).map(([k, v]) => `${v} ${k.replace(/_/g, " ")}`).join(", ");
        say(`Restored ${r.restored_from} (${counts}). The state it replaced is in ${r.safety_backup}. plugwatch is restarting…`);
        await waitForRestart();
        window.location.reload();
      } catch (e) { say(`${b.id}: ${e.message}`, "error"); restore.disabled = false; restore.textContent = "Restore"; }
    } }, "Restore");
    const remove = h("button", { type: "button", "data-action": "delete", onclick: async () => {
      if (!window.confirm(`Delete ${b.id}? This cannot be undone.`)) return;
      try { await api(`/api/v1/backups/${encodeURIComponent(b.id)}`, { method: "DELETE" }); await backupsPage(); say(`Deleted ${b.id}.`); }
      catch (e) { say(`${b.id}: ${e.message}`, "error"); }
    } }, "Delete");
    const download = h("a", { href: `/api/v1/backups/${encodeURIComponent(b.id)}/download`, download: b.id }, "Download");
    const holds = `${b.counts.plugins ?? 0} plugins, ${b.counts.plugin_versions ?? 0} versions, ${b.counts.users ?? 0} users, ${b.counts.alert_rules ?? 0} rules, ${b.counts.audit_entries ?? 0} audit entries`;
    return h("tr", { dataset: { id: b.id } }, h("td", {}, fmt.time(b.created_at)), h("td", {}, b.reason.replace("_", "-")), h("td", { class: "num" }, fmt.bytes(b.size_bytes)),
      h("td", {}, `${b.product_version} / ${b.schema_version}`), h("td", { class: "wrap" }, holds), h("td", { class: "actions" }, verify, download, restore, remove));
  });
  const problem = list.problem ? h("p", { class: "error", role: "alert", id: "backup-problem" }, `The destination cannot be listed: ${list.problem}`) : null;
  main.replaceChildren(...[setTitle("Backups"), h("section", { class: "panel" }, schedule, take), problem, notice,
    list.backups.length ? table("backups", ["Taken", "Why", "Size", "Version / schema", "Holds", "Actions"], rows) : h("p", { class: "muted", id: "no-backups" }, "No backup yet.")].filter(Boolean));
}

/** Waits until the server answers again after a restart (a restore swaps the data in while it is down). */
async function waitForRestart() {
  const deadline = Date.now() + 120000;
  await new Promise((resolve) => setTimeout(resolve, 500));
  while (Date.now() < deadline) {
    try { if ((await fetch("/readyz")).ok) return; } catch (e) { /* still restarting */ }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// ---- Start --------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  try {
    state.me = await api("/api/v1/auth/me");
  } catch (e) {
    return;
  }
  document.getElementById("whoami").textContent = `${state.me.name} (${state.me.role})`;
  for (const a of document.querySelectorAll("nav a[data-nav=audit], nav a[data-nav=users], nav a[data-nav=backups]")) a.hidden = !can("admin");
  document.getElementById("sign-out").addEventListener("click", async () => {
    try { await api("/api/v1/auth/logout", { method: "POST" }); } catch (e) { /* signed out either way */ }
    window.location.assign("/login");
  });
  route();
});
