// Command forms generated from the registry's parameter schema: a field model per parameter (pure, unit
// tested), the DOM form built from it, and the conversion of what the user typed into typed parameters.
import type { CommandSpec, ItemSpec, Literal, ParamSpec } from "./command-registry.gen";
import { describeFormat, validateParams, allErrors, type ParamError } from "./validate";
import { h } from "./dom";

export type FieldKind = "integer" | "number" | "text" | "select" | "boolean" | "checkboxes" | "list";

export interface Field {
  name: string;
  label: string;
  kind: FieldKind;
  required: boolean;
  /** Literal options for select / checkboxes. */
  options: readonly Literal[];
  min?: number;
  max?: number;
  minLength?: number;
  maxLength?: number;
  defaultValue?: Literal;
  /** Human-readable constraints, shown under the field. */
  hint: string;
  description: string;
  spec: ParamSpec;
}

/** "intervalSecs" -> "Interval secs". */
export function labelFor(name: string): string {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function constraints(p: ItemSpec): string[] {
  const c: string[] = [];
  if (p.min !== undefined && p.max !== undefined) c.push(`${p.min} to ${p.max}`);
  else if (p.min !== undefined) c.push(`at least ${p.min}`);
  else if (p.max !== undefined) c.push(`at most ${p.max}`);
  if (p.minLength !== undefined && p.maxLength !== undefined) c.push(`${p.minLength}-${p.maxLength} characters`);
  else if (p.maxLength !== undefined) c.push(`up to ${p.maxLength} characters`);
  else if (p.minLength !== undefined) c.push(`at least ${p.minLength} characters`);
  if (p.pattern) c.push(describeFormat(p.pattern));
  if (p.minItems !== undefined || p.maxItems !== undefined)
    c.push(`${p.minItems ?? 0}-${p.maxItems ?? "any"} items`);
  if (p.items && p.type === "array" && !p.items.enum) {
    const inner = constraints(p.items);
    c.push(`one ${p.items.type} per line${inner.length ? ` (${inner.join(", ")})` : ""}`);
  }
  return c;
}

export function fieldFor(p: ParamSpec): Field {
  let kind: FieldKind;
  let options: readonly Literal[] = [];
  if (p.enum && p.enum.length > 0) {
    kind = "select";
    options = p.enum;
  } else if (p.type === "array" && p.items?.enum && p.items.enum.length > 0) {
    kind = "checkboxes";
    options = p.items.enum;
  } else if (p.type === "array") {
    kind = "list";
  } else if (p.type === "integer" || p.type === "number" || p.type === "boolean") {
    kind = p.type;
  } else {
    kind = "text";
  }
  const hint = [p.required ? "required" : "optional", ...constraints(p)];
  if (p.default !== undefined) hint.push(`default ${String(p.default)}`);
  return {
    name: p.name,
    label: labelFor(p.name),
    kind,
    required: p.required,
    options,
    min: p.min,
    max: p.max,
    minLength: p.minLength,
    maxLength: p.maxLength,
    defaultValue: p.default,
    hint: hint.join("; "),
    description: p.description ?? "",
    spec: p,
  };
}

export function fieldsFor(spec: CommandSpec): Field[] {
  return spec.params.map(fieldFor);
}

/** What a form control holds: text, the checked options, or a tri-state boolean choice. */
export type RawValue = string | string[];

/** Turns one typed-in scalar into the JSON value the API takes; text that is not a number stays text so
 * validation reports it as the wrong type, with the registry's own message. */
export function parseScalar(t: ItemSpec["type"], raw: string): unknown {
  const s = raw.trim();
  if (t === "integer" || t === "number") {
    if (s === "") return undefined;
    const n = Number(s);
    return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s) && Number.isFinite(n) ? n : raw;
  }
  if (t === "boolean") {
    if (s === "") return undefined;
    return s === "true" ? true : s === "false" ? false : raw;
  }
  return raw === "" ? undefined : raw;
}

function optionValue(options: readonly Literal[], raw: string): Literal | undefined {
  return options.find((o) => String(o) === raw);
}

/** Builds the params object from raw form values: empty optional fields are left out (the registry
 * applies defaults), everything else is typed by the schema. */
export function collectParams(spec: CommandSpec, raw: Record<string, RawValue | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fieldsFor(spec)) {
    const r = raw[f.name];
    if (r === undefined) continue;
    let v: unknown;
    switch (f.kind) {
      case "select":
        v = typeof r === "string" && r !== "" ? (optionValue(f.options, r) ?? r) : undefined;
        break;
      case "checkboxes": {
        const picked = Array.isArray(r) ? r : [];
        v = picked.length ? picked.map((x) => optionValue(f.options, x) ?? x) : undefined;
        break;
      }
      case "list": {
        const text = Array.isArray(r) ? r.join("\n") : r;
        const lines = text.split(/\n|,/).map((x) => x.trim()).filter((x) => x !== "");
        const itemType = f.spec.items?.type ?? "string";
        v = lines.length ? lines.map((x) => parseScalar(itemType, x) ?? x) : undefined;
        break;
      }
      default:
        v = parseScalar(f.spec.type, Array.isArray(r) ? (r[0] ?? "") : r);
    }
    if (v !== undefined) out[f.name] = v;
  }
  return out;
}

