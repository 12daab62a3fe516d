// DOM, SVG, JSON and number helpers and the colours the dashboard's modules share.
//
// Every piece of data (run, module and layer names, messages) is user-controlled text: it only
// ever reaches the page through textContent, attributes, SVG text nodes or canvas fillText,
// never innerHTML.

export const BASE = new URL('../', import.meta.url); // .../data/plugin/vizdebug/
export const SVG = 'http://www.w3.org/2000/svg';
export const CELL_H = 14;
export const LABEL_W = 260;
export const AXIS_H = 22;
// Cells that are not a colour of the ramp: each has its own legend entry.
export const SPECIAL = {
  nan: ['#ff00d4', 'NaN in the tensor'],
  posinf: ['#dc2626', '+Inf in the tensor'],
  neginf: ['#f97316', '-Inf in the tensor'],
  zero: ['#ffffff', '0 (or below, on the log scale)'],
  novalue: ['#9e9e9e', 'no value'],
  missing: ['#e0e0e0', 'not recorded'],
};
export function el(tag, attrs, children) {
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

export function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export async function getJson(route, params) {
  const url = new URL(route, BASE);
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, String(v));
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

export function num(v) {
  if (v === null || v === undefined) return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return v;
}

export function fmt(v) {
  const x = num(v);
  if (Number.isNaN(x)) return '-'; // missing or undefined (no finite values): a dash, never 0
  if (!Number.isFinite(x)) return x > 0 ? '+Inf' : '-Inf';
  if (x !== 0 && (Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3)) return x.toExponential(3);
  return String(Math.round(x * 1e4) / 1e4);
}

export function color(t) {
  // A viridis-like ramp from dark blue (low) to yellow (high).
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
