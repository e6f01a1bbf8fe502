// The explorer page of `zoo explore`: reads data.js (networks, panels, fits) and nets/<cell>.js (per-network
// panels, loaded on a click) and draws with plotly.min.js beside it. No server, nothing fetched.
"use strict";

const OUTCOME_TITLES = {slow_point: "slow point", limit_cycle: "limit cycle", no_learning: "no learning",
                        unstable: "unstable"};
const OUTCOME_COLORS = {slow_point: "#0072B2", limit_cycle: "#E69F00", no_learning: "#7F7F7F", unstable: "#D55E00"};
const MECHANISMS = ["limit_cycle", "slow_point"];
const HEATMAPS = [["not_learned", "not learned"], ["limit_cycle", "limit cycle"], ["slow_point", "slow point"]];
const KIND_STYLE = {critical_delay: {color: "#ffffff", label: "critical delay"},
                    slow_point: {color: "#56B4E9", label: "slow-point boundary"}};
const KIND_STYLE_WHITE = {critical_delay: "#000000", slow_point: "#0072B2"};
const METHOD_DASH = ["solid", "dot", "dash", "dashdot"];
const PLOT_CONFIG = {displaylogo: false, responsive: true};

let D = null;  // the data of data.js
const state = {panel: 0, dmin: null, dmax: null, lr: "all", outcomes: new Set(), mechanisms: new Set(),
               method: "all", cell: null, net: null};
const netPanels = {};  // net_id -> precomputed panels
const loading = {};  // file -> callbacks waiting for it

function zooMessage(text, where) {
  const el = document.getElementById(where || "message");
  el.textContent = text;
  el.hidden = !text;
}
window.zooMessage = zooMessage;

function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toPrecision(digits || 3).replace(/\.?0+(e|$)/, "$1");
}

window.zooDataLoaded = function (data) {
  D = data;
  window.zooData = data;  // for the browser tests and the console
  if (typeof Plotly === "undefined") {
    zooMessage("plotly.min.js is missing beside index.html: rebuild with `zoo explore`.");
    return;
  }
  try { init(); } catch (err) { zooMessage("The explorer failed to start: " + err); throw err; }
};

window.zooNetsLoaded = function (nets) { Object.assign(netPanels, nets); };

// ------------------------------------------------------------------ filters
function panel() { return D.panels[state.panel]; }

function visibleIndices() {
  const N = D.networks;
  const fams = new Set(panel().families.map(f => N.families.indexOf(f)));
  const allOutcomes = state.outcomes.size === N.outcomes.length;
  const allMech = state.mechanisms.size === MECHANISMS.length;
  const out = [];
  for (let i = 0; i < N.net_id.length; i++) {
    if (!fams.has(N.family[i])) continue;
    const x = N.x[i];
    if (state.dmin !== null && x < state.dmin) continue;
    if (state.dmax !== null && x > state.dmax) continue;
    if (state.lr !== "all" && N.lr[i] !== state.lr) continue;
    const o = N.outcome[i] >= 0 ? N.outcomes[N.outcome[i]] : null;
    if (!allOutcomes && !state.outcomes.has(o)) continue;
    if (!allMech && !state.mechanisms.has(o)) continue;
    out.push(i);
  }
  return out;
}

function checkboxes(id, values, set) {
  const box = document.getElementById(id);
  for (const v of values) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox"; input.checked = true; input.value = v;
    input.addEventListener("change", () => { input.checked ? set.add(v) : set.delete(v); redraw(); });
    set.add(v);
    label.appendChild(input);
    label.appendChild(document.createTextNode(" " + OUTCOME_TITLES[v]));
    box.appendChild(label);
  }
}

