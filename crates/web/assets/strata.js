// Strata's web UI: the query page (table and graph) and the stores page, on the querier's
// HTTP address. Plain JavaScript, no library, no network but the querier's own API; every
// URL is relative, so the page works under --web.route-prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const RANGES = { "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600,
  "12h": 43200, "1d": 86400, "2d": 172800, "1w": 604800 };

const state = { tab: "table", metricNames: null, labelNames: null, active: -1 };

// --- time helpers ---------------------------------------------------------------------

// Seconds since the epoch of the "end" input: empty is now; RFC 3339, "2006-01-02 15:04:05"
// (Prometheus 2's links, UTC) or a number of seconds.
function endSeconds() {
  const text = $("end").value.trim();
  if (!text) return Date.now() / 1000;
  if (/^\d+(\.\d+)?$/.test(text)) return parseFloat(text);
  let iso = text.replace(" ", "T");
  if (!/[zZ]|[+-]\d\d:?\d\d$/.test(iso)) iso += "Z";
  const ms = Date.parse(iso);
  if (isNaN(ms)) throw new Error("cannot read the time " + JSON.stringify(text));
  return ms / 1000;
}

function isoTime(seconds) {
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
}

function parseDuration(text) {
  const m = /^(\d+)(ms|s|m|h|d|w|y)$/.exec(text.trim());
  if (!m) return null;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 }[m[2]];
  return parseInt(m[1], 10) * mult;
}

// --- URL state (Thanos / Prometheus 2 `/graph?g0.…` and Prometheus 3 `/query?g0.…`) ------

function readUrl() {
  const p = new URLSearchParams(location.search);
  const get = (k) => p.get("g0." + k);
  if (get("expr") !== null) $("expr").value = get("expr");
  const tab = get("tab");
  state.tab = tab === "0" || tab === "graph" ? "graph" : "table";
  const range = get("range_input") || get("range");
  if (range && RANGES[range] !== undefined) $("range").value = range;
  const end = get("end_input") || get("moment_input") || get("end_time");
  if (end) $("end").value = end;
  const step = get("step_input");
  if (step) $("step").value = step;
  const res = get("max_source_resolution");
  if (res) $("max-source-resolution").value = res;
  if (get("deduplicate") !== null) $("dedup").checked = get("deduplicate") !== "0";
  if (get("partial_response") !== null) $("partial").checked = get("partial_response") !== "0";
  return get("expr") !== null && get("expr") !== "";
}

function writeUrl() {
  const p = new URLSearchParams();
  p.set("g0.expr", $("expr").value);
  p.set("g0.tab", state.tab === "graph" ? "0" : "1");
  p.set("g0.range_input", $("range").value);
  if ($("end").value.trim()) p.set("g0.end_input", $("end").value.trim());
  if ($("step").value.trim()) p.set("g0.step_input", $("step").value.trim());
  p.set("g0.max_source_resolution", $("max-source-resolution").value);
  p.set("g0.deduplicate", $("dedup").checked ? "1" : "0");
  p.set("g0.partial_response", $("partial").checked ? "1" : "0");
  history.replaceState(null, "", "?" + p.toString());
}

// --- running queries -------------------------------------------------------------------

async function api(path, params) {
  const body = new URLSearchParams(params);
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body,
  });
  const json = await resp.json();
  if (json.status !== "success") {
    throw new Error((json.errorType ? json.errorType + ": " : "") + (json.error || resp.statusText));
  }
  return json;
}

function commonParams() {
  return {
    dedup: $("dedup").checked ? "true" : "false",
    partial_response: $("partial").checked ? "true" : "false",
    max_source_resolution: $("max-source-resolution").value,
  };
}

async function run() {
  const expr = $("expr").value.trim();
  hideSuggestions();
  writeUrl();
  if (!expr) return;
  $("status").textContent = "Loading…";
  $("status").className = "";
  $("warnings").textContent = "";
  const started = performance.now();
  try {
    const end = endSeconds();
    let json;
    if (state.tab === "table") {
      json = await api("api/v1/query", { query: expr, time: end, ...commonParams() });
      renderTable(json.data);
    } else {
      const range = RANGES[$("range").value] || 3600;
      let step = parseDuration($("step").value || "");
      if (!step) step = Math.max(1, Math.round(range / 250));
      json = await api("api/v1/query_range", {
        query: expr, start: end - range, end, step, ...commonParams(),
      });
      renderGraph(json.data, end - range, end);
    }
    const n = Array.isArray(json.data.result) ? json.data.result.length : 1;
    $("status").textContent = "Load time: " + Math.round(performance.now() - started) +
      "ms · Result series: " + n;
    const notes = (json.warnings || []).concat(json.infos || []);
    $("warnings").textContent = notes.join("\n");
  } catch (e) {
    $("status").textContent = "Error: " + e.message;
    $("status").className = "error";
    clearResults();
  }
}

