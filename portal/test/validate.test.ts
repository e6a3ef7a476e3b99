// The browser's checks must refuse what protocol/src/registry.rs refuses, with the same field and rule:
// these cases mirror that module's tests, plus the real registry entries the forms are built from.
import { describe, expect, it } from "vitest";
import { validateParams, validateValue, matchesFormat, allErrors, isIpv6 } from "../src/validate";
import { COMMANDS, findCommand, type CommandSpec } from "../src/command-registry.gen";

const SPEC: CommandSpec = {
  type: "net.tcp_probe",
  title: "t",
  description: "d",
  path: "/1/0/1",
  operation: "execute",
  timeoutSecs: 5,
  artifact: false,
  safety: { destructive: false, requiresConfirmation: false, maxConcurrentPerGateway: 1, rateLimit: null, targets: ["gateway"] },
  params: [
    { name: "host", type: "string", required: true, minLength: 1, maxLength: 20, pattern: "host" },
    { name: "port", type: "integer", required: true, min: 1, max: 65535 },
    { name: "timeoutMs", type: "integer", required: false, min: 50, max: 10000, default: 3000 },
    { name: "ratio", type: "number", required: false, min: 0.5, max: 2 },
    { name: "verbose", type: "boolean", required: false, default: false },
    { name: "level", type: "string", required: false, enum: ["error", "warn"] },
    { name: "include", type: "array", required: false, minItems: 1, maxItems: 2, items: { type: "string", enum: ["logs", "config"] } },
  ],
};

const base = () => ({ host: "example.org", port: 443 }) as Record<string, unknown>;
const withP = (k: string, v: unknown) => ({ ...base(), [k]: v });
const without = (k: string) => {
  const b = base();
  delete b[k];
  return b;
};
function err(v: unknown): [string, string] {
  const r = validateParams(SPEC, v);
  if (r.ok) throw new Error(`accepted ${JSON.stringify(v)}`);
  return [r.error.field, r.error.rule];
}

describe("validateParams mirrors registry.rs", () => {
  it("applies defaults", () => {
    const r = validateParams(SPEC, withP("port", 80));
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.port).toBe(80);
      expect(r.value.timeoutMs).toBe(3000);
      expect(r.value.verbose).toBe(false);
      expect("level" in r.value).toBe(false);
    }
  });

  it("reports each rule with its field", () => {
    expect(err([])).toEqual(["", "object"]);
    expect(err(withP("bogus", 1))).toEqual(["bogus", "unknown"]);
    expect(err(without("port"))).toEqual(["port", "required"]);
    expect(err(withP("port", null))).toEqual(["port", "required"]);
    expect(err(withP("port", "443"))).toEqual(["port", "type"]);
    expect(err(withP("port", 1.5))).toEqual(["port", "type"]);
    expect(err(withP("port", 0))).toEqual(["port", "min"]);
    expect(err(withP("port", 70000))).toEqual(["port", "max"]);
    expect(err(withP("ratio", 0.1))).toEqual(["ratio", "min"]);
    expect(err(withP("ratio", 3))).toEqual(["ratio", "max"]);
    expect(err(withP("ratio", NaN))).toEqual(["ratio", "type"]);
    expect(err(withP("verbose", 1))).toEqual(["verbose", "type"]);
    expect(err(withP("host", ""))).toEqual(["host", "minLength"]);
    expect(err(withP("host", "a".repeat(21)))).toEqual(["host", "maxLength"]);
    expect(err(withP("host", "bad host;rm"))).toEqual(["host", "pattern"]);
    expect(err(withP("level", "info"))).toEqual(["level", "enum"]);
    expect(err(withP("include", []))).toEqual(["include", "minItems"]);
    expect(err(withP("include", ["logs", "logs", "logs"]))).toEqual(["include", "maxItems"]);
    expect(err(withP("include", ["logs", "secrets"]))).toEqual(["include[1]", "enum"]);
    expect(err(withP("include", "logs"))).toEqual(["include", "type"]);
  });

  it("uses the registry's messages", () => {
    const r = validateParams(SPEC, withP("port", 70000));
    expect(r.ok ? "" : r.error.message).toBe("must be at most 65535, got 70000");
    const t = validateParams(SPEC, withP("port", "x"));
    expect(t.ok ? "" : t.error.message).toBe("must be an integer, got string");
    const e = validateParams(SPEC, withP("level", "info"));
    expect(e.ok ? "" : e.error.message).toBe('must be one of "error", "warn"');
    const none = validateParams(findCommand("device.info")!, { x: 1 });
    expect(none.ok ? "" : none.error.message).toBe("device.info takes no parameters");
  });

  it("accepts valid values", () => {
    for (const host of ["example.org", "10.0.0.1", "::1", "gw-1", "a.b-c.d"]) expect(validateParams(SPEC, withP("host", host)).ok).toBe(true);
    expect(validateParams(SPEC, withP("include", ["logs", "config"])).ok).toBe(true);
    expect(validateParams(SPEC, withP("level", "warn")).ok).toBe(true);
    expect(validateParams(SPEC, withP("ratio", 1)).ok).toBe(true);
  });

  it("collects every error at once for the form", () => {
    const errs = allErrors(SPEC, { port: 0, host: "" });
    expect(errs.map((e) => [e.field, e.rule])).toEqual([
      ["host", "minLength"],
      ["port", "min"],
    ]);
  });
});