function init() {
  const N = D.networks;
  document.getElementById("source").textContent = `${D.n_networks} networks from ${D.source}` +
    (Object.keys(D.filters).length ? ` (selected: ${JSON.stringify(D.filters)})` : "") +
    ` · rnn-stm-zoo ${D.version}` + (D.per_cell ? ` · per-network panels for up to ${D.per_cell} networks per cell` : "");
  if (D.notes.length) zooMessage(D.notes.join(" "));
  const ps = document.getElementById("f-panel");
  D.panels.forEach((p, i) => ps.add(new Option(p.title, i)));
  ps.addEventListener("change", () => { state.panel = Number(ps.value); state.cell = null; fillLr(); redraw(); });
  const lrSel = document.getElementById("f-lr");
  lrSel.addEventListener("change", () => { state.lr = lrSel.value === "all" ? "all" : Number(lrSel.value); redraw(); });
  for (const id of ["f-dmin", "f-dmax"]) {
    document.getElementById(id).addEventListener("change", ev => {
      const v = ev.target.value === "" ? null : Number(ev.target.value);
      if (id === "f-dmin") state.dmin = v; else state.dmax = v;
      redraw();
    });
  }
  checkboxes("f-mechanism", MECHANISMS, state.mechanisms);
  checkboxes("f-outcome", N.outcomes, state.outcomes);
  const ms = document.getElementById("f-method");
  ms.add(new Option("all methods", "all"));
  const methods = new Set();
  D.panels.forEach(p => Object.keys(p.fits).forEach(m => methods.add(m)));
  methods.forEach(m => ms.add(new Option(m, m)));
  ms.addEventListener("change", () => { state.method = ms.value; redraw(); });
  document.getElementById("copy-call").addEventListener("click", () => {
    const text = document.getElementById("cell-call").textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
  });
  fillLr();
  redraw();
}

function fillLr() {
  const N = D.networks, sel = document.getElementById("f-lr");
  const fams = new Set(panel().families.map(f => N.families.indexOf(f)));
  const present = new Set();
  N.lr.forEach((l, i) => { if (fams.has(N.family[i])) present.add(l); });
  sel.innerHTML = "";
  sel.add(new Option("all", "all"));
  [...present].sort((a, b) => a - b).forEach(l => sel.add(new Option(fmt(N.lrs[l], 4), l)));
  state.lr = "all";
}

// ------------------------------------------------------------------ cells
function cellsOf(indices) {
  const N = D.networks, cells = new Map();
  for (const i of indices) {
    const key = N.lr[i] + "|" + N.x[i];
    if (!cells.has(key)) cells.set(key, {lr: N.lr[i], x: N.x[i], n: 0, counts: {}, nets: []});
    const c = cells.get(key);
    c.n += 1; c.nets.push(i);
    const o = N.outcome[i] >= 0 ? N.outcomes[N.outcome[i]] : "unlabelled";
    c.counts[o] = (c.counts[o] || 0) + 1;
  }
  return cells;
}

function fraction(c, what) {
  const k = what === "not_learned" ? (c.counts.no_learning || 0) + (c.counts.unstable || 0) : (c.counts[what] || 0);
  return k / c.n;
}

function hoverText(c) {
  const N = D.networks;
  const parts = Object.keys(OUTCOME_TITLES).map(o => `${OUTCOME_TITLES[o]} ${c.counts[o] || 0}`);
  if (c.counts.unlabelled) parts.push(`unlabelled ${c.counts.unlabelled}`);
  return `lr ${fmt(N.lrs[c.lr], 4)}, ${panel().x === "response_ms" ? "response" : "delay"} ${c.x} ms<br>` +
         `${c.n} networks: ${parts.join(", ")}`;
}

function methodsShown(p) {
  const all = Object.keys(p.fits);
  return state.method === "all" ? all : all.filter(m => m === state.method);
}