function clearResults() {
  $("result-table").tBodies[0].textContent = "";
  $("graph").textContent = "";
  $("legend").textContent = "";
}

function formatLabels(metric) {
  const name = metric.__name__ || "";
  const pairs = Object.keys(metric).filter((k) => k !== "__name__").sort()
    .map((k) => k + "=" + JSON.stringify(metric[k]));
  return name + "{" + pairs.join(", ") + "}";
}

function renderTable(data) {
  const body = $("result-table").tBodies[0];
  body.textContent = "";
  const row = (series, value) => {
    const tr = body.insertRow();
    tr.insertCell().textContent = series;
    const td = tr.insertCell();
    td.textContent = value;
    td.className = "value";
  };
  switch (data.resultType) {
    case "vector":
      if (data.result.length === 0) row("no data", "");
      for (const s of data.result) row(formatLabels(s.metric), s.value ? s.value[1] : "(histogram)");
      break;
    case "matrix":
      for (const s of data.result) {
        row(formatLabels(s.metric), (s.values || []).map((v) => v[1] + " @" + v[0]).join("\n"));
      }
      break;
    case "scalar":
    case "string":
      row(data.resultType, data.result[1]);
      break;
  }
}

// The graph: one SVG polyline per series, axes with five value and time ticks.
function renderGraph(data, start, end) {
  const W = 900, H = 320, L = 70, R = 10, T = 10, B = 30;
  const series = data.result || [];
  let lo = Infinity, hi = -Infinity;
  for (const s of series) {
    for (const [, v] of s.values || []) {
      const f = parseFloat(v);
      if (isFinite(f)) { lo = Math.min(lo, f); hi = Math.max(hi, f); }
    }
  }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= 1; hi += 1; }
  const x = (t) => L + (t - start) / (end - start || 1) * (W - L - R);
  const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "plot" });
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" });
    el("text", { x: L - 4, y: y(v) + 4, class: "ytick", "text-anchor": "end" }, formatValue(v));
    const t = start + (end - start) * i / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    el("text", { x: x(t), y: H - 8, class: "xtick", "text-anchor": anchor },
      isoTime(t).slice(11, 19));
  }
  const legend = $("legend");
  legend.textContent = "";
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const label = formatLabels(s.metric);
    // A gap (a missing step) breaks the line.
    const step = (s.values || []).length > 1 ? s.values[1][0] - s.values[0][0] : 0;
    let segment = [];
    let last = null;
    const flush = () => {
      if (segment.length) {
        el("polyline", { points: segment.join(" "), stroke: color, class: "series",
          "data-series": label, "data-points": segment.length });
      }
      segment = [];
    };
    for (const [t, v] of s.values || []) {
      const f = parseFloat(v);
      if (!isFinite(f) || (last !== null && step && t - last > step * 1.5)) flush();
      if (isFinite(f)) segment.push(x(t).toFixed(1) + "," + y(f).toFixed(1));
      last = t;
    }
    flush();
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color;
    li.appendChild(swatch);
    li.appendChild(document.createTextNode(label));
    legend.appendChild(li);
  });
  const graph = $("graph");
  graph.textContent = "";
  graph.appendChild(svg);
}

function formatValue(v) {
  if (Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-3 && v !== 0)) return v.toExponential(2);
  return String(Math.round(v * 1000) / 1000);
}

function setTab(tab) {
  state.tab = tab;
  $("tab-table").classList.toggle("active", tab === "table");
  $("tab-graph").classList.toggle("active", tab === "graph");
  $("table-view").hidden = tab !== "table";
  $("graph-view").hidden = tab !== "graph";
  $("range-label").hidden = tab !== "graph";
  $("step-label").hidden = tab !== "graph";
}

// --- autocompletion of metric and label names -------------------------------------------

async function loadNames() {
  if (state.metricNames === null) {
    state.metricNames = [];
    try {
      const [names, labels] = await Promise.all([
        fetch("api/v1/label/__name__/values").then((r) => r.json()),
        fetch("api/v1/labels").then((r) => r.json()),
      ]);
      state.metricNames = names.data || [];
      state.labelNames = (labels.data || []).filter((l) => l !== "__name__");
    } catch (e) {
      state.metricNames = [];
      state.labelNames = [];
    }
  }
}

// The word before the cursor and whether label names fit there (inside braces or a
// grouping clause).
function completionContext() {
  const text = $("expr").value.slice(0, $("expr").selectionStart);
  const word = /[a-zA-Z_:][a-zA-Z0-9_:]*$/.exec(text);
  const open = (text.match(/{/g) || []).length > (text.match(/}/g) || []).length;
  const grouping = /\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$/.test(text);
  return { word: word ? word[0] : "", labels: open || grouping };
}

