// Parameter validation in the browser, rule for rule the same as protocol/src/registry.rs
// (validate_params / validate_value / Format::matches), so a form refuses exactly what the shim and the
// agent would refuse and says so with the same field, rule and message.
import type { CommandSpec, ItemSpec, Literal, ParamSpec, PatternName } from "./command-registry.gen";

export type Rule =
  | "object"
  | "unknown"
  | "required"
  | "type"
  | "min"
  | "max"
  | "minLength"
  | "maxLength"
  | "pattern"
  | "enum"
  | "minItems"
  | "maxItems";

export interface ParamError {
  field: string;
  rule: Rule;
  message: string;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; error: ParamError };

const MAX_ID_LEN = 64;
/** Largest float the registry accepts as an integer (registry.rs Value::as_i64). */
const MAX_EXACT = 9.0e15;

const FORMAT_TEXT: Record<PatternName, string> = {
  hostname: "a host name (letters, digits, '-' and '.' labels of 1-63 characters)",
  host: "a host name or an IP address",
  ipv4: "an IPv4 address",
  id: "1-64 characters from A-Z a-z 0-9 . _ : -",
  printable: "text without control characters",
};

export function describeFormat(f: PatternName): string {
  return FORMAT_TEXT[f];
}

function isHostname(s: string): boolean {
  // All-numeric dotted names would be mistaken for (invalid) IPv4 addresses; refuse them as host names.
  const labels = s.split(".");
  const allNumeric = labels.every((l) => l.length > 0 && /^[0-9]+$/.test(l));
  return (
    s.length > 0 &&
    s.length <= 253 &&
    !allNumeric &&
    labels.every((l) => l.length > 0 && l.length <= 63 && /^[A-Za-z0-9-]+$/.test(l) && !l.startsWith("-") && !l.endsWith("-"))
  );
}

/** Four decimal octets without leading zeros, as Rust's Ipv4Addr parser accepts them. */
export function isIpv4(s: string): boolean {
  const parts = s.split(".");
  return (
    parts.length === 4 &&
    parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)
  );
}

/** IPv6 literal (no zone, no brackets): up to 8 hex groups, one "::", optionally an IPv4 tail. */
export function isIpv6(s: string): boolean {
  if (s.length === 0 || s.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  let body = s;
  let tailGroups = 0;
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    if (lastColon < 0 || !isIpv4(s.slice(lastColon + 1))) return false;
    body = s.slice(0, lastColon + 1) + "0";
    tailGroups = 1; // the IPv4 tail takes two groups; "0" stands for one of them
  }
  const halves = body.split("::");
  if (halves.length > 2) return false;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const okGroup = (g: string) => /^[0-9A-Fa-f]{1,4}$/.test(g);
  if (halves.length === 2) {
    const [a, b] = [groups(halves[0] ?? ""), groups(halves[1] ?? "")];
    return a.every(okGroup) && b.every(okGroup) && a.length + b.length + tailGroups <= 7;
  }
  const g = groups(body);
  return g.every(okGroup) && g.length + tailGroups === 8;
}

function isId(s: string): boolean {
  return s.length > 0 && s.length <= MAX_ID_LEN && /^[A-Za-z0-9._:-]+$/.test(s);
}

/** Rust's char::is_control: the Unicode Cc category. */
function hasControl(s: string): boolean {
  return /[\u0000-\u001f\u007f-\u009f]/.test(s);
}

export function matchesFormat(f: PatternName, s: string): boolean {
  switch (f) {
    case "hostname":
      return isHostname(s);
    case "host":
      return isHostname(s) || isIpv4(s) || isIpv6(s);
    case "ipv4":
      return isIpv4(s);
    case "id":
      return isId(s);
    case "printable":
      return !hasControl(s);
  }
}

/** The registry's name for the type of a JSON value (scs_protocol::Value::type_name). */
export function typeName(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  if (typeof v === "string") return "string";
  if (Array.isArray(v)) return "array";
  return "object";
}

function article(t: ItemSpec["type"]): string {
  return t === "integer" ? "an integer" : t === "array" ? "an array" : `a ${t}`;
}

function literalText(l: Literal): string {
  return typeof l === "string" ? JSON.stringify(l) : String(l);
}

function err<T>(field: string, rule: Rule, message: string): Checked<T> {
  return { ok: false, error: { field, rule, message } };
}

function checkRange(p: ItemSpec, field: string, x: number): Checked<null> {
  if (p.min !== undefined && x < p.min) return err(field, "min", `must be at least ${p.min}, got ${x}`);
  if (p.max !== undefined && x > p.max) return err(field, "max", `must be at most ${p.max}, got ${x}`);
  return { ok: true, value: null };
}

