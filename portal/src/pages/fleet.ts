import { h, badge, errorBox, loading, empty, tableWrap, link, fmtNumber } from "../dom";
import { get, enc, routeMissing, PROBLEMS, type Fleet, type FleetGateway, type Sensor } from "../api";
import { timeEl } from "../time";
import { POLL_SECS } from "../config";
import type { Page } from "../app";

/** A gateway needs attention: offline, unreachable children, dropped data, refused messages or backlog. */
export function hasProblem(g: FleetGateway): boolean {
  return (
    !isOnline(g) ||
    g.children.offline > 0 ||
    childProblems(g) > 0 ||
    g.gaps.dropped > 0 ||
    g.rejected > 0 ||
    (typeof g.backlog?.queueDepth === "number" && g.backlog.queueDepth > 100)
  );
}

/** Children with at least one problem counted, summed over the categories (a child may count twice). */
export function childProblems(g: FleetGateway): number {
  return Object.values(g.children.problems ?? {}).reduce((a, b) => a + b, 0);
}

export function isOnline(g: FleetGateway): boolean {
  return g.presence ? g.presence.online : g.status === "online";
}

/** The Worker may not offer /v1/fleet: build the same rows from the sensor list (without backlog). */
async function fleetFromSensors(): Promise<Fleet> {
  const sensors = await get<Sensor[]>("/v1/sensors");
  const gws = new Map<string, FleetGateway>();
  for (const s of sensors.filter((s) => s.parentSensorId === null)) {
    gws.set(s.id, {
      id: s.id,
      name: s.name,
      status: s.status,
      lastSeen: s.lastSeen,
      attrs: s.attrs,
      presence: null,
      backlog: null,
      gaps: { reports: 0, dropped: 0, lastAt: null },
      rejected: 0,
      openCommands: 0,
      children: { total: 0, online: 0, offline: 0, unknown: 0, byType: {} },
    });
  }
  for (const s of sensors) {
    const g = s.parentSensorId ? gws.get(s.parentSensorId) : undefined;
    if (!g) continue;
    g.children.total++;
    if (s.status === "online") g.children.online++;
    else if (s.status === "offline") g.children.offline++;
    else g.children.unknown++;
    g.children.byType[s.type] = (g.children.byType[s.type] ?? 0) + 1;
  }
  const list = [...gws.values()];
  return { count: list.length, online: list.filter(isOnline).length, gateways: list };
}

async function loadFleet(): Promise<Fleet> {
  try {
    return await get<Fleet>("/v1/fleet");
  } catch (e) {
    if (routeMissing(e)) return fleetFromSensors();
    throw e;
  }
}

const PAGE_ROWS = 100;

type SortKey = "id" | "status" | "lastSeen" | "backlog" | "problems";

export function filterFleet(list: FleetGateway[], q: string, status: string, problemsOnly: boolean, sort: SortKey): FleetGateway[] {
  const needle = q.trim().toLowerCase();
  const out = list.filter(
    (g) =>
      (!needle ||
        g.id.toLowerCase().includes(needle) ||
        (g.name ?? "").toLowerCase().includes(needle) ||
        Object.values(g.attrs ?? {}).some((v) => String(v).toLowerCase().includes(needle))) &&
      (!status || (status === "online" ? isOnline(g) : !isOnline(g))) &&
      (!problemsOnly || hasProblem(g)),
  );
  const score = (g: FleetGateway) => (isOnline(g) ? 0 : 1000) + g.children.offline + childProblems(g) + (g.gaps.dropped > 0 ? 10 : 0) + (g.rejected > 0 ? 5 : 0);
  const cmp: Record<SortKey, (a: FleetGateway, b: FleetGateway) => number> = {
    id: (a, b) => a.id.localeCompare(b.id),
    status: (a, b) => Number(isOnline(a)) - Number(isOnline(b)) || a.id.localeCompare(b.id),
    lastSeen: (a, b) => (b.lastSeen ?? 0) - (a.lastSeen ?? 0),
    backlog: (a, b) => (b.backlog?.queueDepth ?? -1) - (a.backlog?.queueDepth ?? -1),
    problems: (a, b) => score(b) - score(a) || a.id.localeCompare(b.id),
  };
  return out.sort(cmp[sort]);
}