async function suggest() {
  await loadNames();
  const { word, labels } = completionContext();
  const list = $("suggestions");
  if (!word) return hideSuggestions();
  const pool = labels ? state.labelNames || [] : state.metricNames || [];
  const starts = pool.filter((n) => n.startsWith(word) && n !== word);
  const contains = pool.filter((n) => !n.startsWith(word) && n.includes(word));
  const matches = starts.concat(contains).slice(0, 12);
  if (!matches.length) return hideSuggestions();
  list.textContent = "";
  matches.forEach((m, i) => {
    const li = document.createElement("li");
    li.textContent = m;
    li.className = labels ? "label-name" : "metric-name";
    li.addEventListener("mousedown", (e) => { e.preventDefault(); complete(m); });
    if (i === 0) li.classList.add("active");
    list.appendChild(li);
  });
  state.active = 0;
  list.hidden = false;
}

function hideSuggestions() {
  $("suggestions").hidden = true;
  state.active = -1;
}

function complete(name) {
  const input = $("expr");
  const pos = input.selectionStart;
  const before = input.value.slice(0, pos).replace(/[a-zA-Z_:][a-zA-Z0-9_:]*$/, "");
  input.value = before + name + input.value.slice(pos);
  const at = before.length + name.length;
  input.setSelectionRange(at, at);
  hideSuggestions();
  input.focus();
}

function onKey(e) {
  const list = $("suggestions");
  const items = list.querySelectorAll("li");
  if (!list.hidden && items.length) {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      items[state.active].classList.remove("active");
      state.active = (state.active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      items[state.active].classList.add("active");
      return;
    }
    if (e.key === "Tab" || (e.key === "Enter" && !e.shiftKey)) {
      e.preventDefault();
      complete(items[state.active].textContent);
      return;
    }
    if (e.key === "Escape") { hideSuggestions(); return; }
  }
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    run();
  }
}

// --- the stores page ----------------------------------------------------------------------

async function loadStores() {
  const target = $("stores");
  try {
    const json = await fetch("api/v1/stores").then((r) => r.json());
    target.textContent = "";
    const types = Object.keys(json.data || {}).sort();
    if (!types.length) target.textContent = "No endpoints.";
    for (const type of types) {
      const h = document.createElement("h2");
      h.textContent = type;
      target.appendChild(h);
      const table = document.createElement("table");
      table.className = "stores";
      table.dataset.type = type;
      const head = table.createTHead().insertRow();
      for (const c of ["Endpoint", "Status", "Last check", "Error", "Label sets", "Min time", "Max time"]) {
        const th = document.createElement("th");
        th.textContent = c;
        head.appendChild(th);
      }
      const body = table.createTBody();
      for (const s of json.data[type]) {
        const tr = body.insertRow();
        tr.dataset.endpoint = s.name;
        const up = s.lastError === null || s.lastError === undefined;
        const cells = [s.name, up ? "UP" : "DOWN", s.lastCheck, s.lastError || "",
          (s.labelSets || []).map(formatLabels).join("\n"),
          s.minTime ? timeOrSpecial(s.minTime) : "", s.maxTime ? timeOrSpecial(s.maxTime) : ""];
        cells.forEach((text, i) => {
          const td = tr.insertCell();
          td.textContent = text;
          if (i === 1) td.className = up ? "up" : "down";
        });
      }
      target.appendChild(table);
    }
  } catch (e) {
    target.textContent = "Error: " + e.message;
  }
}

function timeOrSpecial(ms) {
  if (ms <= -9007199254740) return "-∞";
  if (ms >= 9007199254740) return "+∞";
  try { return isoTime(ms / 1000); } catch (e) { return String(ms); }
}

// --- start ----------------------------------------------------------------------------------

function start() {
  const stores = /\/stores\/?$/.test(location.pathname);
  $("stores-page").hidden = !stores;
  $("query-page").hidden = stores;
  $(stores ? "nav-stores" : "nav-query").classList.add("active");
  if (stores) {
    loadStores();
    return;
  }
  const runNow = readUrl();
  setTab(state.tab);
  $("run").addEventListener("click", run);
  $("tab-table").addEventListener("click", () => { setTab("table"); run(); });
  $("tab-graph").addEventListener("click", () => { setTab("graph"); run(); });
  $("now").addEventListener("click", () => { $("end").value = ""; run(); });
  $("expr").addEventListener("keydown", onKey);
  $("expr").addEventListener("input", suggest);
  $("expr").addEventListener("blur", () => setTimeout(hideSuggestions, 100));
  if (runNow) run();
  else $("expr").focus();
}

start();
