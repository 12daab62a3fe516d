// The vizdebug dashboard: a plain ES module TensorBoard loads in an iframe (no build step).
//
// Every piece of data (run, module and layer names, messages) is user-controlled text: it only
// ever reaches the page through textContent, SVG text nodes or canvas fillText, never innerHTML.

import {histCaption, histChart, histTotal, lineChart, nonFiniteSteps} from './charts.js';
import {AXIS_H, CELL_H, LABEL_W, SPECIAL, el, fmt, getJson, num, svg} from './dom.js';
import {
  cellColour, columnOf, displayName, drawAxis, drawLegend, markAnomalies, moduleOf, scaleOf,
} from './heatmap.js';

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
  drawAxis(ui.axis, h, cellW);
  if (!h || !names.length) {
    ui.legend.textContent = h ? `No ${h.role} statistics in this run.` : ui.legend.textContent;
    return;
  }
  const range = scaleOf(h.values, state.log);
  h.values.forEach((row, r) => row.forEach((v, c) => {
    const fill = cellColour(num(v), h.flags ? h.flags[r][c] : 1, h.flag_bits || {}, range,
      state.log);
    if (fill === null) return;
    ctx.fillStyle = fill;
    ctx.fillRect(c * cellW, r * CELL_H, cellW, CELL_H - 1);
  }));
  markAnomalies(ui.marks, h, cellW, state.anomalies);
  if (state.mark) {
    const r = names.indexOf(state.mark.module);
    const c = columnOf(h, state.mark.step);
    ctx.strokeStyle = '#dc2626';
    ctx.lineWidth = 2;
    ctx.strokeRect(c * cellW - 1, 0, cellW + 2, canvas.height);
    if (r >= 0) ctx.strokeRect(0, r * CELL_H, canvas.width, CELL_H);
  }
  drawLegend(ui.legend, h, range, {log: state.log, label: state.stats[h.stat] || h.stat});
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
    onclick: () => focusAnomaly(a)}, [a.step, a.rank, moduleOf(a), a.phase, a.role, a.kind,
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

