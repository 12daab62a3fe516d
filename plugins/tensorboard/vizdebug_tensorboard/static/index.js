// The vizdebug dashboard: a plain ES module TensorBoard loads in an iframe (no build step).
//
// Every piece of data (run, module and layer names, messages) is user-controlled text: it only
// ever reaches the page through textContent, SVG text nodes or canvas fillText, never innerHTML.

const BASE = new URL('../', import.meta.url); // .../data/plugin/vizdebug/
const SVG = 'http://www.w3.org/2000/svg';
const CELL_H = 14;
const LABEL_W = 260;
const AXIS_H = 22;
// Cells that are not a colour of the ramp: each has its own legend entry.
const SPECIAL = {
  nan: ['#ff00d4', 'NaN in the tensor'],
  posinf: ['#dc2626', '+Inf in the tensor'],
  neginf: ['#f97316', '-Inf in the tensor'],
  zero: ['#ffffff', '0 (or below, on the log scale)'],
  novalue: ['#9e9e9e', 'no value'],
  missing: ['#e0e0e0', 'not recorded'],
};
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
  if (Number.isNaN(x)) return '-'; // missing or undefined (no finite values): a dash, never 0
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
  .axis-title { height: ${AXIS_H}px; line-height: ${AXIS_H}px; width: ${LABEL_W}px; font-size: 11px;
    color: #757575; text-align: right; padding-right: 4px; }
  .plot { position: relative; }
  .anomaly-mark { position: absolute; box-sizing: border-box; border: 2px solid #000;
    outline: 1px solid #fff; pointer-events: none; }
  #legend .swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #999;
    vertical-align: middle; margin: 0 3px 0 10px; }
  #legend .ramp { display: inline-block; width: 80px; height: 12px; border: 1px solid #999;
    vertical-align: middle; margin: 0 3px; }
  #step-axis text { font-size: 10px; fill: #424242; }
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
  ui.marks = el('div', {id: 'anomaly-marks'});
  ui.axis = svg('svg', {id: 'step-axis', height: AXIS_H, width: 1});
  ui.plot = el('div', {class: 'plot'}, [ui.canvas, ui.marks]);
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
        el('div', {class: 'heat'}, [
          el('div', {}, [ui.labels, el('div', {class: 'axis-title', text: 'step →'})]),
          el('div', {}, [ui.plot, ui.axis]),
        ]),
        ui.hover, ui.legend,
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
  await selectRun(keep ? keep.name : mostRecent(state.runs).name);
}

function mostRecent(runs) {
  // The tab opens on the run written last (the one just trained, or still training); among
  // runs written at the same time, the one with anomalies.
  const key = (r) => [r.last_wall_time || 0, r.anomalies > 0 ? 1 : 0];
  return runs.reduce((best, r) => {
    const [a, b] = [key(r), key(best)];
    return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]) ? r : best;
  });
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

function displayName(name) {
  // A row is a module's (or parameter's) name, `name#k` for its (k+1)-th call within a step.
  // The root module's name is empty.
  const m = /^(.*)#(\d+)$/.exec(name);
  const base = m ? m[1] : name;
  const shown = base === '' ? '(root)' : base;
  if (!m) return [shown, base === '' ? 'the root module (the model itself)' : name];
  const k = Number(m[2]) + 1;
  return [`${shown} · call ${k}`,
    `${shown}, call ${k} within a step: the module ran more than once per step (${name})`];
}

