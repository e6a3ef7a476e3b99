import { h, badge, errorBox, loading, empty, tableWrap, link, fmtBytes } from "../dom";
import { get, post, enc, apiUrl, ApiError, type Command, type Sensor } from "../api";
import { timeEl } from "../time";
import { COMMANDS, type CommandSpec } from "../command-registry.gen";
import { commandRunner, commandsForClass } from "../command-runner";
import { POLL_SECS } from "../config";
import type { Page } from "../app";

const PAGE = 25;

/** Commands a gateway itself can run (targets include "gateway"). */
export function gatewayCommands(): CommandSpec[] {
  return commandsForClass("gateway");
}

/** The gateway's commands page: the gateway's own commands first, then those for its cameras and NVRs. */
export function pageCommands(): CommandSpec[] {
  return [...gatewayCommands(), ...COMMANDS.filter((c) => !c.safety.targets.includes("gateway"))];
}

function historyTable(cmds: Command[]): HTMLElement {
  return tableWrap(
    "Command history",
    h(
      "table",
      { class: "data", id: "history" },
      h("thead", null, h("tr", null, ...["Command", "Target", "State", "Created", "Updated", "Requested by"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        null,
        ...cmds.map((c) =>
          h(
            "tr",
            { "data-command": c.id },
            h("th", { scope: "row" }, link(`/commands/${enc(c.id)}`, c.type), h("div", { class: "mono small muted" }, c.id)),
            h("td", { class: "mono small" }, c.target ? link(`/devices/${enc(c.target)}`, c.target) : "gateway"),
            h("td", null, badge(c.state), c.cancelRequested && !c.terminal ? h("span", { class: "small" }, " cancel requested") : null),
            h("td", null, timeEl(c.createdAt)),
            h("td", null, timeEl(c.updatedAt)),
            h("td", { class: "small" }, c.requestedBy),
          ),
        ),
      ),
    ),
  );
}

export const commandsPage: Page = (root, ctx) => {
  const gw = ctx.params.id ?? "";
  ctx.setTitle(`Commands · ${gw}`);
  let children: Sensor[] = [];
  const runner = commandRunner({
    gw,
    specs: pageCommands(),
    children: () => children,
    initialType: ctx.query.get("type"),
    onSent: (cmd) => ctx.navigate(`/commands/${enc(cmd.id)}`),
  });
  const histBody = h("div", null, loading("the command history"));
  const more = h("button", { type: "button", id: "history-older", hidden: true }, "Older commands");
  const hist = h("section", { class: "card", "aria-labelledby": "hist-h" }, h("h2", { id: "hist-h" }, "History"), histBody, more);
  root.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("/", "Fleet"), " / ", link(`/gateways/${enc(gw)}`, gw), " / Commands"),
    h("h1", null, "Commands for ", h("span", { class: "mono" }, gw)),
    h("div", { class: "grid" }, runner.el, hist),
  );
  // The picker lists the gateway's cameras and NVRs; a device adopted meanwhile shows on the next poll.
  ctx.poll(POLL_SECS * 6, async () => {
    try {
      const list = await get<Sensor[]>(`/v1/sensors?gatewayId=${enc(gw)}`);
      const changed = list.map((s) => s.id).join() !== children.map((s) => s.id).join();
      children = list;
      if (changed) runner.refreshTargets();
    } catch {
      // The picker keeps its last list; the history card reports API trouble.
    }
  });

  let older: Command[] = [];
  let newest: Command[] = [];
  const draw = () => {
    const all = [...newest, ...older.filter((o) => !newest.some((n) => n.id === o.id))];
    histBody.replaceChildren(all.length ? historyTable(all) : empty("No commands yet for this gateway."));
  };
  more.addEventListener("click", async () => {
    const last = [...newest, ...older].at(-1);
    if (!last) return;
    try {
      const r = await get<{ commands: Command[] }>(`/v1/gateways/${enc(gw)}/commands?limit=${PAGE}&before=${last.createdAt}`);
      older = older.concat(r.commands);
      more.hidden = r.commands.length < PAGE;
      draw();
    } catch (e) {
      histBody.append(errorBox("older commands", e));
    }
  });
  ctx.poll(POLL_SECS, async () => {
    try {
      const r = await get<{ commands: Command[] }>(`/v1/gateways/${enc(gw)}/commands?limit=${PAGE}`);
      newest = r.commands;
      if (!older.length) more.hidden = r.commands.length < PAGE;
      draw();
      ctx.updated();
    } catch (e) {
      histBody.replaceChildren(errorBox("the command history", e));
    }
  });
};

/** A flat object as a definition list, anything else as formatted JSON. */
export function resultView(v: unknown): HTMLElement {
  if (v === null || v === undefined) return empty("No result.");
  if (typeof v === "object" && !Array.isArray(v) && Object.values(v as object).every((x) => x === null || typeof x !== "object")) {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length) return h("dl", { class: "attrs result" }, ...entries.flatMap(([k, x]) => [h("dt", null, k), h("dd", null, String(x))]));
  }
  return h("pre", { class: "result", tabindex: 0, "aria-label": "Result (JSON)" }, JSON.stringify(v, null, 2));
}

