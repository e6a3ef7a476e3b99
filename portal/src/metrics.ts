// Metric queries over a chosen time range, shared by the gateway and device pages.
import { get, enc, type MetricSamples, type Sample } from "./api";
import { h } from "./dom";

export const RANGES: { label: string; secs: number }[] = [
  { label: "Last 15 minutes", secs: 900 },
  { label: "Last hour", secs: 3600 },
  { label: "Last 6 hours", secs: 6 * 3600 },
  { label: "Last 24 hours", secs: 86400 },
  { label: "Last 7 days", secs: 7 * 86400 },
];

/** Most samples fetched per chart; newest first so a long range still shows its recent end. */
export const CHART_LIMIT = 5000;

export async function samples(sensor: string, name: string | null, rangeSecs: number, limit = CHART_LIMIT): Promise<{ samples: Sample[]; truncated: boolean }> {
  const from = Date.now() - rangeSecs * 1000;
  const nameQ = name ? `&name=${enc(name)}` : "";
  const r = await get<MetricSamples>(`/v1/sensors/${enc(sensor)}/metrics?from=${from}&order=desc&limit=${limit}${nameQ}`);
  return { samples: r.samples.reverse(), truncated: r.count >= limit };
}

export function rangeSelect(id: string, initial: number, onChange: (secs: number) => void): HTMLElement {
  const sel = h("select", { id, name: "range" }, ...RANGES.map((r) => h("option", { value: String(r.secs), selected: r.secs === initial ? "" : null }, r.label)));
  sel.value = String(initial);
  sel.addEventListener("change", () => onChange(Number(sel.value)));
  return h("div", { class: "field inline" }, h("label", { for: id }, "Time range"), sel);
}

/** Latest sample per (name, label). */
export function latestBy(samples: Sample[]): Map<string, Sample> {
  const m = new Map<string, Sample>();
  for (const s of samples) {
    const k = `${s.name}\u0000${s.label ?? ""}`;
    const cur = m.get(k);
    if (!cur || s.ts >= cur.ts) m.set(k, s);
  }
  return m;
}
