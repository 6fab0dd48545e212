// The costwarden dashboard: reads /dashboard/api/* with the session cookie and draws each page.
// Money arrives as exact text and is shown as such; charts alone parse it to numbers.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PALETTE = ["#2f6fde", "#12b76a", "#f79009", "#9e77ed", "#f04438", "#0ba5ec", "#667085", "#ee46bc"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(child === null ? "–" : String(child)));
  }
  return node;
}

function table(id, columns, rows) {
  // columns: [label, key, numeric?]; each cell carries data-key for tests and scripts
  const head = el("tr", {}, columns.map(([label, , num]) => el("th", { class: num ? "num" : null }, label)));
  const body = rows.map((row) =>
    el("tr", {}, columns.map(([, key, num]) => {
      const value = typeof key === "function" ? key(row) : row[key];
      return el("td", { class: num ? "num" : null, "data-key": typeof key === "string" ? key : null }, value ?? null);
    })));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, body));
}

async function api(path, params) {
  const url = new URL("/dashboard/api/" + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    for (const item of [].concat(v)) if (item !== "" && item !== undefined) url.searchParams.append(k, item);
  }
  const reply = await fetch(url, { credentials: "same-origin" });
  if (reply.status === 401) { location.reload(); throw new Error("signed out"); }
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.detail || reply.statusText);
  return body;
}

function chart(target, title, xs, series, opts) {
  const width = Math.max(400, target.clientWidth - 20);
  const config = Object.assign({
    title, width, height: 260,
    scales: { x: { time: true } },
    series: [{}].concat(series),
    axes: [{}, { size: 70 }],
  }, opts || {});
  return new uPlot(config, [xs].concat(series.map((s) => s.data)), target);
}

const since = () => $("#since").value;

