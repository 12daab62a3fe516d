// The vizdebug dashboard: a plain ES module TensorBoard loads in an iframe (no build step).
//
// Every piece of data (run, module and layer names, messages) is user-controlled text: it only
// ever reaches the page through textContent, SVG text nodes or canvas fillText, never innerHTML.

const BASE = new URL('../', import.meta.url); // .../data/plugin/vizdebug/
const SVG = 'http://www.w3.org/2000/svg';
const CELL_H = 14;
const LABEL_W = 260;
const PRESETS = [
  ['gradient norm', 'grad', 'l2'],
  ['update ratio', 'update', 'update_ratio'],
  ['activation zero fraction', 'output', 'zero_fraction'],
  ['NaN and Inf count', 'output', 'nonfinite'],
  ['weight norm', 'weight', 'l2'],
];

const state = {
  runs: [], run: null, rank: 0, role: 'grad', stat: 'l2', log: true,
  heatmap: null, anomalies: [], selected: null, mark: null, stats: {},
};

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') node.textContent = v;
    else if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJson(route, params) {
  const url = new URL(route, BASE);
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, String(v));
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function num(v) {
  if (v === null || v === undefined) return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return v;
}

function fmt(v) {
  const x = num(v);
  if (Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return x > 0 ? '+Inf' : '-Inf';
  if (x !== 0 && (Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3)) return x.toExponential(3);
  return String(Math.round(x * 1e4) / 1e4);
}

function color(t) {
  // A viridis-like ramp from dark blue (low) to yellow (high).
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

const STYLE = `
  body { font: 13px/1.4 Roboto, sans-serif; margin: 12px; color: #212121; }
  .bar { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
  .note { color: #b45309; margin: 4px 0; }
  .grid { display: grid; grid-template-columns: minmax(0, 3fr) minmax(300px, 2fr); gap: 16px; }
  .heat { display: flex; overflow: auto; max-height: 70vh; border: 1px solid #ddd; }
  .labels div { height: ${CELL_H}px; line-height: ${CELL_H}px; font-size: 11px; width: ${LABEL_W}px;
    overflow: hidden; white-space: nowrap; text-overflow: ellipsis; cursor: pointer; padding-right: 4px;
    text-align: right; }
  .labels div.sel { background: #fde68a; }
  canvas { cursor: crosshair; image-rendering: pixelated; }
  table { border-collapse: collapse; width: 100%; }
  td, th { padding: 2px 6px; border-bottom: 1px solid #eee; text-align: left; font-size: 12px; }
  tr.anomaly { cursor: pointer; } tr.anomaly:hover { background: #fef3c7; }
  .panel h3 { margin: 4px 0; word-break: break-all; }
  .muted { color: #757575; } .err { color: #b91c1c; }
  button.role { margin-right: 4px; } button.role.on { font-weight: bold; }
`;

const ui = {};

export async function render() {
  document.head.appendChild(el('style', {text: STYLE}));
  ui.run = el('select', {id: 'run', onchange: () => selectRun(ui.run.value)});
  ui.rank = el('select', {id: 'rank', onchange: () => { state.rank = Number(ui.rank.value); refresh(); }});
  ui.preset = el('select', {id: 'preset', onchange: applyPreset},
    [el('option', {value: '', text: 'custom'}),
     ...PRESETS.map((p, i) => el('option', {value: String(i), text: p[0]}))]);
  ui.role = el('select', {id: 'role', onchange: () => { state.role = ui.role.value; loadHeatmap(); }});
  ui.stat = el('select', {id: 'stat', onchange: () => { state.stat = ui.stat.value; loadHeatmap(); }});
  ui.log = el('input', {type: 'checkbox', id: 'log', onchange: () => { state.log = ui.log.checked; drawHeatmap(); }});
  ui.log.checked = state.log;
  ui.status = el('div', {class: 'note', id: 'status'});
  ui.labels = el('div', {class: 'labels', id: 'heatmap-labels'});
  ui.canvas = el('canvas', {id: 'heatmap'});
  ui.canvas.addEventListener('click', onCanvasClick);
  ui.canvas.addEventListener('mousemove', onCanvasMove);
  ui.hover = el('div', {class: 'muted', id: 'hover', text: ' '});
  ui.legend = el('div', {class: 'muted', id: 'legend'});
  ui.anomalies = el('tbody', {id: 'anomalies'});
  ui.anomalyCount = el('span', {class: 'muted'});
  ui.panel = el('div', {class: 'panel', id: 'module-panel'},
    [el('p', {class: 'muted', text: 'Click a heatmap row or an anomaly to see a module.'})]);
  document.body.append(
    el('div', {class: 'bar'}, [
      el('label', {text: 'run '}, [ui.run]), el('label', {text: 'rank '}, [ui.rank]),
      el('label', {text: 'show '}, [ui.preset]), el('label', {text: 'role '}, [ui.role]),
      el('label', {text: 'statistic '}, [ui.stat]), el('label', {text: ' log colour scale'}, [ui.log]),
      el('button', {text: 'reload', onclick: () => refresh()}),
    ]),
    ui.status,
    el('div', {class: 'grid'}, [
      el('div', {}, [
        el('h3', {text: 'Health heatmap (modules × steps)'}),
        el('div', {class: 'heat'}, [ui.labels, ui.canvas]), ui.hover, ui.legend,
        el('h3', {}, [document.createTextNode('Anomalies '), ui.anomalyCount]),
        el('table', {}, [
          el('thead', {}, [el('tr', {}, ['step', 'rank', 'module', 'phase', 'role', 'kind', 'message']
            .map((h) => el('th', {text: h})))]),
          ui.anomalies,
        ]),
      ]),
      ui.panel,
    ]),
  );
  await loadRuns();
  setInterval(() => { if (!document.hidden) refresh(); }, 30000);
}

async function loadRuns() {
  try {
    const body = await getJson('runs');
    state.runs = body.runs;
    state.stats = body.stats;
  } catch (e) {
    ui.status.textContent = `Could not list runs: ${e.message}`;
    return;
  }
  ui.stat.replaceChildren(...Object.entries(state.stats).map(
    ([k, label]) => el('option', {value: k, text: label})));
  ui.run.replaceChildren(...state.runs.map((r) => el('option', {value: r.name, text: r.name})));
  if (!state.runs.length) {
    ui.status.textContent = 'No run holds vizdebug data yet.';
    return;
  }
  const keep = state.runs.find((r) => r.name === state.run);
  await selectRun(keep ? keep.name : state.runs[0].name);
}

async function selectRun(name) {
  state.run = name;
  ui.run.value = name;
  const run = state.runs.find((r) => r.name === name);
  ui.rank.replaceChildren(...run.ranks.map((k) => el('option', {value: String(k), text: String(k)})));
  if (!run.ranks.includes(state.rank)) state.rank = run.ranks[0];
  ui.rank.value = String(state.rank);
  const roles = run.roles.length ? run.roles : ['grad'];
  ui.role.replaceChildren(...roles.map((r) => el('option', {value: r, text: r})));
  if (!roles.includes(state.role)) state.role = roles.includes('grad') ? 'grad' : roles[0];
  ui.role.value = state.role;
  ui.stat.value = state.stat;
  ui.status.textContent = run.complete ? '' :
    `Showing the samples TensorBoard kept (read through its data provider). Start TensorBoard with ` +
    `--samples_per_plugin vizdebug=0 to see every step.`;
  await refresh();
}

function applyPreset() {
  const p = PRESETS[Number(ui.preset.value)];
  if (!p) return;
  [, state.role, state.stat] = p;
  if (![...ui.role.options].some((o) => o.value === state.role)) {
    ui.role.appendChild(el('option', {value: state.role, text: state.role}));
  }
  ui.role.value = state.role;
  ui.stat.value = state.stat;
  loadHeatmap();
}

async function refresh() {
  if (!state.run) return;
  await Promise.all([loadHeatmap(), loadAnomalies()]);
  if (state.selected) await loadModule(state.selected.name, state.selected.role);
}

async function loadHeatmap() {
  try {
    state.heatmap = await getJson('heatmap', {run: state.run, rank: state.rank,
      role: state.role, stat: state.stat, max_cols: 600});
  } catch (e) {
    state.heatmap = null;
    ui.legend.textContent = `Heatmap unavailable: ${e.message}`;
  }
  drawHeatmap();
}

function scaleOf(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of values) for (const v of row) {
    const x = num(v);
    if (!Number.isFinite(x)) continue;
    const y = state.log ? (x > 0 ? Math.log10(x) : NaN) : x;
    if (Number.isNaN(y)) continue;
    if (y < lo) lo = y;
    if (y > hi) hi = y;
  }
  return [lo, hi];
}

function drawHeatmap() {
  const h = state.heatmap;
  const names = h ? h.names : [];
  ui.labels.replaceChildren(...names.map((name, i) => {
    const div = el('div', {title: name, text: name, 'data-row': String(i),
      onclick: () => loadModule(name, h.stat === 'update_ratio' ? 'update' : h.role)});
    if (state.selected && state.selected.name === name) div.classList.add('sel');
    return div;
  }));
  const cols = h ? h.steps.length : 0;
  const cellW = cols ? Math.max(1, Math.min(12, Math.floor(900 / cols))) : 1;
  const canvas = ui.canvas;
  canvas.width = Math.max(cols * cellW, 1);
  canvas.height = Math.max(names.length * CELL_H, 1);
  canvas.dataset.cellW = String(cellW);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#f5f5f5';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!h || !names.length) {
    ui.legend.textContent = h ? `No ${h.role} statistics in this run.` : ui.legend.textContent;
    return;
  }
  const [lo, hi] = scaleOf(h.values);
  h.values.forEach((row, r) => row.forEach((v, c) => {
    const x = num(v);
    if (Number.isNaN(x)) return;
    if (!Number.isFinite(x)) ctx.fillStyle = '#dc2626';
    else {
      const y = state.log ? (x > 0 ? Math.log10(x) : lo) : x;
      ctx.fillStyle = color(hi > lo ? (y - lo) / (hi - lo) : 0.5);
    }
    ctx.fillRect(c * cellW, r * CELL_H, cellW, CELL_H - 1);
  }));
  if (state.mark) {
    const r = names.indexOf(state.mark.module);
    let c = h.steps.findIndex((s) => s > state.mark.step) - 1;
    if (c < 0) c = h.steps[h.steps.length - 1] <= state.mark.step ? h.steps.length - 1 : 0;
    ctx.strokeStyle = '#dc2626';
    ctx.lineWidth = 2;
    ctx.strokeRect(c * cellW - 1, 0, cellW + 2, canvas.height);
    if (r >= 0) ctx.strokeRect(0, r * CELL_H, canvas.width, CELL_H);
  }
  const unit = state.log ? 'log10 ' : '';
  const label = state.stats[h.stat] || h.stat;
  ui.legend.textContent = `${label} of ${h.role}: ${names.length} names, steps ${h.steps[0]}–` +
    `${h.last_step} (${cols} columns); colour ${unit}range ${fmt(lo)} … ${fmt(hi)}; ` +
    `red: ±Inf; grey: not recorded. Source: ${h.source}.`;
}