describe("formats mirror registry.rs Format::matches", () => {
  it("hostname", () => {
    expect(matchesFormat("hostname", "a-b.example")).toBe(true);
    for (const bad of ["-a", "a-", "a..b", "", "1.2.3.4", "a_b", "a".repeat(64)]) expect(matchesFormat("hostname", bad)).toBe(false);
  });
  it("ipv4, host, id, printable", () => {
    expect(matchesFormat("ipv4", "192.168.1.1")).toBe(true);
    for (const bad of ["256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", " 1.2.3.4"]) expect(matchesFormat("ipv4", bad)).toBe(false);
    expect(matchesFormat("host", "fe80::1")).toBe(true);
    expect(matchesFormat("host", "[::1]")).toBe(false);
    expect(matchesFormat("id", "cmd-1")).toBe(true);
    expect(matchesFormat("id", "a/b")).toBe(false);
    expect(matchesFormat("id", "x".repeat(65))).toBe(false);
    expect(matchesFormat("printable", "some text")).toBe(true);
    expect(matchesFormat("printable", "a\nb")).toBe(false);
    expect(matchesFormat("printable", "a\u0085b")).toBe(false);
  });
  it("ipv6 literals", () => {
    for (const ok of ["::", "::1", "fe80::1", "2001:db8::8a2e:370:7334", "1:2:3:4:5:6:7:8", "::ffff:192.0.2.1", "64:ff9b::1.2.3.4"]) expect(isIpv6(ok), ok).toBe(true);
    for (const bad of ["1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "fe80::1%eth0", ":::", "1:2:3:4:5:6:7", "g::1"]) expect(isIpv6(bad), bad).toBe(false);
  });
});

describe("real registry entries", () => {
  it("net.tcp_probe refuses a shell-looking host and an out-of-range port", () => {
    const spec = findCommand("net.tcp_probe")!;
    expect(validateParams(spec, { host: "10.0.0.5", port: 554 }).ok).toBe(true);
    const r = validateParams(spec, { host: "x;reboot", port: 554 });
    expect(r.ok ? "" : r.error.rule).toBe("pattern");
    expect(validateValue(spec.params[1]!, "port", 65536).ok).toBe(false);
  });
  it("every command's defaults satisfy its own rules", () => {
    for (const c of COMMANDS) {
      const required = Object.fromEntries(
        c.params
          .filter((p) => p.required)
          // The first allowed value of an enum, else the shortest string the length rules allow; letters
          // satisfy every named format but host/ipv4.
          .map((p) => [p.name, p.enum?.[0] ?? (p.type === "integer" ? (p.min ?? 1) : p.type === "string" ? "a".repeat(Math.max(1, p.minLength ?? 1)) : true)]),
      );
      const r = validateParams(c, required);
      expect(r.ok, c.type).toBe(true);
    }
  });
});