function row(g: FleetGateway): HTMLTableRowElement {
  const online = isOnline(g);
  const c = g.children;
  return h(
    "tr",
    { class: hasProblem(g) ? "problem" : null },
    h("th", { scope: "row" }, link(`/gateways/${enc(g.id)}`, g.id), g.name && g.name !== g.id ? h("div", { class: "muted small" }, g.name) : null),
    h("td", null, badge(online ? "online" : "offline")),
    h("td", null, timeEl(g.lastSeen, true)),
    h("td", { class: "num" }, g.backlog ? fmtNumber(g.backlog.queueDepth) : "—"),
    h("td", { class: "num" }, g.gaps.dropped ? h("span", { class: "warn" }, `${fmtNumber(g.gaps.dropped)} in ${g.gaps.reports}`) : "0"),
    h("td", { class: "num" }, g.rejected ? h("span", { class: "warn" }, fmtNumber(g.rejected)) : "0"),
    h(
      "td",
      { class: "children" },
      c.total === 0
        ? h("span", { class: "muted" }, "none")
        : [
            h("span", { class: "ok" }, `${c.online} online`),
            c.offline ? [", ", h("span", { class: "warn" }, `${c.offline} down`)] : null,
            c.unknown ? `, ${c.unknown} unknown` : null,
            h("span", { class: "muted small" }, ` of ${c.total}`),
            ...PROBLEMS.filter((p) => p.key !== "down" && (c.problems?.[p.key] ?? 0) > 0).map((p) => [
              " ",
              h("span", { class: `badge badge-problem`, "data-problem": p.key }, `${c.problems?.[p.key]} ${p.label}`),
            ]),
          ],
    ),
    h("td", { class: "num" }, g.openCommands ? String(g.openCommands) : "0"),
    h("td", { class: "small" }, g.presence?.version ?? g.attrs?.agentVersion ?? "—"),
  );
}

export const fleetPage: Page = (root, ctx) => {
  ctx.setTitle("Fleet");
  const q = h("input", { id: "fleet-q", type: "search", name: "q", autocomplete: "off", value: ctx.query.get("q") ?? "" });
  const status = h(
    "select",
    { id: "fleet-status", name: "status" },
    h("option", { value: "" }, "All"),
    h("option", { value: "online" }, "Online"),
    h("option", { value: "offline" }, "Offline"),
  );
  const problems = h("input", { id: "fleet-problems", type: "checkbox", name: "problems" });
  const sort = h(
    "select",
    { id: "fleet-sort", name: "sort" },
    h("option", { value: "problems" }, "Problems first"),
    h("option", { value: "id" }, "Id"),
    h("option", { value: "status" }, "Offline first"),
    h("option", { value: "lastSeen" }, "Last seen"),
    h("option", { value: "backlog" }, "Backlog"),
  );
  const summary = h("p", { class: "summary", id: "fleet-summary" });
  const body = h("div", { id: "fleet-body" }, loading("the fleet"));
  root.append(
    h("h1", null, "Fleet"),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e: Event) => e.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "fleet-q" }, "Search"), q),
      h("div", { class: "field" }, h("label", { for: "fleet-status" }, "Status"), status),
      h("div", { class: "field" }, h("label", { for: "fleet-sort" }, "Sort"), sort),
      h("div", { class: "field check" }, problems, h("label", { for: "fleet-problems" }, " Needs attention only")),
    ),
    summary,
    body,
  );
  let data: Fleet | null = null;
  // Rows in the table at once: the full list is filtered and sorted, then shown a page at a time, which keeps
  // a 1,000-gateway fleet quick to lay out (problems sort first, so they are on the first page).
  let limit = PAGE_ROWS;
  const pager = h("div", { class: "actions pager" });
  const draw = () => {
    if (!data) return;
    const shown = filterFleet(data.gateways, q.value, status.value, problems.checked, sort.value as SortKey);
    const online = data.gateways.filter(isOnline).length;
    const attention = data.gateways.filter(hasProblem).length;
    const visible = shown.slice(0, limit);
    summary.textContent = `${data.gateways.length} gateways: ${online} online, ${data.gateways.length - online} offline, ${attention} need attention. Showing ${visible.length} of ${shown.length}.`;
    pager.replaceChildren();
    if (shown.length > visible.length) {
      pager.append(
        h("button", { type: "button", id: "fleet-more", onclick: () => ((limit += PAGE_ROWS), draw()) }, `Show ${Math.min(PAGE_ROWS, shown.length - visible.length)} more`),
        h("button", { type: "button", id: "fleet-all", onclick: () => ((limit = Infinity), draw()) }, `Show all ${shown.length}`),
      );
    }
    if (data.gateways.length === 0) {
      body.replaceChildren(empty("No gateways yet. A gateway appears here after its agent has sent its first inventory."));
      return;
    }
    if (shown.length === 0) {
      body.replaceChildren(empty("No gateway matches these filters."));
      return;
    }
    const table = h(
      "table",
      { class: "data fleet" },
      h("caption", { class: "sr-only" }, "Gateways"),
      h(
        "thead",
        null,
        h("tr", null, ...["Gateway", "Status", "Last seen", "Backlog", "Gaps (dropped)", "Rejected", "Children", "Open commands", "Agent"].map((t) => h("th", { scope: "col" }, t))),
      ),
      h("tbody", null, ...visible.map(row)),
    );
    body.replaceChildren(tableWrap("Gateways", table), pager);
  };
  for (const el of [q, status, problems, sort])
    el.addEventListener("input", () => {
      limit = PAGE_ROWS;
      draw();
    });
  const poller = ctx.poll(POLL_SECS, async () => {
    try {
      data = await loadFleet();
      draw();
      ctx.updated();
    } catch (e) {
      if (!data) body.replaceChildren(errorBox("the fleet", e, () => void poller.now()));
    }
  });
};
