import { h, badge, errorBox, loading, empty, tableWrap, link, fmtNumber } from "../dom";
import { get, enc, ApiError, routeMissing, healthOf, problemsOf, problemLabel, PROBLEMS, type Sensor, type GatewayStats, type Command, type DeviceEvent, type EventPage } from "../api";
import { timeEl } from "../time";
import { chartCard } from "../chart";
import { rangeSelect, samples } from "../metrics";
import { POLL_SECS } from "../config";
import type { Page } from "../app";

/** Host metrics charted on the gateway page: [metric, title, unit]. */
const HOST_METRICS: [string, string, string][] = [
  ["cpu.usage_pct", "CPU", "%"],
  ["mem.used_pct", "Memory used", "%"],
  ["load.1m", "Load (1 min)", ""],
  ["disk.used_pct", "Disk used", "%"],
  ["thermal.temp_c", "Temperature", "°C"],
  ["agent.queue_depth", "Queue backlog", "messages"],
];

/** The gateway's devices with their health; the plain sensor list where the API lacks that route. */
async function loadDevices(id: string): Promise<Sensor[]> {
  try {
    return (await get<{ devices: Sensor[] }>(`/v1/gateways/${enc(id)}/devices`)).devices;
  } catch (e) {
    if (routeMissing(e)) return get<Sensor[]>(`/v1/sensors?gatewayId=${enc(id)}`);
    throw e;
  }
}

export interface TreeNode {
  sensor: Sensor;
  children: TreeNode[];
}

/** Children of `rootId` as a tree by parentSensorId (an NVR's cameras under it); orphans go to the root. */
export function buildTree(rootId: string, sensors: Sensor[]): TreeNode[] {
  const nodes = new Map(sensors.filter((s) => s.id !== rootId).map((s) => [s.id, { sensor: s, children: [] as TreeNode[] }]));
  const top: TreeNode[] = [];
  for (const n of nodes.values()) {
    const parent = n.sensor.parentSensorId ? nodes.get(n.sensor.parentSensorId) : undefined;
    if (parent && parent !== n) parent.children.push(n);
    else top.push(n);
  }
  const sortRec = (list: TreeNode[]) => {
    list.sort((a, b) => a.sensor.type.localeCompare(b.sensor.type) || a.sensor.id.localeCompare(b.sensor.id));
    list.forEach((n) => sortRec(n.children));
  };
  sortRec(top);
  return top;
}

function identity(s: Sensor): string {
  const a = s.attrs ?? {};
  return [a.manufacturer ?? a.vendor, a.model, a.firmwareVersion ? `fw ${a.firmwareVersion}` : null, a.address].filter(Boolean).join(" · ");
}

/** One line per device event: what happened, in the operator's words, with the detail the agent sent. */
export function eventText(e: DeviceEvent): string {
  const words: Record<string, string> = {
    "device.replaced": "Device replaced",
    "device.firmware_changed": "Firmware changed",
    "device.rebooted": "Device rebooted",
    "device.auth_broken": "Authentication broken",
    "device.auth_restored": "Authentication restored",
    "device.down": "Device down",
    "device.up": "Device back up",
    "stream.lost": "Stream lost",
    "stream.restored": "Stream restored",
    "nvr.hdd_failed": "HDD failed",
    "nvr.hdd_restored": "HDD restored",
  };
  return `${words[e.kind] ?? e.kind}${e.detail ? `: ${e.detail}` : ""}`;
}

/** Event kinds that are bad news (shown with a warning tone). */
export function isBadEvent(kind: string): boolean {
  return /(replaced|broken|down|lost|failed)$/.test(kind);
}

function treeList(nodes: TreeNode[], top: boolean): HTMLElement {
  return h(
    "ul",
    { class: top ? "tree" : "subtree" },
    ...nodes.map((n) =>
      h(
        "li",
        null,
        h(
          "div",
          { class: "tree-item" },
          badge(healthOf(n.sensor)),
          ...problemsOf(n.sensor)
            .filter((p) => p !== "down")
            .map((p) => [" ", h("span", { class: "badge badge-problem", "data-problem": p }, problemLabel(p))]),
          " ",
          link(`/devices/${enc(n.sensor.id)}`, n.sensor.name || n.sensor.id),
          h("span", { class: "type" }, n.sensor.type),
          h("span", { class: "muted small" }, n.sensor.name ? ` ${n.sensor.id}` : "", identity(n.sensor) ? ` — ${identity(n.sensor)}` : ""),
          typeof n.sensor.health?.latencyMs === "number" ? h("span", { class: "small" }, ` ${n.sensor.health.latencyMs} ms`) : null,
          h("span", { class: "small" }, " last seen ", timeEl(n.sensor.lastSeen, true)),
        ),
        n.children.length ? treeList(n.children, false) : null,
      ),
    ),
  );
}