function boundaryTraces(p, axis, xRange, legend, onWhite) {
  const traces = [];
  const N = D.networks;
  const lrs = p.families.length ? N.lrs : [];
  if (!lrs.length) return traces;
  methodsShown(p).forEach(m => {
    const dash = METHOD_DASH[Object.keys(p.fits).indexOf(m) % METHOD_DASH.length];
    for (const [kind, st] of Object.entries(KIND_STYLE)) {
      const fit = p.fits[m][kind];
      if (!fit || !fit.ok) continue;
      const color = onWhite ? KIND_STYLE_WHITE[kind] : st.color;
      const xs = [], ys = [];
      const lo = Math.max(xRange[0], 1), hi = xRange[1];
      for (let k = 0; k <= 60; k++) {
        const d = lo + (hi - lo) * k / 60;
        xs.push(d); ys.push(Math.exp(fit.intercept) * Math.pow(d, -fit.beta));
      }
      traces.push({x: xs, y: ys, mode: "lines", xaxis: "x" + axis, yaxis: "y", hoverinfo: "skip",
                   line: {color, dash, width: 2}, name: `${st.label} fit (${m}): β = ${fmt(fit.beta)}`,
                   showlegend: legend, legendgroup: m + kind});
      const used = fit.rates.filter(r => r.used);
      traces.push({x: used.map(r => r.value), y: used.map(r => r.lr), mode: "markers", xaxis: "x" + axis,
                   yaxis: "y", marker: {color, size: 6, symbol: kind === "slow_point" ? "square" : "circle",
                   line: {color: "#000", width: 1}}, name: `${st.label} per rate (${m})`, showlegend: false,
                   legendgroup: m + kind, hoverinfo: "skip"});  // skip: a click on a marker reaches the cell below
    }
  });
  return traces;
}

function edges(values, log) {
  const v = log ? values.map(Math.log) : values.slice();
  const half = v.length > 1 ? null : (log ? Math.log(1.5) : 10);
  const e = [];
  for (let i = 0; i <= v.length; i++) {
    if (half !== null) e.push(i ? v[0] + half : v[0] - half);
    else if (i === 0) e.push(v[0] - (v[1] - v[0]) / 2);
    else if (i === v.length) e.push(v[i - 1] + (v[i - 1] - v[i - 2]) / 2);
    else e.push((v[i - 1] + v[i]) / 2);
  }
  return log ? e.map(Math.exp) : e;
}

function drawDiagram(indices) {
  const div = document.getElementById("diagram");
  const p = panel(), N = D.networks;
  if (!indices.length) {
    Plotly.purge(div);
    div.innerHTML = "";
    zooMessage("No network matches these filters: widen the delay range, or tick more mechanisms or outcomes.",
               "message");
    return null;
  }
  zooMessage(D.notes.join(" "));
  const cells = cellsOf(indices);
  const xs = [...new Set([...cells.values()].map(c => c.x))].sort((a, b) => a - b);
  const ls = [...new Set([...cells.values()].map(c => c.lr))].sort((a, b) => b - a);
  const lrVals = ls.map(l => N.lrs[l]);
  // brick edges (plotly's default gives a lone row or column a width of 1): midpoints, geometric for the rates
  const xEdges = edges(xs, false), yEdges = edges(lrVals, true);  // both ascending
  const traces = [];
  HEATMAPS.forEach(([what, title], j) => {
    const z = ls.map(l => xs.map(x => { const c = cells.get(l + "|" + x); return c ? fraction(c, what) : null; }));
    const text = ls.map(l => xs.map(x => { const c = cells.get(l + "|" + x); return c ? hoverText(c) : ""; }));
    const custom = ls.map(l => xs.map(x => l + "|" + x));
    traces.push({type: "heatmap", x: xEdges, y: yEdges, z, text, customdata: custom, xaxis: "x" + (j ? j + 1 : ""),
                 yaxis: "y", colorscale: "Cividis", zmin: 0, zmax: 1, showscale: j === 2, name: title,
                 hovertemplate: "%{text}<br>" + title + ": %{z:.2f}<extra></extra>",
                 colorbar: {title: {text: "fraction"}, len: 0.9}});
  });
  const xRange = [xEdges[0], xEdges[xEdges.length - 1]];
  if (p.x === "delay_ms") {
    HEATMAPS.forEach((_, j) => traces.push(...boundaryTraces(p, j ? String(j + 1) : "", xRange, j === 0, false)));
  }
  const gap = 0.04, w = (1 - 2 * gap - 0.06) / 3;
  const layout = {margin: {t: 40, l: 70, r: 20, b: 50}, legend: {orientation: "h", y: -0.18, font: {size: 10}},
                  yaxis: {type: "log", title: {text: "learning rate"},
                          range: [Math.log10(yEdges[0]), Math.log10(yEdges[yEdges.length - 1])]},
                  annotations: [], plot_bgcolor: "#dddddd"};
  HEATMAPS.forEach(([, title], j) => {
    const key = "xaxis" + (j ? j + 1 : "");
    layout[key] = {domain: [j * (w + gap), j * (w + gap) + w], title: {text: p.xlabel}, range: xRange,
                   anchor: "y"};
    layout.annotations.push({text: `<b>${title}</b>`, x: j * (w + gap) + w / 2, y: 1.07, xref: "paper",
                             yref: "paper", showarrow: false});
  });
  Plotly.react(div, traces, layout, PLOT_CONFIG);
  if (!div._zooClick) {
    div.on("plotly_click", ev => {
      const pt = ev.points.find(q => q.data.type === "heatmap");
      if (pt && pt.customdata) { state.cell = pt.customdata; drawCell(); }
    });
    div._zooClick = true;
  }
  return cells;
}

