// The health heatmap's pieces: cell colours, legend, step axis, anomaly marks, row names.
//
// Non-finite values are shown as what they are: a cell whose tensor held NaN, +Inf or -Inf has
// that colour whatever the statistic shown, each with its own legend entry.

import {CELL_H, SPECIAL, color, el, fmt, num, svg} from './dom.js';

export function scaleOf(values, log) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of values) for (const v of row) {
    const x = num(v);
    if (!Number.isFinite(x)) continue;
    const y = log ? (x > 0 ? Math.log10(x) : NaN) : x;
    if (Number.isNaN(y)) continue;
    if (y < lo) lo = y;
    if (y > hi) hi = y;
  }
  return [lo, hi];
}

export function displayName(name) {
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

export function cellColour(x, flags, bits, [lo, hi], log) {
  // Non-finite values first: a cell whose tensor holds NaN is the NaN colour whatever the
  // statistic, so a count of 1 NaN is never the colour of 0.
  if (!flags) return null; // not recorded: the background
  if (flags & bits.nan) return SPECIAL.nan[0];
  if (x === Infinity || flags & bits.posinf) return SPECIAL.posinf[0];
  if (x === -Infinity || flags & bits.neginf) return SPECIAL.neginf[0];
  if (Number.isNaN(x)) return SPECIAL.novalue[0];
  if (log && x <= 0) return SPECIAL.zero[0];
  const y = log ? Math.log10(x) : x;
  return color(hi > lo ? (y - lo) / (hi - lo) : 0.5);
}

export function drawLegend(node, h, [lo, hi], {log, label}) {
  const unit = log ? 'log10 ' : '';
  const cols = h.steps.length;
  const swatch = (kind, colour, text) => [
    el('span', {class: 'swatch', 'data-kind': kind, style: `background:${colour}`}),
    el('span', {class: 'legend-text', 'data-kind': kind, text}),
  ];
  const rampStops = [0, 0.25, 0.5, 0.75, 1].map((t) => color(t)).join(',');
  const repeated = h.names.some((n) => /#\d+$/.test(n));
  node.replaceChildren(
    el('div', {text: `${label} of ${h.role}: ${h.names.length} names, steps ${h.steps[0]}–` +
      `${h.last_step} (${cols} columns). Source: ${h.source}.`}),
    el('div', {}, [
      el('span', {text: `colour: ${unit}${fmt(lo)}`}),
      el('span', {class: 'ramp', 'data-kind': 'ramp',
        style: `background:linear-gradient(to right,${rampStops})`}),
      el('span', {text: fmt(hi)}),
      ...Object.entries(SPECIAL).flatMap(([kind, [colour, text]]) =>
        (kind === 'zero' && !log) ? [] : swatch(kind, colour, text)),
      el('span', {class: 'swatch', 'data-kind': 'anomaly',
        style: 'background:#fff;border:2px solid #000'}),
      el('span', {class: 'legend-text', 'data-kind': 'anomaly',
        text: 'anomaly (from the list below)'}),
    ]),
    ...(repeated ? [el('div', {text: '“· call N”: a module that runs more than once per step ' +
      '(a shared layer, a loop) has one row per call; call 1 is the first.'})] : []),
  );
}

export function drawAxis(node, h, cellW) {
  const cols = h ? h.steps.length : 0;
  const width = Math.max(cols * cellW, 1);
  node.setAttribute('width', String(width));
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
  node.replaceChildren(
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

export function moduleOf(a) {
  // An anomaly's module: an empty name with a module type is the root module (the model).
  return a.module || (a.module_type ? '(root)' : '?');
}

export function columnOf(h, step) {
  // the column whose steps hold `step` (columns start at h.steps[c])
  let c = h.steps.findIndex((s) => s > step) - 1;
  if (c < 0) c = h.steps.length && h.steps[h.steps.length - 1] <= step ? h.steps.length - 1 : 0;
  return c;
}

function anomalyRows(h, a) {
  // An anomaly names a module; its rows are the module's own and, in parameter roles, its
  // parameters' (`fc1` -> `fc1.weight`), every call of either.
  const rows = [];
  if (!a.module && !a.module_type) return rows; // where it happened is unknown
  h.names.forEach((name, r) => {
    const base = name.replace(/#\d+$/, '');
    const param = a.module && base.startsWith(`${a.module}.`) &&
      !base.slice(a.module.length + 1).includes('.');
    if (base === a.module || param) rows.push(r);
  });
  return rows;
}

export function markAnomalies(node, h, cellW, anomalies) {
  const marks = [];
  for (const a of anomalies) {
    if (a.step < h.steps[0] || a.step > h.last_step) continue;
    const c = columnOf(h, a.step);
    for (const r of anomalyRows(h, a)) {
      marks.push(el('div', {class: 'anomaly-mark', 'data-row': String(r), 'data-col': String(c),
        'data-step': String(a.step), 'data-name': h.names[r],
        title: `step ${a.step}: ${a.kind} in ${moduleOf(a)} (${a.phase}, ${a.role})`,
        style: `left:${c * cellW - 2}px;top:${r * CELL_H - 2}px;` +
          `width:${cellW + 4}px;height:${CELL_H + 3}px`}));
    }
  }
  node.replaceChildren(...marks);
}