export function attrsTable(attrs: Record<string, string>, label: string): HTMLElement {
  const entries = Object.entries(attrs ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return empty("No attributes reported.");
  return h("dl", { class: "attrs", "aria-label": label }, ...entries.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, String(v))]));
}

interface Event {
  at: number;
  text: (string | Node)[];
}

function events(gw: Sensor, stats: GatewayStats | null, cmds: Command[], devEvents: DeviceEvent[]): Event[] {
  const ev: Event[] = [];
  for (const e of devEvents)
    ev.push({ at: e.ts, text: [link(`/devices/${enc(e.sensorId)}`, e.sensorId), " ", h("span", { class: isBadEvent(e.kind) ? "warn" : "ok", "data-kind": e.kind }, eventText(e))] });
  const p = stats?.presence ?? gw.presence;
  if (p) ev.push({ at: p.since, text: [`Gateway ${p.online ? "came online" : "went offline"}`, p.version ? ` (agent ${p.version})` : ""] });
  for (const g of stats?.gaps ?? []) ev.push({ at: g.receivedAt, text: [`Agent dropped ${g.dropped} queued messages (seq ${g.firstSeq}–${g.lastSeq})`] });
  for (const r of stats?.rejections ?? []) ev.push({ at: r.lastAt, text: [`Rejected message: ${r.reason} (${r.count}×) — ${r.lastError}`] });
  for (const c of cmds)
    ev.push({ at: c.updatedAt, text: [link(`/commands/${enc(c.id)}`, c.type), c.target ? ` on ${c.target}` : "", " ", badge(c.state), ` requested by ${c.requestedBy}`] });
  return ev.sort((a, b) => b.at - a.at).slice(0, 20);
}