function drawScaling() {
  const div = document.getElementById("scaling"), notes = document.getElementById("scaling-notes");
  const p = panel();
  const lines = [];
  if (p.x !== "delay_ms" || !Object.keys(p.fits).length) {
    Plotly.purge(div); div.innerHTML = "";
    notes.textContent = p.x !== "delay_ms" ? "No delay axis (no-memory control family): no boundary to scale."
                                           : "No boundary fits for this panel.";
    return;
  }
  const traces = [];
  let any = false;
  methodsShown(p).forEach(m => {
    const dash = METHOD_DASH[Object.keys(p.fits).indexOf(m) % METHOD_DASH.length];
    for (const [kind, st] of Object.entries(KIND_STYLE)) {
      const fit = p.fits[m][kind];
      if (!fit) continue;
      lines.push(`${m}: ${fit.summary}`);
      const used = fit.rates.filter(r => r.used);
      if (!used.length) continue;
      any = true;
      const color = KIND_STYLE_WHITE[kind];
      const err = used.some(r => r.lo !== null && r.hi !== null) ? {type: "data", symmetric: false,
        array: used.map(r => r.hi !== null ? r.hi - r.value : 0), arrayminus: used.map(r => r.lo !== null ? r.value - r.lo : 0),
        color} : undefined;
      traces.push({x: used.map(r => r.lr), y: used.map(r => r.value), mode: "markers", error_y: err,
                   marker: {color, size: 8, symbol: kind === "slow_point" ? "square" : "circle"},
                   name: `${st.label} per rate (${m})`, legendgroup: m + kind,
                   hovertemplate: `lr %{x:.3g}: %{y:.0f} ms<extra>${st.label} (${m})</extra>`});
      if (fit.ok) {
        const lr = used.map(r => r.lr), lo = Math.min(...lr) / 1.3, hi = Math.max(...lr) * 1.3;
        const xs = [], ys = [];
        for (let k = 0; k <= 40; k++) {
          const l = lo * Math.pow(hi / lo, k / 40);
          xs.push(l); ys.push(Math.pow(l / Math.exp(fit.intercept), -1 / fit.beta));
        }
        const ci = fit.ci && fit.ci[0] !== null ? ` [${fmt(fit.ci[0])}, ${fmt(fit.ci[1])}]` : "";
        traces.push({x: xs, y: ys, mode: "lines", line: {color, dash, width: 1.8}, hoverinfo: "skip",
                     name: `fit (${m}): β = ${fmt(fit.beta)}${ci}`, legendgroup: m + kind});
      }
    }
  });
  notes.textContent = lines.join(" · ");
  if (!any) { Plotly.purge(div); div.innerHTML = ""; return; }
  Plotly.react(div, traces, {margin: {t: 30, l: 70, r: 20, b: 50}, xaxis: {type: "log", title: {text: "learning rate"}},
                             yaxis: {type: "log", title: {text: "boundary delay (ms)"}},
                             legend: {font: {size: 10}}, title: {text: p.title, font: {size: 13}}}, PLOT_CONFIG);
}

