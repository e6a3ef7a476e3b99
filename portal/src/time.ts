// Times are shown in the browser's zone; the UTC instant is on hover (title) and in datetime.
import { h } from "./dom";

const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function utcText(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function localText(ms: number): string {
  return fmt.format(new Date(ms));
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.round((now - ms) / 1000);
  if (s < 0) return "in the future";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function timeEl(ms: number | null | undefined, relative = false): HTMLElement {
  if (ms === null || ms === undefined) return h("span", { class: "muted" }, "never");
  const iso = new Date(ms).toISOString();
  return h("time", { datetime: iso, title: utcText(ms) }, relative ? `${ago(ms)}` : localText(ms));
}