function drawHeatmap() {
  const h = state.heatmap;
  const names = h ? h.names : [];
  ui.labels.replaceChildren(...names.map((name, i) => {
    const [shown, title] = displayName(name);
    const div = el('div', {title, text: shown, 'data-row': String(i), 'data-name': name,
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
  ctx.fillStyle = SPECIAL.missing[0];
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ui.marks.replaceChildren();
  drawAxis(h, cellW);
  if (!h || !names.length) {
    ui.legend.textContent = h ? `No ${h.role} statistics in this run.` : ui.legend.textContent;
    return;
  }
  const [lo, hi] = scaleOf(h.values);
  h.values.forEach((row, r) => row.forEach((v, c) => {
    const fill = cellColour(num(v), h.flags ? h.flags[r][c] : 1, h.flag_bits || {}, lo, hi);
    if (fill === null) return;
    ctx.fillStyle = fill;
    ctx.fillRect(c * cellW, r * CELL_H, cellW, CELL_H - 1);
  }));
  markAnomalies(h, cellW);
  if (state.mark) {
    const r = names.indexOf(state.mark.module);
    const c = columnOf(h, state.mark.step);
    ctx.strokeStyle = '#dc2626';
    ctx.lineWidth = 2;
    ctx.strokeRect(c * cellW - 1, 0, cellW + 2, canvas.height);
    if (r >= 0) ctx.strokeRect(0, r * CELL_H, canvas.width, CELL_H);
  }
  drawLegend(h, lo, hi, cols);
}

function cellColour(x, flags, bits, lo, hi) {
  // Non-finite values first: a cell whose tensor holds NaN is the NaN colour whatever the
  // statistic, so a count of 1 NaN is never the colour of 0.
  if (!flags) return null; // not recorded: the background
  if (flags & bits.nan) return SPECIAL.nan[0];
  if (x === Infinity || flags & bits.posinf) return SPECIAL.posinf[0];
  if (x === -Infinity || flags & bits.neginf) return SPECIAL.neginf[0];
  if (Number.isNaN(x)) return SPECIAL.novalue[0];
  if (state.log && x <= 0) return SPECIAL.zero[0];
  const y = state.log ? Math.log10(x) : x;
  return color(hi > lo ? (y - lo) / (hi - lo) : 0.5);
}

function drawLegend(h, lo, hi, cols) {
  const unit = state.log ? 'log10 ' : '';
  const label = state.stats[h.stat] || h.stat;
  const swatch = (kind, colour, text) => [
    el('span', {class: 'swatch', 'data-kind': kind, style: `background:${colour}`}),
    el('span', {class: 'legend-text', 'data-kind': kind, text}),
  ];
  const rampStops = [0, 0.25, 0.5, 0.75, 1].map((t) => color(t)).join(',');
  const repeated = h.names.some((n) => /#\d+$/.test(n));
  ui.legend.replaceChildren(
    el('div', {text: `${label} of ${h.role}: ${h.names.length} names, steps ${h.steps[0]}–` +
      `${h.last_step} (${cols} columns). Source: ${h.source}.`}),
    el('div', {}, [
      el('span', {text: `colour: ${unit}${fmt(lo)}`}),
      el('span', {class: 'ramp', 'data-kind': 'ramp',
        style: `background:linear-gradient(to right,${rampStops})`}),
      el('span', {text: fmt(hi)}),
      ...Object.entries(SPECIAL).flatMap(([kind, [colour, text]]) =>
        (kind === 'zero' && !state.log) ? [] : swatch(kind, colour, text)),
      el('span', {class: 'swatch', 'data-kind': 'anomaly',
        style: 'background:#fff;border:2px solid #000'}),
      el('span', {class: 'legend-text', 'data-kind': 'anomaly', text: 'anomaly (from the list below)'}),
    ]),
    ...(repeated ? [el('div', {text: '“· call N”: a module that runs more than once per step ' +
      '(a shared layer, a loop) has one row per call; call 1 is the first.'})] : []),
  );
}

function drawAxis(h, cellW) {
  const cols = h ? h.steps.length : 0;
  const width = Math.max(cols * cellW, 1);
  ui.axis.setAttribute('width', String(width));
  const ticks = [];
  if (cols) {
    // a tick about every 70 px, always the first and the last column
    const every = Math.max(1, Math.ceil(70 / cellW));
    for (let c = 0; c < cols; c += every) ticks.push(c);
    if (ticks[ticks.length - 1] !== cols - 1) {
      if ((cols - 1 - ticks[ticks.length - 1]) * cellW < 40 && ticks.length > 1) ticks.pop();
      ticks.push(cols - 1);
    }
  }
  ui.axis.replaceChildren(
    svg('line', {x1: 0, y1: 1, x2: width, y2: 1, stroke: '#9e9e9e'}),
    ...ticks.flatMap((c) => {
      const x = c * cellW + cellW / 2;
      const anchor = c === 0 ? 'start' : (c === cols - 1 ? 'end' : 'middle');
      return [svg('line', {x1: x, y1: 1, x2: x, y2: 5, stroke: '#9e9e9e'}),
        svg('text', {class: 'tick', x: c === 0 ? 0 : (c === cols - 1 ? width : x), y: 16,
          'text-anchor': anchor, 'data-col': c}, String(h.steps[c]))];
    }),
  );
}

function columnOf(h, step) {
  // the column whose steps hold `step` (columns start at h.steps[c])
  let c = h.steps.findIndex((s) => s > step) - 1;
  if (c < 0) c = h.steps.length && h.steps[h.steps.length - 1] <= step ? h.steps.length - 1 : 0;
  return c;
}

function anomalyRows(h, a) {
  // An anomaly names a module; its rows are the module's own and, in parameter roles, its
  // parameters' (`fc1` -> `fc1.weight`), every call of either.
  const rows = [];
  h.names.forEach((name, r) => {
    const base = name.replace(/#\d+$/, '');
    if (base === a.module || (a.module && base.startsWith(`${a.module}.`) && !base.slice(a.module.length + 1).includes('.'))) {
      rows.push(r);
    }
  });
  return rows;
}

function markAnomalies(h, cellW) {
  const marks = [];
  for (const a of state.anomalies) {
    if (a.step < h.steps[0] || a.step > h.last_step) continue;
    const c = columnOf(h, a.step);
    for (const r of anomalyRows(h, a)) {
      marks.push(el('div', {class: 'anomaly-mark', 'data-row': String(r), 'data-col': String(c),
        'data-step': String(a.step), 'data-name': h.names[r],
        title: `step ${a.step}: ${a.kind} in ${a.module || '?'} (${a.phase}, ${a.role})`,
        style: `left:${c * cellW - 2}px;top:${r * CELL_H - 2}px;` +
          `width:${cellW + 4}px;height:${CELL_H + 3}px`}));
    }
  }
  ui.marks.replaceChildren(...marks);
}

function cellAt(event) {
  const h = state.heatmap;
  if (!h) return null;
  const rect = ui.canvas.getBoundingClientRect();
  const cellW = Number(ui.canvas.dataset.cellW || 1);
  const c = Math.floor((event.clientX - rect.left) / cellW);
  const r = Math.floor((event.clientY - rect.top) / CELL_H);
  if (r < 0 || r >= h.names.length || c < 0 || c >= h.steps.length) return null;
  return {r, c, name: h.names[r], step: h.steps[c], value: h.values[r][c],
    flags: h.flags ? h.flags[r][c] : 1};
}

function onCanvasMove(event) {
  const cell = cellAt(event);
  if (!cell) {
    ui.hover.textContent = ' ';
    return;
  }
  const bits = state.heatmap.flag_bits || {};
  const notes = [['nan', 'NaN'], ['posinf', '+Inf'], ['neginf', '-Inf'],
    ['no_finite', 'no finite value']].filter(([k]) => cell.flags & bits[k]).map(([, t]) => t);
  const what = cell.flags ? fmt(cell.value) : 'not recorded';
  ui.hover.textContent = `${displayName(cell.name)[0]} · step ${cell.step} · ${what}` +
    (notes.length ? ` (${notes.join(', ')})` : '');
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
  if (state.heatmap) drawHeatmap(); // the marks
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
  for (const div of ui.labels.children) div.classList.toggle('sel', div.dataset.name === name);
  let m;
  try {
    m = await getJson('module', {run: state.run, rank: state.rank, name, role});
  } catch (e) {
    ui.panel.replaceChildren(el('h3', {text: name}), el('p', {class: 'err', text: e.message}));
    return;
  }
  const stat = state.stat in m.series ? state.stat : 'l2';
  const values = m.series[stat] || [];
  const last = values.length - 1;
  const counts = ['nan', 'posinf', 'neginf'].map((k) => num((m.series[k] || [])[last]));
  const [nanN, posN, negN] = counts.map((n) => (Number.isFinite(n) ? n : 0));
  let latest = fmt(values[last]);
  if (last >= 0 && Number.isNaN(num(values[last]))) {
    const bad = [[nanN, 'NaN'], [posN, '+Inf'], [negN, '-Inf']].filter(([n]) => n > 0)
      .map(([n, t]) => `${n} ${t}`);
    latest += bad.length ? ` (no finite values: ${bad.join(', ')})` : ' (no value recorded)';
  }
  ui.panel.replaceChildren(
    el('h3', {text: m.name, title: displayName(m.name)[1]}),
    el('div', {}, m.roles.map((r) => el('button', {class: r === role ? 'role on' : 'role', text: r,
      onclick: () => loadModule(name, r)}))),
    el('p', {class: 'muted', text: `${m.role} · ${state.stats[stat] || stat} over ${m.steps.length} recorded steps; ` +
      `latest ${latest}`, id: 'module-latest'}),
    lineChart(m.steps, values, nonFiniteSteps(m)),
    el('p', {class: 'muted', text: histCaption(m.histogram)}),
    m.histogram && histTotal(m.histogram) > 0 ? histChart(m.histogram) : el('span'),
  );
}

function nonFiniteSteps(m) {
  // steps where the tensor held NaN or Inf: marked on the chart, whose line skips them
  const at = new Set();
  for (const k of ['nan', 'posinf', 'neginf']) {
    (m.series[k] || []).forEach((n, i) => { if (num(n) > 0) at.add(m.steps[i]); });
  }
  return at;
}

function histTotal(hist) {
  return hist.counts.map(num).filter(Number.isFinite).reduce((a, b) => a + b, 0);
}

function histCaption(hist) {
  if (!hist) return 'no histogram';
  if (histTotal(hist) === 0) return `histogram at step ${hist.step}: no finite values`;
  return `histogram at step ${hist.step} (finite values)`;
}

function lineChart(xs, ys, nonFinite) {
  // The finite values as a line; steps where the tensor held NaN or Inf as bars of the NaN
  // colour (the line skips them: their statistics are undefined, never 0).
  const W = 420; const H = 160; const P = 36;
  const root = svg('svg', {width: W, height: H, id: 'module-series'});
  const pts = xs.map((x, i) => [x, num(ys[i])]).filter(([, y]) => Number.isFinite(y));
  const bad = xs.filter((x) => nonFinite && nonFinite.has(x));
  if (bad.length) {
    root.appendChild(svg('text', {x: W - 150, y: 10, 'font-size': 10, fill: SPECIAL.nan[0]},
      `▮ NaN/Inf at ${bad.length} step${bad.length > 1 ? 's' : ''}`));
  }
  if (!pts.length && !bad.length) {
    root.appendChild(svg('text', {x: P, y: H / 2}, 'no finite values'));
    return root;
  }
  const all = [...pts.map((p) => p[0]), ...bad];
  const x0 = Math.min(...all); const x1 = Math.max(...all);
  const sx = (x) => P + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (W - P - 8);
  for (const x of bad) {
    root.appendChild(svg('rect', {class: 'nonfinite-step', x: sx(x) - 1.5, y: 14, width: 3,
      height: H - 34, fill: SPECIAL.nan[0], opacity: 0.6}));
  }
  root.appendChild(svg('line', {x1: P, y1: H - 20, x2: W - 8, y2: H - 20, stroke: '#999'}));
  root.appendChild(svg('text', {x: P, y: H - 6, 'font-size': 10}, `step ${x0}`));
  root.appendChild(svg('text', {x: W - 80, y: H - 6, 'font-size': 10}, `step ${x1}`));
  if (!pts.length) {
    root.appendChild(svg('text', {x: P + 4, y: H / 2}, 'no finite values'));
    return root;
  }
  let y0 = Math.min(...pts.map((p) => p[1])); let y1 = Math.max(...pts.map((p) => p[1]));
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const sy = (y) => H - 20 - (y - y0) / (y1 - y0) * (H - 30);
  root.appendChild(svg('polyline', {fill: 'none', stroke: '#2563eb', 'stroke-width': 1.5,
    points: pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}));
  root.appendChild(svg('text', {x: 2, y: 12, 'font-size': 10}, fmt(y1)));
  root.appendChild(svg('text', {x: 2, y: H - 22, 'font-size': 10}, fmt(y0)));
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