// ------------------------------------------------------------------ a cell and a network
function pyValue(v) { return typeof v === "string" ? JSON.stringify(v) : String(v); }

function loadCall(cell) {
  const N = D.networks, p = panel();
  const fams = [...new Set(cell.nets.map(i => N.families[N.family[i]]))].sort();
  const args = [];
  if (D.source_call) args.push(D.source_call);
  args.push("family=" + (fams.length === 1 ? pyValue(fams[0]) : "[" + fams.map(pyValue).join(", ") + "]"));
  args.push("lr=" + String(N.lrs[cell.lr]));
  args.push((p.x === "response_ms" ? "response=" : "delay=") + String(cell.x));
  const outcomeFilter = state.outcomes.size < N.outcomes.length || "outcome" in D.filters;
  const mechFilter = state.mechanisms.size < MECHANISMS.length || "mechanism" in D.filters;
  if (outcomeFilter) args.push("outcome=[" + N.outcomes.filter(o => state.outcomes.has(o)).map(pyValue).join(", ") + "]");
  if (mechFilter) args.push("mechanism=[" + MECHANISMS.filter(o => state.mechanisms.has(o)).map(pyValue).join(", ") + "]");
  const head = D.source_call === null ? "# RELEASE: the release folder or Hub id this metadata table belongs to\n" +
    "zoo = load_zoo(RELEASE, " : "zoo = load_zoo(";
  return "from zoo import load_zoo\n" + head + args.join(", ") + ")";
}

function drawCell() {
  const sec = document.getElementById("cell-section");
  const cells = cellsOf(visibleIndices());
  const cell = state.cell && cells.get(state.cell);
  if (!cell) { sec.hidden = true; return; }
  const N = D.networks;
  sec.hidden = false;
  document.getElementById("cell-title").textContent =
    `Cell: lr ${fmt(N.lrs[cell.lr], 4)}, ${panel().x === "response_ms" ? "response" : "delay"} ${cell.x} ms (${cell.n} networks)`;
  document.getElementById("cell-call").textContent = loadCall(cell);
  const table = document.getElementById("cell-table");
  table.innerHTML = "<tr><th>seed</th><th>outcome</th><th>mechanism</th><th>psd_ratio</th><th>final loss</th>" +
                    "<th>accuracy</th><th>reliability</th><th>epochs</th><th>panels</th></tr>";
  const nets = cell.nets.slice().sort((a, b) => N.seed[a] - N.seed[b]);
  for (const i of nets) {
    const o = N.outcome[i] >= 0 ? N.outcomes[N.outcome[i]] : "unlabelled";
    const tr = document.createElement("tr");
    tr.className = "net"; tr.dataset.net = N.net_id[i];
    tr.innerHTML = `<td>${N.seed[i]}</td><td class="outcome" style="color:${OUTCOME_COLORS[o] || "#000"}">` +
      `${OUTCOME_TITLES[o] || o}</td><td class="outcome">${MECHANISMS.includes(o) ? OUTCOME_TITLES[o] : "–"}</td>` +
      `<td>${fmt(N.psd_ratio[i])}</td><td>${fmt(N.final_loss[i])}</td><td>${fmt(N.final_accuracy[i])}</td>` +
      `<td>${fmt(N.final_reliability[i])}</td><td>${N.epochs[i]}</td>` +
      `<td>${N.panel_file[i] >= 0 ? "show" : "–"}</td>`;
    tr.addEventListener("click", () => selectNetwork(i));
    table.appendChild(tr);
  }
}

