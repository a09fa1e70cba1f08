// Small SVG line charts, written by hand so the dashboard ships without a chart library or a CDN.
// One chart: a few series over time, optional horizontal reference lines, a legend.

import { dateTime, number, t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };
export const COLORS = ["#2f6fdb", "#e07b00", "#2a9d4b", "#c23b3b", "#7b4fc9", "#6b6b6b"];

function svg(name, attrs = {}, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  // A nearly flat series (a grid factor, a steady PUE) would otherwise fill the chart with noise.
  const minSpan = Math.max(Math.abs(lo), Math.abs(hi)) * 0.1 || 1;
  if (hi - lo < minSpan) {
    const middle = (lo + hi) / 2;
    [lo, hi] = [middle - minSpan / 2, middle + minSpan / 2];
  }
  const pad = (hi - lo) * 0.08;
  lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad; // energies never go below zero: keep 0 as the floor
  return [lo, hi + pad];
}

/** The path of one series; a null value breaks the line (a gap is shown as a gap). */
function pathOf(points, x, y) {
  let d = "";
  let pen = "M";
  for (const { t: time, v } of points) {
    if (v === null || v === undefined) {
      pen = "M";
      continue;
    }
    d += `${pen}${x(time).toFixed(1)},${y(v).toFixed(1)}`;
    pen = "L";
  }
  return d;
}

/**
 * A chart element.
 * options: { series: [{label, color, points: [{t: ms, v: number|null}]}], refLines: [{value, label, color}],
 *            timeZone, digits, name }
 * `name` becomes the chart's data-chart attribute (for tests and styling).
 */
export function lineChart({ series, refLines = [], timeZone, digits = 2, name = "" }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.chart = name;
  const values = series.flatMap((s) => s.points.map((p) => p.v)).filter((v) => v !== null && v !== undefined);
  const times = series.flatMap((s) => s.points.map((p) => p.t));
  if (values.length === 0) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = t("site.nodata");
    figure.append(empty);
    return figure;
  }
  const [y0, y1] = extent([...values, ...refLines.map((r) => r.value)]);
  const t0 = Math.min(...times);
  const t1 = Math.max(...times) === t0 ? t0 + 60_000 : Math.max(...times);
  const x = (time) => PAD.left + ((time - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - ((v - y0) / (y1 - y0)) * (HEIGHT - PAD.top - PAD.bottom);

  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", preserveAspectRatio: "none" });
  for (let i = 0; i <= 4; i += 1) {
    const v = y0 + ((y1 - y0) * i) / 4;
    root.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, number(v, digits)));
  }
  for (const [time, anchor] of [
    [t0, "start"],
    [(t0 + t1) / 2, "middle"],
    [t1, "end"],
  ]) {
    const label = dateTime(time, timeZone, t1 - t0 > 86_400_000);
    root.append(svg("text", { x: x(time), y: HEIGHT - 8, "text-anchor": anchor, class: "axis" }, label));
  }
  for (const ref of refLines) {
    root.append(
      svg("line", {
        x1: PAD.left,
        x2: WIDTH - PAD.right,
        y1: y(ref.value),
        y2: y(ref.value),
        class: "ref",
        stroke: ref.color,
      }),
    );
    root.append(svg("text", { x: WIDTH - PAD.right - 4, y: y(ref.value) - 4, "text-anchor": "end", class: "ref-label", fill: ref.color }, ref.label));
  }
  for (const s of series) {
    const drawn = s.points.filter((p) => p.v !== null && p.v !== undefined);
    if (drawn.length === 1) {
      root.append(svg("circle", { cx: x(drawn[0].t), cy: y(drawn[0].v), r: 3, fill: s.color }));
    } else if (drawn.length > 1) {
      root.append(svg("path", { d: pathOf(s.points, x, y), class: "line", stroke: s.color }));
    }
  }
  figure.append(root);

  const legend = document.createElement("figcaption");
  legend.className = "legend";
  for (const item of [...series, ...refLines]) {
    const entry = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = item.color;
    entry.append(swatch, item.label);
    legend.append(entry);
  }
  figure.append(legend);
  return figure;
}