function cellAt(event) {
  const h = state.heatmap;
  if (!h) return null;
  const rect = ui.canvas.getBoundingClientRect();
  const cellW = Number(ui.canvas.dataset.cellW || 1);
  const c = Math.floor((event.clientX - rect.left) / cellW);
  const r = Math.floor((event.clientY - rect.top) / CELL_H);
  if (r < 0 || r >= h.names.length || c < 0 || c >= h.steps.length) return null;
  return {r, c, name: h.names[r], step: h.steps[c], value: h.values[r][c]};
}

function onCanvasMove(event) {
  const cell = cellAt(event);
  ui.hover.textContent = cell ? `${cell.name} · step ${cell.step} · ${fmt(cell.value)}` : ' ';
}

function onCanvasClick(event) {
  const cell = cellAt(event);
  if (!cell) return;
  state.mark = {module: cell.name, step: cell.step};
  loadModule(cell.name, state.heatmap.stat === 'update_ratio' ? 'update' : state.heatmap.role);
}

async function loadAnomalies() {
  let body;
  try {
    body = await getJson('anomalies', {run: state.run, rank: state.rank, limit: 2000});
  } catch (e) {
    ui.anomalies.replaceChildren(el('tr', {}, [el('td', {class: 'err', text: e.message})]));
    return;
  }
  state.anomalies = body.anomalies;
  ui.anomalyCount.textContent = body.total > body.anomalies.length ?
    `(${body.total}, first ${body.anomalies.length} shown)` : `(${body.total})`;
  if (!body.anomalies.length) {
    ui.anomalies.replaceChildren(el('tr', {}, [el('td', {class: 'muted', text: 'none'})]));
    return;
  }
  ui.anomalies.replaceChildren(...body.anomalies.map((a) => el('tr', {class: 'anomaly',
    onclick: () => focusAnomaly(a)}, [a.step, a.rank, a.module || '?', a.phase, a.role, a.kind,
    a.message].map((v) => el('td', {text: String(v)})))));
}

