// Pure parts of the pages: fleet filtering/sorting and the device tree by parentSensorId.
import { describe, expect, it } from "vitest";
import { filterFleet, hasProblem } from "../src/pages/fleet";
import { buildTree } from "../src/pages/gateway";
import { commandsForDevice, latestImage } from "../src/pages/device";
import type { Command, FleetGateway, Sensor } from "../src/api";

function gw(id: string, over: Partial<FleetGateway> = {}): FleetGateway {
  return {
    id,
    name: null,
    status: "online",
    lastSeen: 1,
    attrs: {},
    presence: { online: true, boot: "00", since: 1, version: "0.1.0" },
    backlog: { queueDepth: 0, queueBytes: 0, ts: 1 },
    gaps: { reports: 0, dropped: 0, lastAt: null },
    rejected: 0,
    openCommands: 0,
    children: { total: 2, online: 2, offline: 0, unknown: 0, byType: {} },
    ...over,
  };
}

describe("fleet", () => {
  const list = [
    gw("gw-a"),
    gw("gw-b", { presence: { online: false, boot: "00", since: 1, version: null } }),
    gw("gw-c", { children: { total: 3, online: 1, offline: 2, unknown: 0, byType: {} }, name: "Site North" }),
    gw("gw-d", { gaps: { reports: 1, dropped: 5, lastAt: 2 } }),
  ];
  it("flags offline gateways, down children and dropped data", () => {
    expect(list.map(hasProblem)).toEqual([false, true, true, true]);
  });
  it("searches id, name and attributes; filters by status and problems", () => {
    expect(filterFleet(list, "north", "", false, "id").map((g) => g.id)).toEqual(["gw-c"]);
    expect(filterFleet(list, "", "offline", false, "id").map((g) => g.id)).toEqual(["gw-b"]);
    expect(filterFleet(list, "", "", true, "id").map((g) => g.id)).toEqual(["gw-b", "gw-c", "gw-d"]);
  });
  it("sorts problems first, offline gateways at the top", () => {
    expect(filterFleet(list, "", "", false, "problems").map((g) => g.id)).toEqual(["gw-b", "gw-d", "gw-c", "gw-a"]);
  });
});

function sensor(id: string, parent: string | null, type = "CAMERA"): Sensor {
  return { id, type, parentSensorId: parent, name: null, gatewayId: "gw", status: "unknown", lastSeen: null, attrs: {} };
}

describe("device tree", () => {
  it("nests by parentSensorId and keeps orphans at the top", () => {
    const tree = buildTree("gw", [
      sensor("gw", null, "EDGE_CONTROLLER"),
      sensor("nvr", "gw", "NVR"),
      sensor("cam-2", "nvr"),
      sensor("cam-1", "gw"),
      sensor("cam-3", "missing-parent"),
    ]);
    expect(tree.map((n) => n.sensor.id)).toEqual(["cam-1", "cam-3", "nvr"]);
    expect(tree[2]?.children.map((n) => n.sensor.id)).toEqual(["cam-2"]);
  });
});

describe("device snapshot", () => {
  const cmd = (id: string, params: Record<string, unknown>, updatedAt: number, contentType: string): Command =>
    ({ id, params, updatedAt, artifacts: [{ id: "a", name: "x", size: 1, sha256: "0", contentType, url: `/v1/artifacts/${id}?token=t` }] }) as unknown as Command;
  it("picks the newest image artifact of a command naming the device", () => {
    const cmds = [cmd("c1", { deviceId: "cam-1" }, 1, "image/jpeg"), cmd("c2", { deviceId: "cam-1" }, 2, "image/jpeg"), cmd("c3", { deviceId: "cam-2" }, 3, "image/jpeg")];
    const mine = commandsForDevice(cmds, "cam-1");
    expect(mine.map((c) => c.id)).toEqual(["c1", "c2"]);
    expect(latestImage(mine)?.url).toContain("/v1/artifacts/c2?token=t");
    expect(latestImage([cmd("c4", { deviceId: "cam-1" }, 4, "application/gzip")])).toBeNull();
  });
});

describe("NVR tables from metrics", () => {
  it("lists disks and channels when nvr.* metrics exist, nothing otherwise", async () => {
    const { nvrTables } = await import("../src/pages/device");
    const { latestBy } = await import("../src/metrics");
    const latest = latestBy([
      { name: "nvr.hdd_ok", label: "hdd2", ts: 1, value: 0 },
      { name: "nvr.hdd_capacity_bytes", label: "hdd2", ts: 1, value: 4e12 },
      { name: "nvr.hdd_free_bytes", label: "hdd2", ts: 1, value: 1.5e12 },
      { name: "nvr.disk_used_pct", label: "hdd1", ts: 1, value: 80 },
      { name: "nvr.disk_used_pct", label: "hdd1", ts: 2, value: 81.5 },
      { name: "nvr.hdd_ok", label: "hdd1", ts: 2, value: 1 },
      { name: "nvr.channel_online", label: "10", ts: 2, value: 1 },
      { name: "nvr.recording", label: "10", ts: 2, value: 0 },
      { name: "nvr.recording", label: "2", ts: 2, value: 1 },
    ]);
    const host = document.createElement("div");
    host.append(...nvrTables(latest));
    const cells = (sel: string) =>
      [...host.querySelectorAll(`table[data-table=${sel}] tbody tr`)].map((r) => [...r.querySelectorAll("td")].slice(0, -1).map((c) => c.textContent));
    expect(cells("hdd")).toEqual([
      ["hdd1", "ok", "—", "—", "81.5 %"],
      ["hdd2", "failed", "4,000 GB", "1,500 GB", "—"],
    ]);
    expect(cells("channels")).toEqual([
      ["2", "—", "recording"],
      ["10", "online", "not recording"],
    ]);
    expect(nvrTables(latestBy([{ name: "device.online", ts: 1, value: 1 }]))).toEqual([]);
  });
});

describe("device events", () => {
  it("reads as the operator's words with the agent's detail, bad news flagged", async () => {
    const { eventText, isBadEvent } = await import("../src/pages/gateway");
    const ev = { sensorId: "cam-1", gatewayId: "gw", ts: 1, kind: "device.replaced", detail: "serial A -> B", attrs: {}, receivedAt: 2 };
    expect(eventText(ev)).toBe("Device replaced: serial A -> B");
    expect(eventText({ ...ev, kind: "vendor.custom_thing", detail: null })).toBe("vendor.custom_thing");
    expect(isBadEvent("stream.lost")).toBe(true);
    expect(isBadEvent("nvr.hdd_failed")).toBe(true);
    expect(isBadEvent("stream.restored")).toBe(false);
    expect(isBadEvent("device.up")).toBe(false);
  });

  it("counts children by problem on the fleet row", async () => {
    const { childProblems, hasProblem } = await import("../src/pages/fleet");
    const g = {
      id: "gw",
      name: null,
      status: "online",
      lastSeen: 1,
      attrs: {},
      presence: { online: true, boot: "1", since: 1, version: null },
      backlog: null,
      gaps: { reports: 0, dropped: 0, lastAt: null },
      rejected: 0,
      openCommands: 0,
      children: { total: 3, online: 3, offline: 0, unknown: 0, byType: {}, problems: {} as Record<string, number> },
    };
    expect(hasProblem(g)).toBe(false);
    g.children.problems = { auth_broken: 1, hdd_failed: 2 };
    expect(childProblems(g)).toBe(3);
    expect(hasProblem(g)).toBe(true);
  });
});