export const commandPage: Page = (root, ctx) => {
  const id = ctx.params.id ?? "";
  ctx.setTitle(`Command ${id}`);
  const body = h("div", { id: "command" }, loading("the command"));
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("/", "Fleet"), " / ", id);
  root.append(crumbs, h("h1", null, "Command ", h("span", { class: "mono" }, id)), body);
  let done = false;
  const poller = ctx.poll(1, async () => {
    if (done) return;
    let c: Command;
    try {
      c = await get<Command>(`/v1/commands/${enc(id)}`);
    } catch (e) {
      body.replaceChildren(e instanceof ApiError && e.status === 404 ? empty(`No command ${id}.`) : errorBox("the command", e));
      return;
    }
    // Polled every second while it runs; a finished command no longer changes.
    done = c.terminal;
    crumbs.replaceChildren(link("/", "Fleet"), " / ", link(`/gateways/${enc(c.gatewayId)}`, c.gatewayId), " / ", link(`/gateways/${enc(c.gatewayId)}/commands`, "Commands"), ` / ${c.type}`);
    const cancel = !c.terminal
      ? h("button", {
          type: "button",
          id: "cmd-cancel",
          disabled: c.cancelRequested,
          onclick: async () => {
            try {
              await post(`/v1/commands/${enc(id)}/cancel`, {});
              void poller.now();
            } catch (e) {
              body.append(errorBox("the cancel request", e));
            }
          },
        }, c.cancelRequested ? "Cancel requested" : "Cancel command")
      : null;
    const arts = c.artifacts ?? [];
    body.replaceChildren(
      h(
        "section",
        { class: "card", "aria-labelledby": "c-state-h" },
        h("h2", { id: "c-state-h" }, "State"),
        h(
          "dl",
          { class: "attrs" },
          h("dt", null, "Type"),
          h("dd", null, c.type),
          h("dt", null, "State"),
          h("dd", { id: "cmd-state" }, badge(c.state), c.terminal ? "" : h("span", { class: "small muted" }, " (live)")),
          h("dt", null, "Gateway"),
          h("dd", null, link(`/gateways/${enc(c.gatewayId)}`, c.gatewayId)),
          h("dt", null, "Target"),
          h("dd", { id: "cmd-target-id" }, c.target ? link(`/devices/${enc(c.target)}`, c.target) : "the gateway"),
          h("dt", null, "Requested by"),
          h("dd", null, c.requestedBy),
          h("dt", null, "Created"),
          h("dd", null, timeEl(c.createdAt)),
          h("dt", null, "Expires"),
          h("dd", null, timeEl(c.expiresAt)),
          h("dt", null, "Deliveries"),
          h("dd", null, String(c.deliveries)),
          h("dt", null, "Parameters"),
          h("dd", null, h("code", null, JSON.stringify(c.params))),
        ),
        cancel,
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "c-result-h", id: "cmd-result" },
        h("h2", { id: "c-result-h" }, "Result"),
        c.error ? h("p", { class: "form-error" }, c.error) : null,
        c.terminal || c.result !== null ? resultView(c.result) : h("p", { class: "state loading", role: "status" }, `Waiting for the gateway (${c.state})…`),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "c-art-h" },
        h("h2", { id: "c-art-h" }, "Artifacts"),
        arts.length
          ? h(
              "ul",
              { class: "artifacts" },
              ...arts.map((a) =>
                h(
                  "li",
                  null,
                  a.contentType.startsWith("image/") && a.url ? h("img", { src: apiUrl(a.url), alt: `${a.name} (artifact of ${c.type})`, class: "artifact-img" }) : null,
                  a.url ? h("a", { href: apiUrl(a.url), download: a.name, rel: "noopener" }, a.name) : a.name,
                  h("span", { class: "small muted" }, ` ${a.contentType}, ${fmtBytes(a.size)}, sha256 ${a.sha256.slice(0, 12)}…`),
                ),
              ),
            )
          : empty(c.terminal ? "No artifacts." : "None yet."),
      ),
      h(
        "section",
        { class: "card wide", "aria-labelledby": "c-audit-h" },
        h("h2", { id: "c-audit-h" }, "Audit trail"),
        c.audit?.length
          ? tableWrap(
              "Audit trail",
              h(
                "table",
                { class: "data", id: "audit" },
                h("thead", null, h("tr", null, ...["When", "Who", "From", "To", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
                h("tbody", null, ...c.audit.map((a) => h("tr", null, h("td", null, timeEl(a.at)), h("td", null, a.actor), h("td", null, a.from ?? "—"), h("td", null, badge(a.to)), h("td", { class: "small" }, a.detail ?? "")))),
              ),
            )
          : empty("No audit entries."),
      ),
    );
    ctx.updated();
  });
};
