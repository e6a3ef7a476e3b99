// Forms are generated from each registry entry: controls, constraints and the typed values they produce.
import { describe, expect, it } from "vitest";
import { buildForm, collectParams, fieldsFor, labelFor, parseScalar } from "../src/form";
import { COMMANDS, findCommand } from "../src/command-registry.gen";

describe("field model", () => {
  it("maps every parameter type to a control", () => {
    const kinds = Object.fromEntries(fieldsFor(findCommand("agent.log_tail")!).map((f) => [f.name, f.kind]));
    expect(kinds).toEqual({ lines: "integer", minLevel: "select", contains: "text" });
    const bundle = Object.fromEntries(fieldsFor(findCommand("diag.log_bundle")!).map((f) => [f.name, f.kind]));
    expect(bundle.include).toBe("checkboxes");
    expect(fieldsFor(findCommand("device.info")!)).toEqual([]);
  });
  it("describes constraints and defaults", () => {
    const [port] = fieldsFor(findCommand("net.tcp_probe")!).filter((f) => f.name === "port");
    expect(port?.hint).toContain("required");
    expect(port?.hint).toContain("1 to 65535");
    const [host] = fieldsFor(findCommand("net.tcp_probe")!);
    expect(host?.hint).toContain("a host name or an IP address");
    const [delay] = fieldsFor(findCommand("device.reboot")!);
    expect(delay?.hint).toContain("default 0");
    expect(labelFor("intervalSecs")).toBe("Interval secs");
  });
  it("a field for every parameter of every command", () => {
    for (const c of COMMANDS) expect(fieldsFor(c).map((f) => f.name)).toEqual(c.params.map((p) => p.name));
  });
});

describe("typed values from what was typed", () => {
  it("parses numbers strictly and keeps junk as text for the type rule", () => {
    expect(parseScalar("integer", "42")).toBe(42);
    expect(parseScalar("integer", " 7 ")).toBe(7);
    expect(parseScalar("integer", "")).toBeUndefined();
    expect(parseScalar("integer", "4x")).toBe("4x");
    expect(parseScalar("integer", "1.5")).toBe(1.5);
    expect(parseScalar("boolean", "true")).toBe(true);
  });
  it("leaves empty optional fields out so the registry defaults apply", () => {
    const spec = findCommand("net.tcp_probe")!;
    expect(collectParams(spec, { host: "10.0.0.5", port: "554", timeoutMs: "", attempts: "" })).toEqual({ host: "10.0.0.5", port: 554 });
  });
  it("enum selects give the literal, checkboxes give arrays", () => {
    expect(collectParams(findCommand("agent.log_tail")!, { minLevel: "warn", lines: "20" })).toEqual({ minLevel: "warn", lines: 20 });
    expect(collectParams(findCommand("diag.log_bundle")!, { include: ["logs", "queue"] })).toEqual({ include: ["logs", "queue"] });
    expect(collectParams(findCommand("diag.log_bundle")!, { include: [] })).toEqual({});
  });
});

describe("DOM form", () => {
  it("renders labelled controls with limits and shows errors before sending", () => {
    const f = buildForm(findCommand("net.tcp_probe")!, "t", "Run");
    document.body.replaceChildren(f.form);
    const port = f.form.querySelector<HTMLInputElement>("#t-port")!;
    expect(port.type).toBe("number");
    expect(port.min).toBe("1");
    expect(port.max).toBe("65535");
    expect(f.form.querySelector('label[for="t-port"]')?.textContent).toBe("Port");
    f.form.querySelector<HTMLInputElement>("#t-host")!.value = "bad host;rm";
    port.value = "70000";
    expect(f.read()).toBeNull();
    expect(f.form.querySelector("#t-host-err")?.textContent).toContain("must be a host name or an IP address");
    expect(f.form.querySelector("#t-port-err")?.textContent).toContain("must be at most 65535, got 70000");
    expect(port.getAttribute("aria-invalid")).toBe("true");
    f.form.querySelector<HTMLInputElement>("#t-host")!.value = "10.0.0.5";
    port.value = "554";
    expect(f.read()).toEqual({ host: "10.0.0.5", port: 554 });
    expect(port.hasAttribute("aria-invalid")).toBe(false);
  });
  it("shows a server error on its field", () => {
    const f = buildForm(findCommand("telemetry.set_interval")!, "s", "Run");
    f.showServerError({ field: "params.intervalSecs", message: "must be at least 1, got 0" });
    expect(f.form.querySelector("#s-intervalSecs-err")?.textContent).toContain("must be at least 1");
  });
  it("destructive commands get a danger button", () => {
    const f = buildForm(findCommand("device.reboot")!, "r", "Review…");
    expect(f.form.querySelector("button[type=submit]")?.className).toBe("danger");
  });
});