export interface BuiltForm {
  form: HTMLFormElement;
  /** Reads the controls, shows every field error, and returns validated params (defaults applied) or null. */
  read(): Record<string, unknown> | null;
  showServerError(e: { field?: string; message: string }): void;
}

/** The DOM form for a command. `idPrefix` keeps ids unique when several forms share a page. */
export function buildForm(spec: CommandSpec, idPrefix: string, submitLabel: string): BuiltForm {
  const fields = fieldsFor(spec);
  const errorEls = new Map<string, HTMLElement>();
  const controls = new Map<string, HTMLElement>();
  const formError = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h("form", { class: "command-form", novalidate: true, "aria-describedby": `${idPrefix}-desc` });
  form.append(h("p", { id: `${idPrefix}-desc`, class: "muted" }, spec.description));
  if (fields.length === 0) form.append(h("p", { class: "muted" }, "This command takes no parameters."));
  for (const f of fields) {
    const id = `${idPrefix}-${f.name}`;
    const hintId = `${id}-hint`;
    const errId = `${id}-err`;
    const describedBy = `${hintId} ${errId}`;
    const err = h("p", { id: errId, class: "field-error", hidden: true });
    errorEls.set(f.name, err);
    const hint = h("p", { id: hintId, class: "hint" }, [f.description, f.description ? " — " : "", f.hint].join(""));
    let control: HTMLElement;
    let wrap: HTMLElement;
    const common = { id, name: f.name, "aria-describedby": describedBy, "aria-required": f.required ? "true" : null };
    switch (f.kind) {
      case "integer":
      case "number":
        control = h("input", {
          ...common,
          type: "number",
          inputmode: f.kind === "integer" ? "numeric" : "decimal",
          step: f.kind === "integer" ? "1" : "any",
          min: f.min,
          max: f.max,
          placeholder: f.defaultValue !== undefined ? String(f.defaultValue) : null,
        });
        wrap = h("div", { class: "field" }, h("label", { for: id }, f.label), control, hint, err);
        break;
      case "select":
      case "boolean": {
        const opts = f.kind === "boolean" ? ["true", "false"] : f.options.map(String);
        const first = f.required ? "Choose…" : f.defaultValue !== undefined ? `(default: ${String(f.defaultValue)})` : "(not set)";
        control = h("select", common, h("option", { value: "" }, first), ...opts.map((o) => h("option", { value: o }, o)));
        wrap = h("div", { class: "field" }, h("label", { for: id }, f.label), control, hint, err);
        break;
      }
      case "checkboxes": {
        const boxes = f.options.map((o, i) =>
          h("label", { class: "check" }, h("input", { type: "checkbox", name: f.name, value: String(o), id: `${id}-${i}` }), ` ${String(o)}`),
        );
        control = h("fieldset", { id, "aria-describedby": describedBy }, h("legend", null, f.label), ...boxes, hint, err);
        wrap = h("div", { class: "field" }, control);
        break;
      }
      case "list":
        control = h("textarea", { ...common, rows: 3 });
        wrap = h("div", { class: "field" }, h("label", { for: id }, f.label), control, hint, err);
        break;
      default:
        control = h("input", { ...common, type: "text", maxlength: f.maxLength, autocomplete: "off", spellcheck: "false" });
        wrap = h("div", { class: "field" }, h("label", { for: id }, f.label), control, hint, err);
    }
    controls.set(f.name, control);
    form.append(wrap);
  }
  form.append(formError, h("div", { class: "actions" }, h("button", { type: "submit", class: spec.safety.destructive ? "danger" : "primary" }, submitLabel)));

  const rawValues = (): Record<string, RawValue | undefined> => {
    const raw: Record<string, RawValue | undefined> = {};
    for (const f of fields) {
      const c = controls.get(f.name);
      if (!c) continue;
      if (f.kind === "checkboxes") {
        raw[f.name] = [...c.querySelectorAll<HTMLInputElement>("input[type=checkbox]")].filter((b) => b.checked).map((b) => b.value);
      } else {
        raw[f.name] = (c as HTMLInputElement).value;
      }
    }
    return raw;
  };
  const clear = () => {
    for (const [name, el] of errorEls) {
      el.hidden = true;
      el.textContent = "";
      controls.get(name)?.removeAttribute("aria-invalid");
    }
    formError.hidden = true;
    formError.textContent = "";
  };
  const show = (e: ParamError | { field?: string; message: string }) => {
    const base = (e.field ?? "").replace(/^params\./, "").replace(/\[\d+\]$/, "");
    const el = errorEls.get(base);
    if (el) {
      el.textContent = `${labelFor(base)} ${e.message}`;
      el.hidden = false;
      controls.get(base)?.setAttribute("aria-invalid", "true");
    } else {
      formError.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
      formError.hidden = false;
    }
  };
  return {
    form,
    read() {
      clear();
      const params = collectParams(spec, rawValues());
      const errors = allErrors(spec, params);
      if (errors.length) {
        errors.forEach(show);
        const first = errors[0];
        if (first) controls.get(first.field.replace(/\[\d+\]$/, ""))?.focus();
        return null;
      }
      const checked = validateParams(spec, params);
      if (!checked.ok) {
        show(checked.error);
        return null;
      }
      return params;
    },
    showServerError(e) {
      show(e);
    },
  };
}
