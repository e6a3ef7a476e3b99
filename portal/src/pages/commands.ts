import { h, badge, errorBox, loading, empty, tableWrap, link, fmtBytes } from "../dom";
import { get, post, enc, apiUrl, ApiError, type Command } from "../api";
import { timeEl } from "../time";
import { buildForm } from "../form";
import { COMMANDS, type CommandSpec } from "../command-registry.gen";
import { POLL_SECS } from "../config";
import type { Page } from "../app";

const PAGE = 25;

/** Commands a gateway itself can run (targets include "gateway"). */
export function gatewayCommands(): CommandSpec[] {
  return COMMANDS.filter((c) => c.safety.targets.includes("gateway"));
}

export function needsConfirmation(spec: CommandSpec): boolean {
  return spec.safety.requiresConfirmation || spec.safety.destructive;
}

function historyTable(cmds: Command[]): HTMLElement {
  return tableWrap(
    "Command history",
    h(
      "table",
      { class: "data", id: "history" },
      h("thead", null, h("tr", null, ...["Command", "State", "Created", "Updated", "Requested by"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        null,
        ...cmds.map((c) =>
          h(
            "tr",
            { "data-command": c.id },
            h("th", { scope: "row" }, link(`/commands/${enc(c.id)}`, c.type), h("div", { class: "mono small muted" }, c.id)),
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
  const specs = gatewayCommands();
  const select = h(
    "select",
    { id: "cmd-type", name: "type" },
    ...specs.map((c) => h("option", { value: c.type }, `${c.title} (${c.type})${needsConfirmation(c) ? " — needs confirmation" : ""}`)),
  );
  const wanted = ctx.query.get("type");
  if (wanted && specs.some((s) => s.type === wanted)) select.value = wanted;
  const formBox = h("div", { id: "cmd-form" });
  const confirmBox = h("div", { id: "cmd-confirm" });
  const status = h("p", { id: "cmd-status", role: "status", class: "muted" });
  const run = h(
    "section",
    { class: "card", "aria-labelledby": "run-h" },
    h("h2", { id: "run-h" }, "Run a command"),
    h("div", { class: "field" }, h("label", { for: "cmd-type" }, "Command"), select),
    formBox,
    confirmBox,
    status,
  );
  const histBody = h("div", null, loading("the command history"));
  const more = h("button", { type: "button", id: "history-older", hidden: true }, "Older commands");
  const hist = h("section", { class: "card", "aria-labelledby": "hist-h" }, h("h2", { id: "hist-h" }, "History"), histBody, more);
  root.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("/", "Fleet"), " / ", link(`/gateways/${enc(gw)}`, gw), " / Commands"),
    h("h1", null, "Commands for ", h("span", { class: "mono" }, gw)),
    h("div", { class: "grid" }, run, hist),
  );

  const send = async (spec: CommandSpec, params: Record<string, unknown>, confirm: boolean, form: ReturnType<typeof buildForm>) => {
    status.textContent = `Sending ${spec.type}…`;
    try {
      const cmd = await post<Command>(`/v1/gateways/${enc(gw)}/commands`, { type: spec.type, params, confirm });
      ctx.navigate(`/commands/${enc(cmd.id)}`);
    } catch (e) {
      status.textContent = "";
      if (e instanceof ApiError && e.body) {
        form.showServerError({ field: typeof e.body.field === "string" ? e.body.field : undefined, message: e.message });
      } else {
        form.showServerError({ message: e instanceof Error ? e.message : String(e) });
      }
    }
  };

  const showForm = () => {
    const spec = specs.find((s) => s.type === select.value);
    confirmBox.replaceChildren();
    status.textContent = "";
    if (!spec) {
      formBox.replaceChildren(empty("No commands in the registry."));
      return;
    }
    const built = buildForm(spec, "p", needsConfirmation(spec) ? "Review…" : "Run");
    const meta = h(
      "p",
      { class: "small muted" },
      `${spec.operation} · ${spec.path} · timeout ${spec.timeoutSecs} s`,
      spec.safety.destructive ? [" · ", h("strong", { class: "warn" }, "destructive")] : null,
      spec.artifact ? " · uploads an artifact" : null,
    );
    built.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const params = built.read();
      if (!params) return;
      if (!needsConfirmation(spec)) {
        void send(spec, params, false, built);
        return;
      }
      // A separate step that names the gateway; nothing is sent until it is confirmed.
      const typed = h("input", { id: "confirm-id", name: "confirm-id", type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": "confirm-text" });
      const ok = h("button", { type: "button", class: "danger", id: "confirm-send", disabled: true }, `${spec.title} on ${gw}`);
      const cancel = h("button", { type: "button", id: "confirm-cancel" }, "Cancel");
      typed.addEventListener("input", () => (ok.disabled = typed.value.trim() !== gw));
      ok.addEventListener("click", () => {
        if (typed.value.trim() !== gw) return;
        confirmBox.replaceChildren();
        void send(spec, params, true, built);
      });
      cancel.addEventListener("click", () => {
        confirmBox.replaceChildren();
        status.textContent = "Not sent.";
        select.focus();
      });
      confirmBox.replaceChildren(
        h(
          "div",
          { class: "confirm", role: "alertdialog", "aria-labelledby": "confirm-h", "aria-describedby": "confirm-text" },
          h("h3", { id: "confirm-h" }, `Confirm: ${spec.title}`),
          h(
            "p",
            { id: "confirm-text" },
            `This ${spec.safety.destructive ? "destructive " : ""}command will run on gateway `,
            h("strong", { class: "mono" }, gw),
            `: ${spec.description} Type the gateway id to confirm.`,
          ),
          h("div", { class: "field" }, h("label", { for: "confirm-id" }, `Gateway id (${gw})`), typed),
          h("div", { class: "actions" }, ok, cancel),
        ),
      );
      typed.focus();
    });
    formBox.replaceChildren(meta, built.form);
  };
  select.addEventListener("change", showForm);
  showForm();

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
