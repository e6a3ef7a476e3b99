import { h, badge, errorBox, loading, empty, tableWrap, link, fmtNumber } from "../dom";
import { get, enc, ApiError, apiUrl, problemLabel, type Sensor, type Command, type Sample, type EventPage } from "../api";
import { timeEl } from "../time";
import { chartCard } from "../chart";
import { rangeSelect, samples, latestBy } from "../metrics";
import { attrsTable, eventText, isBadEvent } from "./gateway";
import { POLL_SECS } from "../config";
import { commandRunner, commandsForClass, targetClass, type Runner } from "../command-runner";
import type { Page } from "../app";

/** Commands aimed at this device (their target, or a parameter naming it), newest first. */
export function commandsForDevice(cmds: Command[], deviceId: string): Command[] {
  return cmds.filter((c) => c.target === deviceId || Object.values(c.params ?? {}).some((v) => v === deviceId));
}

/** The newest image artifact among the commands, for the inline snapshot. */
export function latestImage(cmds: Command[]): { cmd: Command; url: string; name: string } | null {
  for (const c of [...cmds].sort((a, b) => b.updatedAt - a.updatedAt)) {
    for (const a of c.artifacts ?? []) {
      if (a.contentType.startsWith("image/") && a.url) return { cmd: c, url: apiUrl(a.url), name: a.name };
    }
  }
  return null;
}

/** The newest succeeded command that produced (or, by its registry entry, produces) an image. */
export function imageCandidate(cmds: Command[]): Command | null {
  const isImage = (c: Command) =>
    c.state === "succeeded" && ((c.artifacts ?? []).some((a) => a.contentType.startsWith("image/")) || c.type === "camera.snapshot");
  return [...cmds].sort((a, b) => b.updatedAt - a.updatedAt).find(isImage) ?? null;
}

/** Bytes as GB with one decimal (disks are sold in decimal units). */
function gb(v: number | null | undefined): string {
  return typeof v === "number" ? `${fmtNumber(v / 1e9, 1)} GB` : "—";
}

/** NVR tables from the latest samples: HDDs (nvr.hdd_ok, capacity, free, used % per disk label) and
 * channels (nvr.channel_online, nvr.recording per channel label). */