function selectNetwork(i) {
  const N = D.networks, id = N.net_id[i];
  state.net = id;
  document.querySelectorAll("#cell-table tr.net").forEach(tr => tr.classList.toggle("selected", tr.dataset.net === id));
  const sec = document.getElementById("network-section");
  sec.hidden = false;
  const o = N.outcome[i] >= 0 ? N.outcomes[N.outcome[i]] : "unlabelled";
  document.getElementById("network-title").textContent = `Network ${id} (${OUTCOME_TITLES[o] || o})`;
  const file = N.panel_file[i];
  const plots = document.querySelector("#network-section .plots");
  plots.hidden = file < 0;
  if (file < 0) {
    for (const d of ["net-curves", "net-outputs", "net-pcs"]) Plotly.purge(d);
    zooMessage(D.weights ? `No precomputed panels for ${id}: this explorer holds them for ${D.per_cell} network(s) ` +
               "per cell (rebuild with a larger --per-cell, or load it with the call above)."
               : "Per-network panels are unavailable: this explorer was built from a metadata table without weights.",
               "network-message");
    return;
  }
  zooMessage("", "network-message");
  withPanels(file, id, () => drawNetwork(id, i));
}

function withPanels(file, id, then) {
  if (netPanels[id]) { then(); return; }
  if (loading[file]) { loading[file].push(then); return; }
  loading[file] = [then];
  const s = document.createElement("script");
  s.src = `nets/${file}.js`;
  s.onload = () => { const cbs = loading[file]; delete loading[file]; cbs.forEach(f => f()); };
  s.onerror = () => { delete loading[file]; zooMessage(`nets/${file}.js is missing: rebuild with \`zoo explore\`.`, "network-message"); };
  document.head.appendChild(s);
}

function shadeShapes(sim, axis) {
  const rect = (x0, x1, color) => ({type: "rect", xref: "x" + axis, yref: "y" + axis + " domain", x0, x1, y0: 0, y1: 1,
                                    fillcolor: color, opacity: 0.25, line: {width: 0}, layer: "below"});
  return [rect(...sim.cue_ms, "#999999"), rect(...sim.delay_ms, "#F0E442"), rect(...sim.reaction_ms, "#009E73"),
          {type: "line", xref: "x" + axis, yref: "y" + axis + " domain", x0: sim.nominal_ms, x1: sim.nominal_ms,
           y0: 0, y1: 1, line: {color: "#555", dash: "dot", width: 1}}];
}