export const gatewayPage: Page = (root, ctx) => {
  const id = ctx.params.id ?? "";
  ctx.setTitle(`Gateway ${id}`);
  const head = h("div", { class: "page-head" }, h("h1", null, "Gateway ", h("span", { class: "mono" }, id)));
  const info = h("section", { "aria-labelledby": "gw-info-h", class: "card" }, h("h2", { id: "gw-info-h" }, "Status"), loading("the gateway"));
  const tree = h("section", { "aria-labelledby": "gw-tree-h", class: "card" }, h("h2", { id: "gw-tree-h" }, "Devices"), loading("devices"));
  let range = Number(ctx.query.get("range")) || 3600;
  const chartsBody = h("div", { class: "charts" }, loading("metrics"));
  const charts = h(
    "section",
    { "aria-labelledby": "gw-charts-h", class: "card wide" },
    h("div", { class: "section-head" }, h("h2", { id: "gw-charts-h" }, "Host metrics"), rangeSelect("gw-range", range, (s) => ((range = s), void chartPoll.now()))),
    chartsBody,
  );
  const ingest = h("section", { "aria-labelledby": "gw-ingest-h", class: "card" }, h("h2", { id: "gw-ingest-h" }, "Rejections and gaps"), loading("ingest statistics"));
  const evs = h("section", { "aria-labelledby": "gw-events-h", class: "card" }, h("h2", { id: "gw-events-h" }, "Recent events"), loading("events"));
  root.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("/", "Fleet"), " / ", id),
    head,
    h("p", null, link(`/gateways/${enc(id)}/commands`, "Commands for this gateway", { class: "button" })),
    h("div", { class: "grid" }, info, tree, charts, ingest, evs),
  );
  const setBody = (sec: HTMLElement, ...nodes: Node[]) => {
    const title = sec.querySelector("h2, .section-head");
    sec.replaceChildren(...(title ? [title] : []), ...nodes);
  };
  let destroyers: (() => void)[] = [];
  ctx.onLeave(() => destroyers.forEach((d) => d()));

  ctx.poll(POLL_SECS, async () => {
    let gw: Sensor;
    try {
      gw = await get<Sensor>(`/v1/sensors/${enc(id)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setBody(info, empty(`No gateway ${id} is known. It appears after its agent's first inventory.`));
      else setBody(info, errorBox("the gateway", e));
      return;
    }
    const online = gw.presence ? gw.presence.online : gw.status === "online";
    setBody(
      info,
      h(
        "dl",
        { class: "attrs" },
        h("dt", null, "Status"),
        h("dd", null, badge(online ? "online" : "offline"), gw.presence ? [" since ", timeEl(gw.presence.since)] : null),
        h("dt", null, "Last seen"),
        h("dd", null, timeEl(gw.lastSeen)),
        h("dt", null, "Name"),
        h("dd", null, gw.name ?? "—"),
        h("dt", null, "Type"),
        h("dd", null, gw.type),
      ),
      h("h3", null, "Identity"),
      attrsTable(gw.attrs, "Gateway attributes"),
    );
    const [sensors, stats, cmds, devEvents] = await Promise.allSettled([
      loadDevices(id),
      get<GatewayStats>(`/v1/gateways/${enc(id)}/stats`),
      get<{ commands: Command[] }>(`/v1/gateways/${enc(id)}/commands?limit=10`),
      get<EventPage>(`/v1/gateways/${enc(id)}/events?limit=20`),
    ]);
    if (sensors.status === "fulfilled") {
      const nodes = buildTree(id, sensors.value);
      const children = sensors.value.filter((s) => s.id !== id);
      const on = children.filter((s) => healthOf(s) === "online").length;
      const down = children.filter((s) => healthOf(s) === "offline").length;
      const counts = PROBLEMS.filter((p) => p.key !== "down")
        .map((p) => [p.label, children.filter((s) => problemsOf(s).includes(p.key)).length] as const)
        .filter(([, n]) => n > 0)
        .map(([label, n]) => `, ${n} ${label}`)
        .join("");
      setBody(
        tree,
        nodes.length
          ? h("div", null, h("p", { class: "summary" }, `${children.length} devices: ${on} online, ${down} down, ${children.length - on - down} unknown${counts}.`), treeList(nodes, true))
          : empty("This gateway reports no child devices."),
      );
    } else setBody(tree, errorBox("devices", sensors.reason));
    if (stats.status === "fulfilled") {
      const s = stats.value;
      const rej = s.rejections.length
        ? tableWrap(
            "Rejections",
            h(
              "table",
              { class: "data" },
              h("thead", null, h("tr", null, ...["Reason", "Count", "Last error", "Last"].map((t) => h("th", { scope: "col" }, t)))),
              h("tbody", null, ...s.rejections.map((r) => h("tr", null, h("td", null, r.reason), h("td", { class: "num" }, fmtNumber(r.count)), h("td", { class: "small" }, r.lastError), h("td", null, timeEl(r.lastAt))))),
            ),
          )
        : empty("No rejected messages.");
      const gaps = s.gaps.length
        ? tableWrap(
            "Gaps",
            h(
              "table",
              { class: "data" },
              h("thead", null, h("tr", null, ...["Reported", "Dropped", "Seq range", "Boot"].map((t) => h("th", { scope: "col" }, t)))),
              h("tbody", null, ...s.gaps.map((g) => h("tr", null, h("td", null, timeEl(g.receivedAt)), h("td", { class: "num" }, fmtNumber(g.dropped)), h("td", null, `${g.firstSeq}–${g.lastSeq}`), h("td", { class: "mono small" }, g.boot)))),
            ),
          )
        : empty("No gaps: the agent has not dropped queued data.");
      setBody(ingest, h("p", null, `${fmtNumber(s.storedMessages)} messages stored.`), h("h3", null, "Rejections"), rej, h("h3", null, "Gaps"), gaps);
    } else setBody(ingest, errorBox("ingest statistics", stats.reason));
    const list = events(
      gw,
      stats.status === "fulfilled" ? stats.value : null,
      cmds.status === "fulfilled" ? cmds.value.commands : [],
      devEvents.status === "fulfilled" ? devEvents.value.events : [],
    );
    setBody(
      evs,
      list.length
        ? h("ol", { class: "events" }, ...list.map((e) => h("li", null, timeEl(e.at), " ", ...e.text)))
        : empty("No events yet."),
    );
    ctx.updated();
  });

  const chartPoll = ctx.poll(POLL_SECS * 2, async () => {
    const results = await Promise.allSettled(HOST_METRICS.map(([m]) => samples(id, m, range)));
    destroyers.forEach((d) => d());
    destroyers = [];
    const cards: Node[] = [];
    results.forEach((r, i) => {
      const [metric, title, unit] = HOST_METRICS[i] ?? ["", "", ""];
      if (r.status === "fulfilled") {
        const c = chartCard(title, r.value.samples, { unit, truncated: r.value.truncated });
        c.el.dataset.metric = metric;
        destroyers.push(c.destroy);
        cards.push(c.el);
      } else if (!(r.reason instanceof ApiError && r.reason.status === 404)) {
        cards.push(errorBox(title, r.reason));
      }
    });
    const any = results.some((r) => r.status === "fulfilled" && r.value.samples.length > 0);
    chartsBody.replaceChildren(...(cards.length ? cards : [empty("No metrics stored for this gateway yet.")]));
    if (!any && cards.length) chartsBody.prepend(empty("No samples in this range yet."));
  });
};
