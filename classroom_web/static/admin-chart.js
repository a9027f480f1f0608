// @ts-check
/* Small SVG charts drawn here (no chart library, nothing fetched): grouped bars (开课率 and
 * 到课率 per group, 0..100 %) and stacked bars (minutes per tier). Each bar is a <rect
 * data-bar data-group data-series> with a <title> giving its value; labels are text nodes.
 */

const SVG = "http://www.w3.org/2000/svg";

/**
 * @typedef {{name: string, key: string, color: string}} Series
 * @typedef {{label: string, values: Record<string, number>}} Group
 */

/**
 * An SVG element with attributes.
 * @param {string} tag @param {Record<string, string | number>} [attrs] @param {string} [text]
 * @returns {SVGElement}
 */
function svg(tag, attrs, text) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG, tag));
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, String(v)));
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A label cut to `n` characters. @param {string} text @param {number} n */
function cut(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

/**
 * A "nice" axis top for `max` (1, 2 or 5 times a power of ten).
 * @param {number} max @returns {number}
 */
export function niceMax(max) {
  if (!(max > 0)) {
    return 1;
  }
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= max) || 10 * p;
}

/**
 * Bars per group: side by side ("grouped") or on top of each other ("stacked").
 * @param {{title: string, groups: Group[], series: Series[], stacked?: boolean,
 *          max?: number, format: (v: number) => string, chart: string}} spec
 *   max: the axis top (default: a nice number over the largest bar or stack)
 * @returns {SVGElement}
 */
export function barChart(spec) {
  const { groups, series } = spec;
  const left = 48;
  const top = 28;
  const plotH = 180;
  const bottom = 44;
  const slot = Math.max(40, Math.min(110, 640 / Math.max(1, groups.length)));
  const width = left + slot * Math.max(1, groups.length) + 16;
  const height = top + plotH + bottom;
  const totals = groups.map((g) => spec.stacked
    ? series.reduce((sum, s) => sum + (g.values[s.key] || 0), 0)
    : Math.max(0, ...series.map((s) => g.values[s.key] || 0)));
  const max = spec.max || niceMax(Math.max(0, ...totals));
  const y = (/** @type {number} */ v) => top + plotH - (plotH * Math.min(v, max)) / max;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": spec.title, "data-chart": spec.chart, class: "chart" });
  root.appendChild(svg("title", {}, spec.title));
  // axis and grid lines at 0, 1/2 and the top
  [0, 0.5, 1].forEach((f) => {
    const v = max * f;
    root.appendChild(svg("line", { x1: left, x2: width - 8, y1: y(v), y2: y(v), class: "gridline" }));
    root.appendChild(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, spec.format(v)));
  });
  // legend
  let lx = left;
  series.forEach((s) => {
    root.appendChild(svg("rect", { x: lx, y: 6, width: 12, height: 12, fill: s.color }));
    root.appendChild(svg("text", { x: lx + 16, y: 16, class: "legend" }, s.name));
    lx += 24 + s.name.length * 13;
  });
  groups.forEach((g, i) => {
    const x0 = left + slot * i + 6;
    const inner = slot - 12;
    let stackTop = 0;
    series.forEach((s, j) => {
      const v = g.values[s.key] || 0;
      const w = spec.stacked ? inner : inner / series.length;
      const x = spec.stacked ? x0 : x0 + w * j;
      const yTop = spec.stacked ? y(stackTop + v) : y(v);
      const yBase = spec.stacked ? y(stackTop) : y(0);
      const bar = svg("rect", { x, y: yTop, width: Math.max(1, w - 2), height: Math.max(0, yBase - yTop),
        fill: s.color, "data-bar": "", "data-group": g.label, "data-series": s.key, "data-value": v });
      bar.appendChild(svg("title", {}, `${g.label} · ${s.name}: ${spec.format(v)}`));
      root.appendChild(bar);
      stackTop += v;
    });
    root.appendChild(svg("text", { x: x0 + inner / 2, y: top + plotH + 16, "text-anchor": "middle", class: "label" },
      cut(g.label, Math.max(4, Math.floor(slot / 13)))));
  });
  return root;
}