function drawNetwork(id, i) {
  if (state.net !== id) return;
  const P = netPanels[id], c = P.curves, sim = P.sim;
  sim.t = sim.outputs[0][0].map((_, j) => j * sim.t_step_ms);
  const traces = [{x: c.epoch, y: c.loss, name: "loss", line: {color: "#000"}, yaxis: "y"},
                  {x: c.epoch, y: c.accuracy, name: "accuracy", line: {color: "#0072B2"}, yaxis: "y2"},
                  {x: c.epoch, y: c.reliability, name: "reliability", line: {color: "#E69F00"}, yaxis: "y2"}];
  const shapes = c.first_learned_epoch === null ? [] : [{type: "line", x0: c.first_learned_epoch, x1: c.first_learned_epoch,
    yref: "paper", y0: 0, y1: 1, line: {color: "#009E73", dash: "dash"}}];
  const ann = c.first_learned_epoch === null ? [{text: "never learned (acc, rel > 0.8)", xref: "paper", yref: "paper",
    x: 0.5, y: 1.08, showarrow: false}] : [{text: `first learned epoch ${c.first_learned_epoch}`, x: c.first_learned_epoch,
    yref: "paper", y: 1.08, showarrow: false, font: {color: "#009E73"}}];
  Plotly.react("net-curves", traces, {title: {text: "training curves", font: {size: 13}}, shapes, annotations: ann,
    margin: {t: 50, l: 60, r: 50, b: 40}, xaxis: {title: {text: "epoch"}, anchor: "y2"},
    yaxis: {type: "log", title: {text: "loss"}, domain: [0.55, 1]},
    yaxis2: {title: {text: "acc / rel"}, domain: [0, 0.45], range: [-0.05, 1.05], anchor: "x"},
    legend: {orientation: "h", y: -0.2, font: {size: 10}}}, PLOT_CONFIG);
  const out = [];
  [0, 1].forEach(k => [0, 1].forEach(ch => out.push({x: sim.t, y: sim.outputs[k][ch], xaxis: "x" + (k ? 2 : ""),
    yaxis: "y" + (k ? 2 : ""), name: `output ${ch}` + (k ? "" : ""), showlegend: k === 0, legendgroup: "ch" + ch,
    line: {color: ch ? "#0072B2" : "#D55E00", width: 1.4}})));
  Plotly.react("net-outputs", out, {title: {text: `outputs, ${Math.round(sim.t[sim.t.length - 1] / sim.nominal_ms)}x extended trial`,
    font: {size: 13}}, margin: {t: 50, l: 60, r: 20, b: 40},
    grid: {rows: 2, columns: 1, pattern: "independent"}, shapes: [...shadeShapes(sim, ""), ...shadeShapes(sim, "2")],
    yaxis: {title: {text: "trial type 0"}, range: [-0.05, 1.05]}, yaxis2: {title: {text: "trial type 1"}, range: [-0.05, 1.05]},
    xaxis2: {title: {text: "time (ms; cue grey, delay yellow, reaction green)"}},
    legend: {orientation: "h", y: -0.25, font: {size: 10}}}, PLOT_CONFIG);
  const pcs = [];
  const inDelay = sim.t.map(t => t >= sim.delay_ms[0] && t <= sim.delay_ms[1]);
  [0, 1].forEach(k => {
    const color = k ? "#CC79A7" : "#0072B2";
    pcs.push({x: sim.pc[k][0], y: sim.pc[k][1], mode: "lines", line: {color, width: 1}, name: `trial type ${k}`,
              text: sim.t.map(t => `${t} ms`), hovertemplate: "%{text}<extra></extra>"});
    pcs.push({x: sim.pc[k][0].filter((_, j) => inDelay[j]), y: sim.pc[k][1].filter((_, j) => inDelay[j]),
              mode: "markers+lines", line: {color: "#E69F00", width: 3}, marker: {size: 4, color: "#E69F00"},
              name: "delay period", showlegend: k === 0, legendgroup: "delay", hoverinfo: "skip"});
    pcs.push({x: [sim.pc[k][0][0]], y: [sim.pc[k][1][0]], mode: "markers", marker: {symbol: "circle-open", size: 10, color},
              name: "start", showlegend: false, hoverinfo: "skip"});
    pcs.push({x: [sim.pc[k][0][sim.t.length - 1]], y: [sim.pc[k][1][sim.t.length - 1]], mode: "markers",
              marker: {symbol: "x", size: 10, color}, name: "end", showlegend: false, hoverinfo: "skip"});
  });
  const ev = sim.explained;
  Plotly.react("net-pcs", pcs, {title: {text: "firing rates, top two principal components", font: {size: 13}},
    margin: {t: 50, l: 60, r: 20, b: 40}, xaxis: {title: {text: `PC1 (${fmt(100 * ev[0], 2)}% var)`}},
    yaxis: {title: {text: `PC2 (${fmt(100 * ev[1], 2)}% var)`}}, legend: {orientation: "h", y: -0.2, font: {size: 10}}},
    PLOT_CONFIG);
}

function redraw() {
  const indices = visibleIndices();
  drawDiagram(indices);
  drawScaling();
  drawCell();
}
