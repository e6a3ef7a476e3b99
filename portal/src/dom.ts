// A tiny element builder: enough for this app without a UI framework.
type Child = Node | string | number | null | undefined | false | Child[];
type AttrValue = string | number | boolean | null | undefined | EventListener;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Record<string, AttrValue> | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "hidden" || k === "disabled" || k === "checked" || k === "novalidate")
      el.toggleAttribute(k, v === true || v === "");
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** A status/health word as a badge; the word itself carries the meaning, colour only repeats it. */
export function badge(text: string, tone?: string): HTMLElement {
  return h("span", { class: `badge badge-${tone ?? text.replace(/[^a-z_]/gi, "").toLowerCase()}` }, text);
}

export function loading(what: string): HTMLElement {
  return h("p", { class: "state loading", role: "status" }, `Loading ${what}…`);
}

export function empty(text: string): HTMLElement {
  return h("p", { class: "state empty" }, text);
}

export function errorBox(what: string, e: unknown, retry?: () => void): HTMLElement {
  const msg = e instanceof Error ? e.message : String(e);
  return h(
    "div",
    { class: "state error", role: "alert" },
    h("p", null, `Could not load ${what}: ${msg}`),
    retry ? h("button", { type: "button", onclick: () => retry() }, "Retry") : null,
  );
}

/** A horizontally scrollable table region that keyboard users can scroll too. */
export function tableWrap(label: string, table: HTMLTableElement): HTMLElement {
  // "(table)" keeps the region's name distinct from the section heading it usually repeats.
  return h("div", { class: "table-wrap", role: "region", "aria-label": `${label} (table)`, tabindex: 0 }, table);
}

export function link(href: string, text: Child, attrs?: Record<string, AttrValue>): HTMLAnchorElement {
  return h("a", { href, "data-link": "", ...attrs }, text);
}

// Formatters are built once: toLocaleString builds a new one per call, which shows on a 1,000-row table.
const intFmt = new Intl.NumberFormat();
const fracFmt = new Map<number, Intl.NumberFormat>();

export function fmtNumber(v: unknown, digits = 1): string {
  if (typeof v !== "number") return v === null || v === undefined ? "—" : String(v);
  if (Number.isInteger(v)) return intFmt.format(v);
  let f = fracFmt.get(digits);
  if (!f) fracFmt.set(digits, (f = new Intl.NumberFormat(undefined, { maximumFractionDigits: digits })));
  return f.format(v);
}

export function fmtBytes(v: unknown): string {
  if (typeof v !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let x = v;
  let i = 0;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toLocaleString(undefined, { maximumFractionDigits: i ? 1 : 0 })} ${units[i]}`;
}