const pages = {
  async spend(main) {
    const data = await api("spend", { by: $("#by").value, step: $("#step").value, since: since() });
    const graph = el("section", { id: "spend-chart" }, el("h2", {}, `Spend by ${data.by} per ${data.step} (USD)`));
    main.append(graph);
    // stacked: each series is drawn as the running sum of those below it, the top one first
    const sums = [];
    data.series.forEach((s, i) => {
      const values = s.cost_usd.map(Number);
      sums.push(values.map((v, j) => v + (i ? sums[i - 1][j] : 0)));
    });
    const stacked = data.series.map((s, i) => ({
      label: String(s.group), data: sums[i], stroke: s.others ? "#98a2b3" : PALETTE[i % PALETTE.length],
      fill: (s.others ? "#98a2b3" : PALETTE[i % PALETTE.length]) + "55", points: { show: false },
    })).reverse();
    if (stacked.length && typeof uPlot !== "undefined") chart(graph, "", data.buckets, stacked);
    else graph.append(el("p", { class: "muted" }, "No spend in this window."));
    const cols = [[data.by, data.by], ["requests", "requests", 1], ["errors", "errors", 1],
      ["input tokens", "input_tokens", 1], ["output tokens", "output_tokens", 1], ["cost (USD)", "cost_usd", 1],
      ["per 1k requests", "cost_per_1k_requests_usd", 1], ["per 1M tokens", "cost_per_1m_tokens_usd", 1]];
    const total = Object.assign({ [data.by]: "total" }, data.total);
    main.append(el("section", {}, el("h2", {}, "Totals and unit costs"), table("spend-table", cols, data.rows.concat([total]))));
    const latency = await api("latency", { since: since() });
    main.append(el("section", {}, el("h2", {}, "Latency: gateway vs upstream (ms)"),
      table("latency-table", [["deployment", "deployment"], ["requests", "requests", 1], ["p50", "p50_latency_ms", 1],
        ["p95", "p95_latency_ms", 1], ["upstream p50", "upstream_p50_ms", 1], ["upstream p95", "upstream_p95_ms", 1],
        ["gateway p50", "gateway_p50_ms", 1], ["gateway p95", "gateway_p95_ms", 1], ["sampled", "sampled", 1]], latency.rows),
      el("p", { class: "muted" }, `p50/p95 from ${latency.from} to ${latency.to} (the ledger's rollups); the upstream/gateway split from the newest records.`)));
  },

  async budgets(main) {
    const budgets = await api("budgets");
    const focus = decodeURIComponent((location.hash.split("/")[1] || ""));
    const util = (b) => {
      const pct = Math.round(Number(b.utilisation) * 100);
      return el("span", {}, el("span", { class: "bar" }, el("i", { class: pct >= 100 ? "over" : null, style: `width:${Math.min(pct, 100)}%` })), ` ${pct}%`);
    };
    const scope = (b) => Object.entries(b.scope).map(([k, v]) => `${k}=${v}`).join(",") || "*";
    main.append(el("section", {}, el("h2", {}, "Budgets"), table("budget-table", [["budget", "id"], ["scope", scope],
      ["window", "window"], ["action", "action"], ["limit", "limit_usd", 1], ["spent", "spent_usd", 1],
      ["remaining", "remaining_usd", 1], ["utilisation", util], ["forecast", "forecast_usd", 1]], budgets)));
    for (const b of budgets) {
      if (focus && b.id !== focus) continue;
      const burn = await api(`budgets/${encodeURIComponent(b.id)}/burndown`);
      const box = el("section", { id: `burndown-${b.id}`, class: "burndown" },
        el("h2", {}, `${b.id}: spend in the window vs limit ${b.limit_usd} USD (${b.action} at the limit)`));
      main.append(box);
      const xs = [burn.budget.window_start].concat(burn.points.map((p) => p.at));
      const spent = [0].concat(burn.points.map((p) => Number(p.spent_usd)));
      const last = spent[spent.length - 1];
      const forecast = xs.map((x, i) => (i === xs.length - 1 ? last : null));
      if (burn.budget.forecast_usd !== null) { xs.push(burn.budget.window_end); spent.push(null); forecast.push(Number(burn.budget.forecast_usd)); }
      const limit = xs.map(() => Number(b.limit_usd));
      if (typeof uPlot !== "undefined") chart(box, "", xs, [
        { label: "spent", data: spent, stroke: PALETTE[0], width: 2 },
        { label: "forecast", data: forecast, stroke: PALETTE[2], dash: [6, 4], spanGaps: true },
        { label: "limit", data: limit, stroke: PALETTE[4] },
      ]);
    }
  },

  async alerts(main) {
    const data = await api("alerts");
    const link = (a) => a.labels.budget ? el("a", { href: `#budgets/${encodeURIComponent(a.labels.budget)}` }, a.labels.budget) : "–";
    const scope = (a) => a.labels.scope || Object.entries(a.labels).filter(([k]) => k !== "budget").map(([k, v]) => `${k}=${v}`).join(",");
    const cols = [["status", (a) => el("span", { class: a.status }, a.status)], ["kind", "kind"], ["severity", "severity"],
      ["scope", scope], ["budget", link], ["summary", "summary"], ["started", "started_at"], ["resolved", "resolved_at"]];
    main.append(el("section", {}, el("h2", {}, `Active alerts (${data.active.length})`), table("alerts-active", cols, data.active)));
    main.append(el("section", {}, el("h2", {}, "Recent alerts"), table("alerts-recent", cols, data.recent)));
  },

  async drivers(main) {
    const data = await api("drivers", { since: since() });
    main.append(el("p", { class: "muted", id: "drivers-window" }, `From ${data.from} to ${data.to}.`));
    for (const [dim, title] of [["key_id", "Keys"], ["deployment", "Deployments"], ["project", "Projects"]]) {
      const cols = [[dim, dim]].concat(dim === "key_id" ? [["name", "name"]] : [], [["requests", "requests", 1],
        ["cost (USD)", "cost_usd", 1], ["per 1k requests", "cost_per_1k_requests_usd", 1], ["per 1M tokens", "cost_per_1m_tokens_usd", 1]]);
      main.append(el("section", {}, el("h2", {}, `Top ${title.toLowerCase()} by cost`), table(`drivers-${dim}`, cols, data[dim])));
    }
  },

  async compute(main) {
    if (role !== "admin") {
      main.append(el("section", { id: "compute-admin-only" }, el("p", { class: "muted" },
        "Compute allocation spans every team's use of a deployment: it is shown to admin sessions.")));
      return;
    }
    const data = await api("compute", { since: since() });
    const box = el("section", { id: "compute" }, el("h2", {}, "GPU-hours and idle per deployment"));
    main.append(box);
    if (!data.deployments.length) {
      box.append(el("p", { class: "muted", id: "compute-empty" },
        "No deployment has `compute:` (hardware profile and replicas) in costwarden.yaml, so there is no provisioned " +
        "capacity to allocate. Add `compute: {profile: ..., replicas: N}` to a deployment: see docs/compute.md."),
        data.notes.map((n) => el("p", { class: "muted" }, n)));
      return;
    }
    const hardware = (d) => `${d.replicas} x ${d.profile}` + (d.accelerator ? ` (${d.accelerator})` : "");
    const use = (d) => {
      const pct = Number(d.efficiency) * 100;
      const text = pct > 0 && pct < 1 ? pct.toPrecision(2) : pct.toFixed(0);
      return el("span", {}, el("span", { class: "bar" }, el("i", { style: `width:${Math.min(pct, 100)}%` })), ` ${text}%`);
    };
    const cols = [["deployment", "deployment"], ["hardware", hardware], ["provisioned (USD)", "provisionedCost", 1],
      ["used (USD)", "usedCost", 1], ["idle (USD)", "idleCost", 1], ["GPU-hours", "gpuHours", 1],
      ["used GPU-hours", "usedGpuHours", 1], ["idle GPU-hours", "idleGpuHours", 1], ["efficiency", use]];
    box.append(table("compute-table", cols, data.deployments));
    const t = data.totals;
    box.append(el("p", { id: "compute-totals" }, `Total: provisioned ${t.provisionedCost} USD, used ${t.usedCost} USD, ` +
      `idle (${data.idle ? data.idle.name : "__idle__"}) ${t.idleCost} USD; efficiency ${Math.round(t.efficiency * 100)}%.`));
    box.append(el("p", { class: "muted", id: "compute-window", "data-start": data.window.start, "data-end": data.window.end },
      `From ${data.window.start} to ${data.window.end}: the same figures as ` +
      "`costwarden allocation` and GET /admin/v1/allocation for this window. Used is each deployment's busy replica-time " +
      "(request intervals, or a collector's measure); idle is the rest."),
      data.notes.map((n) => el("p", { class: "muted" }, n)));
  },

  async requests(main) {
    const box = el("section", {}, el("h2", {}, "Recent requests"));
    const filters = el("form", { class: "filters", id: "request-filters" },
      ["team", "deployment", "outcome", "status"].map((name) => el("input", { name, placeholder: name, size: 12 })),
      el("button", { type: "submit" }, "Filter"));
    const more = el("button", { id: "more", type: "button" }, "Older");
    const holder = el("div");
    box.append(filters, holder, more);
    main.append(box);
    let cursor = null;
    let rows = [];
    const cols = [["started", "started_at"], ["request", "request_id"], ["team", "team"], ["project", "project"],
      ["deployment", "deployment"], ["status", "status", 1], ["outcome", "outcome"], ["in", "input_tokens", 1],
      ["out", "output_tokens", 1], ["ms", "latency_ms", 1], ["upstream ms", "upstream_ms", 1], ["cost (USD)", "cost_usd", 1]];
    const load = async (fresh) => {
      const where = [...new FormData(filters)].filter(([, v]) => v).map(([k, v]) => `${k}=${v}`);
      const page = await api("requests", { since: since(), limit: 50, where, cursor: fresh ? "" : cursor });
      rows = fresh ? page.records : rows.concat(page.records);
      cursor = page.next;
      holder.replaceChildren(table("requests-table", cols, rows));
      more.disabled = cursor === null;
    };
    filters.addEventListener("submit", (e) => { e.preventDefault(); load(true).catch(fail); });
    more.addEventListener("click", () => load(false).catch(fail));
    await load(true);
  },
};

function fail(err) { $("#status").textContent = String(err.message || err); }

async function render() {
  const name = (location.hash.slice(1).split("/")[0]) || "spend";
  const page = pages[name] ? name : "spend";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  document.querySelectorAll(".spend-only").forEach((n) => { n.hidden = page !== "spend"; });
  document.querySelectorAll(".windowed").forEach((n) => { n.hidden = page === "budgets" || page === "alerts"; });
  const main = el("div", { id: `page-${page}` });
  $("#status").textContent = "";
  $("#page").replaceChildren(main);
  document.body.dataset.ready = "";
  try { await pages[page](main); } catch (err) { fail(err); }
  document.body.dataset.ready = page;
}

let role = null;

async function start() {
  const session = await api("session");
  role = session.role;
  $("#who").textContent = session.role === "admin" ? "admin" : `team ${session.team} (read-only)`;
  for (const id of ["#since", "#by", "#step"]) $(id).addEventListener("change", render);
  window.addEventListener("hashchange", render);
  await render();
}

start().catch(fail);