/** Validates one value against a parameter (or array item) spec; `field` names it in errors. */
export function validateValue(p: ItemSpec, field: string, v: unknown): Checked<unknown> {
  const typeErr = () => err<unknown>(field, "type", `must be ${article(p.type)}, got ${typeName(v)}`);
  let out: unknown;
  switch (p.type) {
    case "integer": {
      if (typeof v !== "number" || !Number.isInteger(v) || Math.abs(v) >= MAX_EXACT) return typeErr();
      const r = checkRange(p, field, v);
      if (!r.ok) return r;
      out = v;
      break;
    }
    case "number": {
      if (typeof v !== "number" || !Number.isFinite(v)) return typeErr();
      const r = checkRange(p, field, v);
      if (!r.ok) return r;
      out = v;
      break;
    }
    case "boolean":
      if (typeof v !== "boolean") return typeErr();
      out = v;
      break;
    case "string": {
      if (typeof v !== "string") return typeErr();
      // Rust counts chars (code points), not UTF-16 units.
      const n = [...v].length;
      if (p.minLength !== undefined && n < p.minLength)
        return err(field, "minLength", `must be at least ${p.minLength} characters, got ${n}`);
      if (p.maxLength !== undefined && n > p.maxLength)
        return err(field, "maxLength", `must be at most ${p.maxLength} characters, got ${n}`);
      if (p.pattern !== undefined && !matchesFormat(p.pattern, v))
        return err(field, "pattern", `must be ${describeFormat(p.pattern)} (${p.pattern})`);
      out = v;
      break;
    }
    case "array": {
      if (!Array.isArray(v)) return typeErr();
      if (p.minItems !== undefined && v.length < p.minItems)
        return err(field, "minItems", `must have at least ${p.minItems} items, got ${v.length}`);
      if (p.maxItems !== undefined && v.length > p.maxItems)
        return err(field, "maxItems", `must have at most ${p.maxItems} items, got ${v.length}`);
      const items: unknown[] = [];
      for (const [i, item] of v.entries()) {
        if (p.items) {
          const r = validateValue(p.items, `${field}[${i}]`, item);
          if (!r.ok) return r;
          items.push(r.value);
        } else {
          items.push(item);
        }
      }
      out = items;
      break;
    }
  }
  if (p.enum && p.enum.length > 0 && !p.enum.some((l) => l === out)) {
    return err(field, "enum", `must be one of ${p.enum.map(literalText).join(", ")}`);
  }
  return { ok: true, value: out };
}

/**
 * Validates a command's parameters (an object; null counts as empty). Unknown parameters are refused.
 * Returns the parameters with defaults applied.
 */
export function validateParams(spec: CommandSpec, params: unknown): Checked<Record<string, unknown>> {
  let given: Record<string, unknown>;
  if (params === null || params === undefined) given = {};
  else if (typeof params === "object" && !Array.isArray(params)) given = params as Record<string, unknown>;
  else return err("", "object", `params must be an object, got ${typeName(params)}`);
  const known = spec.params.map((p) => p.name);
  const unknown = Object.keys(given).sort().find((k) => !known.includes(k));
  if (unknown !== undefined) {
    const msg =
      known.length === 0
        ? `${spec.type} takes no parameters`
        : `not a parameter of ${spec.type} (known: ${known.join(", ")})`;
    return err(unknown, "unknown", msg);
  }
  const out: Record<string, unknown> = {};
  for (const p of spec.params) {
    const v = given[p.name];
    if (v === undefined || v === null) {
      if (p.required) return err(p.name, "required", "is required");
      if (p.default !== undefined) out[p.name] = p.default;
      continue;
    }
    const r = validateValue(p, p.name, v);
    if (!r.ok) return r;
    out[p.name] = r.value;
  }
  return { ok: true, value: out };
}

/** Validates every parameter and returns all errors (a form shows each field's error at once). */
export function allErrors(spec: CommandSpec, params: Record<string, unknown>): ParamError[] {
  const errors: ParamError[] = [];
  for (const p of spec.params as readonly ParamSpec[]) {
    const v = params[p.name];
    if (v === undefined || v === null) {
      if (p.required) errors.push({ field: p.name, rule: "required", message: "is required" });
      continue;
    }
    const r = validateValue(p, p.name, v);
    if (!r.ok) errors.push(r.error);
  }
  return errors;
}
