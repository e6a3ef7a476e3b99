// Metric charts on uPlot (small, canvas-based). A chart is an image for assistive technology, so each
// one carries a text summary (latest, min, max) next to it.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Sample } from "./api";
import { h, append, fmtNumber } from "./dom";
import { localText } from "./time";

const COLORS = ["#1f5fbf", "#b3402a", "#2a7d3c", "#7a3fb0", "#8a6d00", "#00707a", "#a0307a", "#444"];

export interface Series {
  label: string;
  points: [number, number | null][];
}

/** Groups samples of one metric by label (mount point, interface...) into series. */
export function seriesByLabel(samples: Sample[]): Series[] {
  const by = new Map<string, [number, number | null][]>();
  for (const s of samples) {
    const key = s.label ?? "";
    let pts = by.get(key);
    if (!pts) by.set(key, (pts = []));
    pts.push([s.ts, typeof s.value === "number" ? s.value : null]);
  }
  return [...by.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([label, points]) => ({ label, points: points.sort((a, b) => a[0] - b[0]) }));
}

/** uPlot's aligned data: one shared x axis (seconds) and one y array per series, null where missing. */
export function align(series: Series[]): uPlot.AlignedData {
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = series.map((s) => {
    const y: (number | null)[] = new Array(xs.length).fill(null);
    for (const [x, v] of s.points) y[index.get(x) ?? 0] = v;
    return y;
  });
  return [xs.map((x) => x / 1000), ...ys];
}

function summary(series: Series[]): string {
  return series
    .map((s) => {
      const vals = s.points.map((p) => p[1]).filter((v): v is number => v !== null);
      const last = s.points[s.points.length - 1];
      if (!vals.length || !last) return `${s.label || "value"}: no data`;
      return `${s.label ? `${s.label}: ` : ""}latest ${fmtNumber(last[1], 2)} at ${localText(last[0])}, min ${fmtNumber(Math.min(...vals), 2)}, max ${fmtNumber(Math.max(...vals), 2)} (${vals.length} samples)`;
    })
    .join("; ");
}

/** A chart card: title, the canvas chart (or an empty state), and its text summary. */
export function chartCard(title: string, samples: Sample[], opts: { unit?: string; truncated?: boolean } = {}): {
  el: HTMLElement;
  destroy(): void;
} {
  const series = seriesByLabel(samples);
  const plotBox = h("div", { class: "plot", role: "img", "aria-label": `${title} chart` });
  const el = h(
    "figure",
    { class: "chart", "data-metric": title },
    h("figcaption", null, title, opts.unit ? h("span", { class: "muted" }, ` (${opts.unit})`) : null),
    plotBox,
  );
  if (samples.length === 0) {
    plotBox.replaceWith(h("p", { class: "state empty" }, "No samples in this range."));
    return { el, destroy() {} };
  }
  append(el, [
    h("p", { class: "chart-summary" }, summary(series)),
    opts.truncated ? h("p", { class: "hint" }, "Showing the most recent samples only; choose a shorter range for all of them.") : null,
    series.length > 1
      ? h("ul", { class: "legend" }, ...series.map((s, i) => h("li", null, h("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }), s.label || "value")))
      : null,
  ]);
  let plot: uPlot | null = null;
  const make = () => {
    const width = Math.max(240, Math.floor(plotBox.clientWidth || el.clientWidth || 320));
    plot?.destroy();
    plot = new uPlot(
      {
        width,
        height: 160,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [{ stroke: "#333" }, { stroke: "#333", size: 56 }],
        series: [{}, ...series.map((s, i) => ({ label: s.label || title, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }))],
      },
      align(series),
      plotBox,
    );
  };
  // Created once the card is in the document, so it knows its width; redrawn when the width changes.
  let lastWidth = 0;
  const ro = new ResizeObserver(() => {
    const w = Math.floor(plotBox.clientWidth);
    if (w > 0 && Math.abs(w - lastWidth) > 8) {
      lastWidth = w;
      make();
    }
  });
  ro.observe(plotBox);
  return {
    el,
    destroy() {
      ro.disconnect();
      plot?.destroy();
    },
  };
}
