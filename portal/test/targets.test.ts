// Commands aimed at cameras and NVRs: which registry entries a device class gets, the target picker on the
// gateway's page, the request body, and the confirmation step that names the device.
import { afterEach, describe, expect, it, vi } from "vitest";
import { commandBody, commandRunner, commandsForClass, targetChoices, targetClass } from "../src/command-runner";
import { pageCommands } from "../src/pages/commands";
import { findCommand } from "../src/command-registry.gen";
import type { Command, Sensor } from "../src/api";

function sensor(id: string, type: string, over: Partial<Sensor> = {}): Sensor {
  return { id, type, parentSensorId: "gw-1", name: null, gatewayId: "gw-1", status: "online", lastSeen: 1, attrs: {}, ...over };
}

const children = [
  sensor("gw-1", "GATEWAY", { parentSensorId: null }),
  sensor("gw-1-nvr-01", "NVR", { name: "Recorder" }),
  sensor("gw-1-cam-10", "CAMERA"),
  sensor("gw-1-cam-02", "CAMERA", { name: "Gate" }),
  sensor("gw-1-temp", "TEMPERATURE"),
  sensor("gw-2-cam-01", "CAMERA", { gatewayId: "gw-2" }),
];

describe("target classes", () => {
  it("maps sensor types to the registry's classes", () => {
    expect(targetClass("CAMERA")).toBe("camera");
    expect(targetClass("NVR")).toBe("nvr");
    expect(targetClass("GATEWAY")).toBe("gateway");
    expect(targetClass("TEMPERATURE")).toBeNull();
  });
  it("offers a camera the camera commands and an NVR the NVR commands, never gateway ones", () => {
    const cam = commandsForClass("camera").map((c) => c.type);
    expect(cam).toEqual(expect.arrayContaining(["camera.reboot", "camera.snapshot", "device.probe"]));
    expect(cam).not.toContain("nvr.clip_export");
    expect(cam).not.toContain("device.info");
    const nvr = commandsForClass("nvr").map((c) => c.type);
    expect(nvr).toEqual(expect.arrayContaining(["nvr.clip_export", "device.probe"]));
    expect(nvr).not.toContain("camera.snapshot");
    expect(commandsForClass(null)).toEqual([]);
    for (const c of commandsForClass("camera")) expect(c.safety.targets).toContain("camera");
  });
  it("lists the gateway's own commands first on its page", () => {
    const types = pageCommands().map((c) => c.type);
    expect(types.indexOf("device.info")).toBeLessThan(types.indexOf("camera.snapshot"));
    expect(new Set(types).size).toBe(types.length);
  });
});

describe("target picker", () => {
  it("lists only this gateway's children of a class the command targets, by id", () => {
    const snap = targetChoices(findCommand("camera.snapshot")!, "gw-1", children);
    expect(snap.map((c) => c.id)).toEqual(["gw-1-cam-02", "gw-1-cam-10"]);
    expect(snap[0]?.label).toContain("Gate");
    const reboot = targetChoices(findCommand("camera.reboot")!, "gw-1", children);
    expect(reboot.map((c) => c.id)).toEqual(["gw-1-cam-02", "gw-1-cam-10", "gw-1-nvr-01"]);
    expect(targetChoices(findCommand("nvr.clip_export")!, "gw-1", children).map((c) => c.id)).toEqual(["gw-1-nvr-01"]);
  });
  it("offers the gateway itself (empty target) for gateway commands", () => {
    expect(targetChoices(findCommand("device.info")!, "gw-1", children)).toEqual([{ id: "", label: "The gateway (gw-1)" }]);
  });
  it("sends target only for a child device", () => {
    const spec = findCommand("camera.snapshot")!;
    expect(commandBody(spec, {}, false, "gw-1-cam-02")).toEqual({ type: "camera.snapshot", params: {}, confirm: false, target: "gw-1-cam-02" });
    expect(commandBody(findCommand("device.info")!, {}, false, null)).not.toHaveProperty("target");
  });
});