async function focusAnomaly(a) {
  state.mark = {module: a.module, step: a.step};
  const roles = [...ui.role.options].map((o) => o.value);
  if (a.role && roles.includes(a.role) && a.role !== state.role) {
    state.role = a.role;
    ui.role.value = a.role;
    if (state.stat === 'update_ratio') state.stat = 'nonfinite';
    ui.stat.value = state.stat;
    await loadHeatmap();
  } else {
    drawHeatmap();
  }
  if (a.module) await loadModule(a.module, a.role || state.role);
}

async function loadModule(name, role) {
  state.selected = {name, role};
  for (const div of ui.labels.children) div.classList.toggle('sel', div.textContent === name);
  let m;
  try {
    m = await getJson('module', {run: state.run, rank: state.rank, name, role});
  } catch (e) {
    ui.panel.replaceChildren(el('h3', {text: name}), el('p', {class: 'err', text: e.message}));
    return;
  }
  const stat = state.stat in m.series ? state.stat : 'l2';
  const values = m.series[stat] || [];
  ui.panel.replaceChildren(
    el('h3', {text: m.name}),
    el('div', {}, m.roles.map((r) => el('button', {class: r === role ? 'role on' : 'role', text: r,
      onclick: () => loadModule(name, r)}))),
    el('p', {class: 'muted', text: `${m.role} · ${state.stats[stat] || stat} over ${m.steps.length} recorded steps; ` +
      `latest ${fmt(values[values.length - 1])}`}),
    lineChart(m.steps, values),
    el('p', {class: 'muted', text: m.histogram ? `histogram at step ${m.histogram.step} (finite values)` : 'no histogram'}),
    m.histogram ? histChart(m.histogram) : el('span'),
  );
}

