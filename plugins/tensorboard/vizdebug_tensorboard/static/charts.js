// The module panel's charts: a statistic over the steps and the latest histogram.

import {SPECIAL, fmt, num, svg} from './dom.js';

export function nonFiniteSteps(m) {
  // steps where the tensor held NaN or Inf: marked on the chart, whose line skips them
  const at = new Set();
  for (const k of ['nan', 'posinf', 'neginf']) {
    (m.series[k] || []).forEach((n, i) => { if (num(n) > 0) at.add(m.steps[i]); });
  }
  return at;
}

export function histTotal(hist) {
  return hist.counts.map(num).filter(Number.isFinite).reduce((a, b) => a + b, 0);
}

export function histCaption(hist) {
  if (!hist) return 'no histogram';
  if (histTotal(hist) === 0) return `histogram at step ${hist.step}: no finite values`;
  return `histogram at step ${hist.step} (finite values)`;
}

export function lineChart(xs, ys, nonFinite) {
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

export function histChart(hist) {
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