describe("runner on a device page", () => {
  afterEach(() => vi.unstubAllGlobals());
  const cam = { id: "gw-1-cam-02", name: "Gate", type: "CAMERA" };

  it("generates the form of the chosen command and sends it with the device as target", async () => {
    const bodies: unknown[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(String(init.body)));
      return new Response(JSON.stringify({ id: "c1", type: "camera.snapshot", terminal: false }), { status: 201, headers: { "Content-Type": "application/json" } });
    });
    const sent: Command[] = [];
    const r = commandRunner({ gw: "gw-1", specs: commandsForClass("camera"), device: cam, initialType: "camera.snapshot", onSent: (c) => sent.push(c) });
    document.body.replaceChildren(r.el);
    expect(r.el.querySelector("#cmd-target")).toBeNull();
    expect(r.el.querySelector("#p-maxBytes")).not.toBeNull();
    r.el.querySelector<HTMLFormElement>("#cmd-form form")!.dispatchEvent(new Event("submit", { cancelable: true }));
    await vi.waitFor(() => expect(sent.length).toBe(1));
    expect(bodies).toEqual([{ type: "camera.snapshot", params: {}, confirm: false, target: "gw-1-cam-02" }]);
  });

  it("holds a destructive command until the device id is typed", async () => {
    const fetch = vi.fn();
    vi.stubGlobal("fetch", fetch);
    const r = commandRunner({ gw: "gw-1", specs: commandsForClass("camera"), device: cam, initialType: "camera.reboot", onSent: () => {} });
    document.body.replaceChildren(r.el);
    r.el.querySelector<HTMLFormElement>("#cmd-form form")!.dispatchEvent(new Event("submit", { cancelable: true }));
    const confirm = r.el.querySelector("#cmd-confirm")!;
    expect(confirm.textContent).toContain("camera gw-1-cam-02");
    expect(confirm.textContent).toContain("destructive");
    const typed = r.el.querySelector<HTMLInputElement>("#confirm-id")!;
    const ok = r.el.querySelector<HTMLButtonElement>("#confirm-send")!;
    expect(ok.disabled).toBe(true);
    typed.value = "gw-1";
    typed.dispatchEvent(new Event("input"));
    expect(ok.disabled).toBe(true);
    ok.click();
    typed.value = "gw-1-cam-02";
    typed.dispatchEvent(new Event("input"));
    expect(ok.disabled).toBe(false);
    expect(fetch).not.toHaveBeenCalled();
  });
});

describe("runner on the gateway's page", () => {
  it("shows a picker of matching children and disables it when none fits", () => {
    let kids: Sensor[] = [];
    const r = commandRunner({ gw: "gw-1", specs: pageCommands(), children: () => kids, initialType: "nvr.clip_export", onSent: () => {} });
    const pick = r.el.querySelector<HTMLSelectElement>("#cmd-target")!;
    expect(pick.disabled).toBe(true);
    kids = children;
    r.refreshTargets();
    expect(pick.disabled).toBe(false);
    expect([...pick.options].map((o) => o.value)).toEqual(["gw-1-nvr-01"]);
  });
});

describe("device snapshot", () => {
  const cmd = (id: string, over: Partial<Command>): Command =>
    ({ id, type: "camera.snapshot", gatewayId: "gw-1", target: "gw-1-cam-02", state: "succeeded", terminal: true, params: {}, confirm: false, result: null, error: null, artifacts: [], requestedBy: "t", createdAt: 1, updatedAt: 1, expiresAt: 9, timeoutSecs: 30, deliveries: 1, cancelRequested: false, ...over }) as Command;
  it("picks the newest succeeded image command, listed without artifact URLs", async () => {
    const { imageCandidate } = await import("../src/pages/device");
    const list = [
      cmd("old", { updatedAt: 5 }),
      cmd("failed", { updatedAt: 9, state: "failed" }),
      cmd("probe", { updatedAt: 10, type: "device.probe" }),
      cmd("new", { updatedAt: 8 }),
    ];
    expect(imageCandidate(list)?.id).toBe("new");
    expect(imageCandidate([cmd("p", { type: "device.probe" })])).toBeNull();
  });
});