function lineChart(xs, ys) {
  const W = 420; const H = 160; const P = 36;
  const root = svg('svg', {width: W, height: H, id: 'module-series'});
  const pts = xs.map((x, i) => [x, num(ys[i])]).filter(([, y]) => Number.isFinite(y));
  if (!pts.length) {
    root.appendChild(svg('text', {x: P, y: H / 2}, 'no finite values'));
    return root;
  }
  const x0 = pts[0][0]; const x1 = pts[pts.length - 1][0];
  let y0 = Math.min(...pts.map((p) => p[1])); let y1 = Math.max(...pts.map((p) => p[1]));
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => P + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (W - P - 8);
  const sy = (y) => H - 20 - (y - y0) / (y1 - y0) * (H - 30);
  root.appendChild(svg('polyline', {fill: 'none', stroke: '#2563eb', 'stroke-width': 1.5,
    points: pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}));
  root.appendChild(svg('line', {x1: P, y1: H - 20, x2: W - 8, y2: H - 20, stroke: '#999'}));
  root.appendChild(svg('text', {x: 2, y: 12, 'font-size': 10}, fmt(y1)));
  root.appendChild(svg('text', {x: 2, y: H - 22, 'font-size': 10}, fmt(y0)));
  root.appendChild(svg('text', {x: P, y: H - 6, 'font-size': 10}, `step ${x0}`));
  root.appendChild(svg('text', {x: W - 80, y: H - 6, 'font-size': 10}, `step ${x1}`));
  return root;
}

function histChart(hist) {
  const W = 420; const H = 140;
  const root = svg('svg', {width: W, height: H, id: 'module-histogram'});
  const counts = hist.counts.map(num);
  const top = Math.max(1, ...counts);
  const bw = (W - 8) / Math.max(counts.length, 1);
  counts.forEach((c, i) => {
    const h = (c / top) * (H - 24);
    root.appendChild(svg('rect', {x: 4 + i * bw, y: H - 16 - h, width: Math.max(bw - 1, 1), height: h,
      fill: '#f59e0b'}));
  });
  const edges = hist.edges;
  root.appendChild(svg('text', {x: 4, y: H - 3, 'font-size': 10}, fmt(edges[0])));
  root.appendChild(svg('text', {x: W - 70, y: H - 3, 'font-size': 10}, fmt(edges[edges.length - 1])));
  return root;
}
