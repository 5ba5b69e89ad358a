// The console's live parts: Server-Sent Events refill [data-field], [data-table] and [data-chart]
// elements rendered by the server (arros_mqtt/web/pages.py); the SQL editor and the archive query post
// JSON with the page's CSRF token. Text is always set as text, never as HTML.
"use strict";
(function () {
  const csrf = document.querySelector("meta[name=csrf]").content;
  const charts = new Map();  // element -> {plot, keys}
  const accumulated = new Map();  // element -> {t: [], series: {name: []}}
  const HISTORY = 300;
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

  function get(data, path) {
    return path.split(".").reduce((v, k) => (v == null ? undefined : v[k]), data);
  }
  function text(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(6)));
    return String(v);
  }

  function fillFields(data) {
    document.querySelectorAll("[data-field]").forEach((el) => {
      const v = get(data, el.dataset.field);
      if (v !== undefined) el.textContent = text(v);
    });
  }

  function fillTable(el, value) {
    let names, rows;
    if (Array.isArray(value)) {
      names = (el.dataset.columns || "").split(",");
      rows = value.map((row) => names.map((n) => row[n]));
    } else {
      names = value.columns || [];
      rows = value.rows || [];
    }
    const links = {};
    for (const attr of el.attributes) {
      if (attr.name.startsWith("data-link-")) links[attr.name.slice(10)] = attr.value;
    }
    const key = JSON.stringify(names);
    if (el.dataset.shape === key && el.tBodies[0] && el.tBodies[0].rows.length === rows.length) {
      // same columns and row count: change only the cells whose text changed, so links stay clickable
      rows.forEach((row, r) => row.forEach((v, i) => {
        const td = el.tBodies[0].rows[r].cells[i];
        if (td && td.textContent !== text(v)) fillCell(td, names[i], v, links);
      }));
    } else {
      const head = document.createElement("thead");
      const tr = head.insertRow();
      names.forEach((n) => { const th = document.createElement("th"); th.textContent = n; tr.appendChild(th); });
      const body = document.createElement("tbody");
      rows.forEach((row) => {
        const r = body.insertRow();
        row.forEach((v, i) => fillCell(r.insertCell(), names[i], v, links));
      });
      el.replaceChildren(head, body);
      el.dataset.shape = key;
    }
    const note = document.querySelector(`[data-note="${el.dataset.table}"]`);
    if (note && !Array.isArray(value)) note.textContent = value.note || "";
  }

  function fillCell(td, name, v, links) {
    if (links[name] && v != null) {
      const a = document.createElement("a");
      a.href = links[name] + encodeURIComponent(v);
      a.textContent = text(v);
      td.replaceChildren(a);
    } else td.textContent = text(v);
  }

  function seriesSpec(el) {
    return (el.dataset.series || "").split(",").filter(Boolean).map((s) => {
      const [key, label] = s.split(":");
      return { key, label: label || key };
    });
  }

  function plot(el, x, series, timeAxis) {
    let entry = charts.get(el);
    const keys = series.map((s) => s.label).join("|");
    const aligned = [x, ...series.map((s) => s.values)];
    if (entry && entry.keys === keys) { entry.plot.setData(aligned); return; }
    if (entry) entry.plot.destroy();
    const opts = {
      width: Math.max(280, el.clientWidth || 480), height: 200, scales: { x: { time: timeAxis } },
      series: [{}, ...series.map((s, i) => ({
        label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false }, spanGaps: true,
      }))],
      axes: [{}, {}], legend: { live: false },
    };
    charts.set(el, { plot: new uPlot(opts, aligned, el), keys });
  }

  function fillChart(el, data) {
    const value = data[el.dataset.chart];
    if (value === undefined) return;
    if (el.hasAttribute("data-accumulate")) {
      const acc = accumulated.get(el) || { t: [], series: {}, version: null };
      accumulated.set(el, acc);
      const version = get(data, "latest.version");
      if (version === acc.version && acc.t.length) return;
      acc.version = version;
      acc.t.push(Date.now() / 1000);
      for (const [k, v] of Object.entries(value)) {
        if (!acc.series[k]) acc.series[k] = new Array(acc.t.length - 1).fill(null);
      }
      for (const k of Object.keys(acc.series)) acc.series[k].push(k in value ? value[k] : null);
      if (acc.t.length > HISTORY) { acc.t.shift(); Object.values(acc.series).forEach((s) => s.shift()); }
      const names = Object.keys(acc.series);
      if (!names.length) return;
      plot(el, acc.t, names.map((k) => ({ label: k, values: acc.series[k] })), true);
      return;
    }
    const spec = seriesSpec(el);
    plot(el, value.t, spec.map((s) => ({ label: s.label, values: value[s.key] || [] })), true);
  }

  function apply(data) {
    fillFields(data);
    document.querySelectorAll("[data-table]").forEach((el) => {
      const v = data[el.dataset.table];
      if (v !== undefined) fillTable(el, v);
    });
    if (window.uPlot) document.querySelectorAll("[data-chart]").forEach((el) => fillChart(el, data));
  }

  function listen() {
    const main = document.querySelector("main[data-events]");
    if (!main) return;
    const live = document.getElementById("live");
    const source = new EventSource(main.dataset.events);
    source.onmessage = (event) => {
      live.classList.add("on");
      apply(JSON.parse(event.data));
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    };
    source.onerror = () => live.classList.remove("on");
    source.addEventListener("gone", () => { source.close(); live.classList.remove("on"); });
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST", body: JSON.stringify(body), credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    });
    try { return await response.json(); } catch (e) { return { error: `HTTP ${response.status}` }; }
  }

  function show(el, message) { el.hidden = !message; el.textContent = message || ""; }

  // An explain reply: its facts as a list, its plans (multi-line text) as preformatted blocks.
  function explained(reply) {
    const box = document.createElement("div");
    const facts = document.createElement("dl");
    facts.className = "facts";
    const plans = [];
    for (const [key, value] of Object.entries(reply)) {
      if (value === null || key === "sql") continue;
      if (typeof value === "string" && (value.includes("\n") || key.endsWith("plan"))) { plans.push([key, value]); continue; }
      const item = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = key.replaceAll("_", " ");
      if (key === "columns") dd.textContent = value.map((c) => `${c.name} ${c.type}`).join(", ");
      else dd.textContent = typeof value === "object" ? JSON.stringify(value) : text(value);
      item.append(dt, dd);
      facts.append(item);
    }
    box.append(facts);
    for (const [key, value] of plans) {
      const title = document.createElement("h3");
      title.textContent = key.replaceAll("_", " ");
      const pre = document.createElement("pre");
      pre.textContent = value;
      box.append(title, pre);
    }
    return box;
  }

  function editor() {
    const form = document.getElementById("editor");
    if (!form) return;
    const field = (id) => document.getElementById(id);
    const error = field("editor-error");
    const result = document.getElementById("editor-result");
    form.querySelectorAll("button[data-op]").forEach((button) => button.addEventListener("click", async () => {
      const op = button.dataset.op;
      const name = field("name").value.trim();
      const request = { op, request_id: `web-${Date.now()}` };
      if (op === "explain" && field("sql").value.trim()) request.sql = field("sql").value;
      else request.name = name;
      if (op === "create" || op === "replace") {
        request.sql = field("sql").value;
        if (field("output").value.trim()) request.output = field("output").value.trim();
      }
      show(error, ""); show(result, "");
      const reply = await post("/api/control", request);
      if (!reply.ok) {
        show(error, reply.error ? `${reply.error.code || "error"}: ${reply.error.message || reply.error}` : "failed");
        return;
      }
      result.hidden = false;
      result.replaceChildren();
      const r = reply.result || {};
      if (op === "explain") {
        result.append(explained(r));
      } else if (op === "drop") {
        result.textContent = `dropped ${r.name}`;
      } else {
        const a = document.createElement("a");
        a.href = `/subscriptions/${encodeURIComponent(r.name || name)}`;
        a.id = "editor-link";
        a.textContent = `${op}: ${r.name || name} — open its page`;
        result.append(a);
      }
    }));
  }

  function archiveQuery() {
    const form = document.getElementById("query");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = document.getElementById("query-error");
      const summary = document.getElementById("query-summary");
      const chartEl = document.getElementById("query-chart");
      show(error, "");
      const reply = await post("/api/query", { sql: document.getElementById("query-sql").value });
      if (reply.error) { show(error, reply.error); return; }
      fillTable(document.getElementById("query-result"), reply);
      summary.textContent = `${reply.total_rows} rows` + (reply.total_rows > reply.rows.length ? `, first ${reply.rows.length} shown` : "");
      const chart = reply.chart;
      const names = Object.keys(chart.series);
      if (window.uPlot && names.length && chart.x.length > 1) {
        plot(chartEl, chart.x, names.map((k) => ({ label: k, values: chart.series[k] })), chart.time);
      }
    });
  }

  window.addEventListener("DOMContentLoaded", () => { listen(); editor(); archiveQuery(); });
})();