export function nvrTables(latest: Map<string, Sample>): HTMLElement[] {
  const out: HTMLElement[] = [];
  const byLabel = (names: string[]) => {
    const m = new Map<string, Map<string, Sample>>();
    for (const s of latest.values()) {
      if (!names.includes(s.name)) continue;
      const l = s.label ?? "";
      if (!m.has(l)) m.set(l, new Map());
      m.get(l)?.set(s.name, s);
    }
    return [...m.entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }));
  };
  const disks = byLabel(["nvr.hdd_ok", "nvr.hdd_capacity_bytes", "nvr.hdd_free_bytes", "nvr.disk_used_pct"]);
  if (disks.length) {
    out.push(
      h("h3", null, "Disks"),
      tableWrap(
        "NVR disks",
        h(
          "table",
          { class: "data", "data-table": "hdd" },
          h("thead", null, h("tr", null, ...["Disk", "Status", "Capacity", "Free", "Used", "Reported"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            null,
            ...disks.map(([label, m]) => {
              const ok = m.get("nvr.hdd_ok");
              const used = m.get("nvr.disk_used_pct");
              const ts = Math.max(...[...m.values()].map((x) => x.ts));
              return h(
                "tr",
                null,
                h("td", null, label || "disk"),
                h("td", null, ok ? badge(ok.value ? "ok" : "failed", ok.value ? "online" : "offline") : "—"),
                h("td", { class: "num" }, gb(m.get("nvr.hdd_capacity_bytes")?.value)),
                h("td", { class: "num" }, gb(m.get("nvr.hdd_free_bytes")?.value)),
                h("td", { class: "num" }, used ? `${fmtNumber(used.value)} %` : "—"),
                h("td", null, timeEl(ts)),
              );
            }),
          ),
        ),
      ),
    );
  }
  const chans = byLabel(["nvr.channel_online", "nvr.recording"]);
  if (chans.length) {
    out.push(
      h("h3", null, "Channels"),
      tableWrap(
        "NVR channels",
        h(
          "table",
          { class: "data", "data-table": "channels" },
          h("thead", null, h("tr", null, ...["Channel", "Camera", "Recording", "Reported"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            null,
            ...chans.map(([label, m]) => {
              const on = m.get("nvr.channel_online");
              const rec = m.get("nvr.recording");
              const ts = Math.max(...[...m.values()].map((x) => x.ts));
              return h(
                "tr",
                null,
                h("td", null, label || "channel"),
                h("td", null, on ? badge(on.value ? "online" : "offline") : "—"),
                h("td", null, rec ? badge(rec.value ? "recording" : "not recording", rec.value ? "online" : "offline") : "—"),
                h("td", null, timeEl(ts)),
              );
            }),
          ),
        ),
      ),
    );
  }
  return out;
}

export const devicePage: Page = (root, ctx) => {
  const id = ctx.params.id ?? "";
  ctx.setTitle(`Device ${id}`);
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("/", "Fleet"), " / ", id);
  const info = h("section", { class: "card", "aria-labelledby": "dev-info-h" }, h("h2", { id: "dev-info-h" }, "Identity"), loading("the device"));
  let range = 3600;
  const chartsBody = h("div", { class: "charts" }, loading("metrics"));
  const charts = h(
    "section",
    { class: "card wide", "aria-labelledby": "dev-charts-h" },
    h("div", { class: "section-head" }, h("h2", { id: "dev-charts-h" }, "Health and metrics"), rangeSelect("dev-range", range, (s) => ((range = s), void poller.now()))),
    chartsBody,
  );
  const tables = h("section", { class: "card", "aria-labelledby": "dev-tables-h" }, h("h2", { id: "dev-tables-h" }, "Latest values"), loading("latest values"));
  const snap = h("section", { class: "card", "aria-labelledby": "dev-snap-h" }, h("h2", { id: "dev-snap-h" }, "Snapshot and commands"), loading("commands"));
  const evs = h("section", { class: "card", "aria-labelledby": "dev-events-h" }, h("h2", { id: "dev-events-h" }, "Events"), loading("events"));
  root.append(crumbs, h("h1", null, "Device ", h("span", { class: "mono" }, id)), h("div", { class: "grid" }, info, charts, tables, snap, evs));
  const setBody = (sec: HTMLElement, ...nodes: Node[]) => {
    const title = sec.querySelector(".section-head") ?? sec.querySelector("h2");
    sec.replaceChildren(...(title ? [title] : []), ...nodes);
  };
  let destroyers: (() => void)[] = [];
  let left = false;
  ctx.onLeave(() => {
    left = true;
    destroyers.forEach((d) => d());
  });
  let runner: Runner | null = null;
  // The command list carries no artifact download URLs: the newest finished image command is read in
  // full, once, and again only when its tokenized URLs expire.
  const full = new Map<string, Command>();
  const snapshotOf = async (mine: Command[]) => {
    const c = imageCandidate(mine);
    if (!c) return null;
    let got = full.get(c.id);
    const expired = (got?.artifacts ?? []).some((a) => typeof a.urlExpires === "number" && a.urlExpires < Date.now() + 30_000);
    if (!got || expired) {
      try {
        got = await get<Command>(`/v1/commands/${enc(c.id)}`);
        full.set(c.id, got);
      } catch {
        return latestImage(mine);
      }
    }
    return latestImage([got]);
  };
  /** Follows a command sent from this page until it finishes, then redraws (a snapshot shows inline). */
  const follow = async (cmd: Command) => {
    const say = (c: Command) =>
      runner?.status.replaceChildren(link(`/commands/${enc(c.id)}`, c.type), " ", badge(c.state), c.error ? ` ${c.error}` : "");
    say(cmd);
    let c = cmd;
    while (!c.terminal && !left) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        c = await get<Command>(`/v1/commands/${enc(cmd.id)}`);
      } catch {
        continue;
      }
      if (!left) say(c);
    }
    if (!left) void poller.now();
  };

  const poller = ctx.poll(POLL_SECS * 2, async () => {
    let dev: Sensor;
    try {
      dev = await get<Sensor>(`/v1/sensors/${enc(id)}`);
    } catch (e) {
      setBody(info, e instanceof ApiError && e.status === 404 ? empty(`No device ${id} is known.`) : errorBox("the device", e));
      return;
    }
    if (dev.parentSensorId === null && dev.gatewayId === dev.id) {
      ctx.navigate(`/gateways/${enc(id)}`);
      return;
    }
    crumbs.replaceChildren(link("/", "Fleet"), " / ", link(`/gateways/${enc(dev.gatewayId)}`, dev.gatewayId), " / ", id);
    setBody(
      info,
      h(
        "dl",
        { class: "attrs" },
        h("dt", null, "Status"),
        h("dd", { id: "dev-health" }, badge(dev.status)),
        h("dt", null, "Last seen"),
        h("dd", null, timeEl(dev.lastSeen)),
        h("dt", null, "Name"),
        h("dd", null, dev.name ?? "—"),
        h("dt", null, "Type"),
        h("dd", null, dev.type),
        h("dt", null, "Parent"),
        h("dd", null, dev.parentSensorId ? link(dev.parentSensorId === dev.gatewayId ? `/gateways/${enc(dev.parentSensorId)}` : `/devices/${enc(dev.parentSensorId)}`, dev.parentSensorId) : "—"),
      ),
      h("h3", null, "Attributes"),
      attrsTable(dev.attrs, "Device attributes"),
    );
    const [m, cmds, devEvents] = await Promise.allSettled([
      samples(id, null, range),
      get<{ commands: Command[] }>(`/v1/gateways/${enc(dev.gatewayId)}/commands?limit=100`),
      get<EventPage>(`/v1/sensors/${enc(id)}/events?limit=50`),
    ]);
    if (devEvents.status === "fulfilled") {
      const list = devEvents.value.events;
      setBody(
        evs,
        list.length
          ? h(
              "ol",
              { class: "events" },
              ...list.map((e) => h("li", null, timeEl(e.ts), " ", h("span", { class: isBadEvent(e.kind) ? "warn" : "ok", "data-kind": e.kind }, eventText(e)))),
            )
          : empty("No events reported for this device."),
      );
    } else setBody(evs, errorBox("events", devEvents.reason));
    destroyers.forEach((d) => d());
    destroyers = [];
    if (m.status === "fulfilled") {
      const byName = new Map<string, Sample[]>();
      for (const s of m.value.samples) {
        let l = byName.get(s.name);
        if (!l) byName.set(s.name, (l = []));
        l.push(s);
      }
      // Health first: reachability, then the rest by name.
      const names = [...byName.keys()].sort((a, b) => Number(b === "device.online") - Number(a === "device.online") || a.localeCompare(b));
      const cards = names.map((n) => {
        const c = chartCard(n === "device.online" ? "Online (1) / offline (0)" : n, byName.get(n) ?? [], { truncated: m.value.truncated });
        c.el.dataset.metric = n;
        destroyers.push(c.destroy);
        return c.el;
      });
      chartsBody.replaceChildren(...(cards.length ? cards : [empty("No metrics stored for this device in this range.")]));
      const latest = latestBy(m.value.samples);
      const probe = latest.get("device.online\u0000");
      if (probe) {
        const extra: (Node | string)[] = [];
        const auth = latest.get("device.auth_ok\u0000");
        if (auth && !auth.value) extra.push(h("span", { class: "badge badge-problem", "data-problem": "auth_broken" }, problemLabel("auth_broken")), " ");
        const lost = [...latest.values()].filter((s) => s.name === "camera.stream_ok" && !s.value);
        if (lost.length) extra.push(h("span", { class: "badge badge-problem", "data-problem": "stream_lost" }, problemLabel("stream_lost")), " ");
        const hdd = [...latest.values()].filter((s) => s.name === "nvr.hdd_ok" && !s.value);
        if (hdd.length) extra.push(h("span", { class: "badge badge-problem", "data-problem": "hdd_failed" }, problemLabel("hdd_failed")), " ");
        const clock = latest.get("device.clock_offset_s\u0000");
        if (clock && typeof clock.value === "number" && Math.abs(clock.value) > 30)
          extra.push(h("span", { class: "badge badge-problem", "data-problem": "clock_drift" }, `${problemLabel("clock_drift")} ${fmtNumber(clock.value, 0)} s`), " ");
        document.getElementById("dev-health")?.replaceChildren(badge(probe.value ? "online" : "offline"), " ", ...extra, "probed ", timeEl(probe.ts, true));
      }
      const nvr = nvrTables(latest);
      const list = [...latest.values()].sort((a, b) => a.name.localeCompare(b.name) || (a.label ?? "").localeCompare(b.label ?? ""));
      setBody(
        tables,
        ...nvr,
        list.length
          ? tableWrap(
              "Latest values",
              h(
                "table",
                { class: "data" },
                h("thead", null, h("tr", null, ...["Metric", "Label", "Value", "At"].map((t) => h("th", { scope: "col" }, t)))),
                h("tbody", null, ...list.map((s) => h("tr", null, h("td", null, s.name), h("td", null, s.label ?? ""), h("td", { class: "num" }, fmtNumber(s.value, 2)), h("td", null, timeEl(s.ts))))),
              ),
            )
          : empty("No values in this range."),
      );
    } else {
      chartsBody.replaceChildren(errorBox("metrics", m.reason));
      setBody(tables, errorBox("latest values", m.reason));
    }
    const cls = targetClass(dev.type);
    const targeting = cls === "gateway" ? [] : commandsForClass(cls);
    if (!runner && targeting.length) {
      runner = commandRunner({ gw: dev.gatewayId, specs: targeting, device: { id, name: dev.name, type: dev.type }, initialType: ctx.query.get("type"), onSent: (c) => void follow(c) });
      snap.after(runner.el);
    }
    const nodes: Node[] = [];
    if (cmds.status === "fulfilled") {
      const mine = commandsForDevice(cmds.value.commands, id);
      const img = await snapshotOf(mine);
      nodes.push(
        img
          ? h("figure", { class: "snapshot" }, h("img", { src: img.url, alt: `Latest snapshot of ${dev.name ?? id}` }), h("figcaption", null, `${img.name}, `, timeEl(img.cmd.updatedAt)))
          : empty("No snapshot image for this device."),
      );
      if (mine.length)
        nodes.push(h("h3", null, "Commands for this device"), h("ul", null, ...mine.slice(0, 10).map((c) => h("li", null, link(`/commands/${enc(c.id)}`, c.type), " ", badge(c.state), " ", timeEl(c.createdAt)))));
    } else nodes.push(errorBox("commands", cmds.reason));
    nodes.push(
      targeting.length
        ? h("p", { class: "small" }, "History of every command: the ", link(`/gateways/${enc(dev.gatewayId)}/commands`, "gateway's commands page"), ".")
        : h("p", { class: "muted" }, `No command in the registry targets ${dev.type} devices; gateway commands are on the `, link(`/gateways/${enc(dev.gatewayId)}/commands`, "gateway's commands page"), "."),
    );
    setBody(snap, ...nodes);
    ctx.updated();
  });
};
