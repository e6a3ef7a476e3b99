// The "run a command" card shared by the gateway's commands page and a camera/NVR page: which registry
// commands apply to which device class (pure, unit tested), the target picker, the generated form, and the
// separate confirmation step that names the machine the command acts on.
import { h, empty } from "./dom";
import { post, enc, ApiError, type Command, type Sensor } from "./api";
import { buildForm, type BuiltForm } from "./form";
import { COMMANDS, type CommandSpec } from "./command-registry.gen";

/** The registry's target class of a sensor type ("CAMERA" -> "camera"); null when no command can target it. */
export function targetClass(sensorType: string): string | null {
  const t = sensorType.toLowerCase();
  return t === "gateway" || t === "camera" || t === "nvr" ? t : null;
}

/** Registry commands whose targets include the class. */
export function commandsForClass(cls: string | null): CommandSpec[] {
  return cls ? COMMANDS.filter((c) => c.safety.targets.includes(cls)) : [];
}

export function needsConfirmation(spec: CommandSpec): boolean {
  return spec.safety.requiresConfirmation || spec.safety.destructive;
}

/** One entry of the target picker: "" is the gateway itself. */
export interface TargetChoice {
  id: string;
  label: string;
}

/** Where a command can run from the gateway's page: the gateway itself when the command targets gateways,
 * then each child of a class it targets (by id). */
export function targetChoices(spec: CommandSpec, gw: string, children: readonly Sensor[]): TargetChoice[] {
  const out: TargetChoice[] = [];
  if (spec.safety.targets.includes("gateway")) out.push({ id: "", label: `The gateway (${gw})` });
  const fit = children
    .filter((s) => s.id !== gw && s.gatewayId === gw)
    .filter((s) => {
      const cls = targetClass(s.type);
      return cls !== null && cls !== "gateway" && spec.safety.targets.includes(cls);
    })
    .sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
  for (const s of fit) out.push({ id: s.id, label: `${s.name ? `${s.name} — ` : ""}${s.id} (${s.type})` });
  return out;
}

/** The POST body: `target` only when the command acts on a child device. */
export function commandBody(spec: CommandSpec, params: Record<string, unknown>, confirm: boolean, target: string | null): Record<string, unknown> {
  const body: Record<string, unknown> = { type: spec.type, params, confirm };
  if (target) body.target = target;
  return body;
}

export interface RunnerOpts {
  gw: string;
  specs: CommandSpec[];
  /** A device page: the command always acts on this device. Absent: a picker (gateway or a child). */
  device?: { id: string; name: string | null; type: string };
  /** The gateway's children, for the picker. */
  children?: () => readonly Sensor[];
  initialType?: string | null;
  onSent(cmd: Command): void;
}

export interface Runner {
  el: HTMLElement;
  /** Redraws the target picker (the children arrived or changed). */
  refreshTargets(): void;
  status: HTMLElement;
}

export function commandRunner(o: RunnerOpts): Runner {
  const { gw, specs } = o;
  const select = h(
    "select",
    { id: "cmd-type", name: "type" },
    ...specs.map((c) => h("option", { value: c.type }, `${c.title} (${c.type})${needsConfirmation(c) ? " — needs confirmation" : ""}`)),
  );
  if (o.initialType && specs.some((s) => s.type === o.initialType)) select.value = o.initialType;
  const targetSel = h("select", { id: "cmd-target", name: "target" });
  const targetField = h("div", { class: "field" }, h("label", { for: "cmd-target" }, "Target"), targetSel);
  const formBox = h("div", { id: "cmd-form" });
  const confirmBox = h("div", { id: "cmd-confirm" });
  const status = h("p", { id: "cmd-status", role: "status", class: "muted" });
  const el = h(
    "section",
    { class: "card", "aria-labelledby": "run-h" },
    h("h2", { id: "run-h" }, o.device ? "Run a command on this device" : "Run a command"),
    h("div", { class: "field" }, h("label", { for: "cmd-type" }, "Command"), select),
    o.device ? null : targetField,
    formBox,
    confirmBox,
    status,
  );
  const current = () => specs.find((s) => s.type === select.value);

  const refreshTargets = () => {
    if (o.device) return;
    const spec = current();
    const choices = spec ? targetChoices(spec, gw, o.children?.() ?? []) : [];
    const was = targetSel.value;
    targetSel.replaceChildren(...choices.map((c) => h("option", { value: c.id }, c.label)));
    if (choices.some((c) => c.id === was)) targetSel.value = was;
    targetSel.disabled = choices.length === 0;
    if (!choices.length) targetSel.append(h("option", { value: "" }, `No device on ${gw} takes this command`));
  };

  /** The machine the command acts on: [id to type when confirming, what to call it]. */
  const targetOf = (): { id: string; kind: string; target: string | null } => {
    if (o.device) return { id: o.device.id, kind: o.device.type.toLowerCase() === "nvr" ? "NVR" : o.device.type.toLowerCase(), target: o.device.id };
    const t = targetSel.value;
    if (!t) return { id: gw, kind: "gateway", target: null };
    const s = o.children?.().find((c) => c.id === t);
    return { id: t, kind: s && s.type.toLowerCase() === "nvr" ? "NVR" : (s?.type.toLowerCase() ?? "device"), target: t };
  };

  const send = async (spec: CommandSpec, params: Record<string, unknown>, confirm: boolean, target: string | null, form: BuiltForm) => {
    status.textContent = `Sending ${spec.type}…`;
    try {
      const cmd = await post<Command>(`/v1/gateways/${enc(gw)}/commands`, commandBody(spec, params, confirm, target));
      o.onSent(cmd);
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
    const spec = current();
    confirmBox.replaceChildren();
    status.textContent = "";
    refreshTargets();
    if (!spec) {
      formBox.replaceChildren(empty("No commands in the registry."));
      return;
    }
    const built = buildForm(spec, "p", needsConfirmation(spec) ? "Review…" : "Run");
    const meta = h(
      "p",
      { class: "small muted" },
      `${spec.operation} · ${spec.path} · timeout ${spec.timeoutSecs} s · targets ${spec.safety.targets.join(", ")}`,
      spec.safety.destructive ? [" · ", h("strong", { class: "warn" }, "destructive")] : null,
      spec.artifact ? " · uploads an artifact" : null,
    );
    built.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const params = built.read();
      if (!params) return;
      if (!o.device && targetSel.disabled) {
        built.showServerError({ message: `No device on ${gw} takes ${spec.type}.` });
        return;
      }
      const t = targetOf();
      if (!needsConfirmation(spec)) {
        void send(spec, params, false, t.target, built);
        return;
      }
      // A separate step that names the machine; nothing is sent until it is confirmed.
      const typed = h("input", { id: "confirm-id", name: "confirm-id", type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": "confirm-text" });
      const ok = h("button", { type: "button", class: "danger", id: "confirm-send", disabled: true }, `${spec.title} on ${t.id}`);
      const cancel = h("button", { type: "button", id: "confirm-cancel" }, "Cancel");
      typed.addEventListener("input", () => (ok.disabled = typed.value.trim() !== t.id));
      ok.addEventListener("click", () => {
        if (typed.value.trim() !== t.id) return;
        confirmBox.replaceChildren();
        void send(spec, params, true, t.target, built);
      });
      cancel.addEventListener("click", () => {
        confirmBox.replaceChildren();
        status.textContent = "Not sent.";
        select.focus();
      });
      const via = t.target ? ` through gateway ${gw}` : "";
      confirmBox.replaceChildren(
        h(
          "div",
          { class: "confirm", role: "alertdialog", "aria-labelledby": "confirm-h", "aria-describedby": "confirm-text" },
          h("h3", { id: "confirm-h" }, `Confirm: ${spec.title}`),
          h(
            "p",
            { id: "confirm-text" },
            `This ${spec.safety.destructive ? "destructive " : ""}command will run on ${t.kind} `,
            h("strong", { class: "mono" }, t.id),
            `${via}: ${spec.description} Type the ${t.kind === "gateway" ? "gateway" : "device"} id to confirm.`,
          ),
          h("div", { class: "field" }, h("label", { for: "confirm-id" }, `${t.kind === "gateway" ? "Gateway" : "Device"} id (${t.id})`), typed),
          h("div", { class: "actions" }, ok, cancel),
        ),
      );
      typed.focus();
    });
    formBox.replaceChildren(meta, built.form);
  };
  select.addEventListener("change", showForm);
  targetSel.addEventListener("change", () => confirmBox.replaceChildren());
  showForm();
  return { el, refreshTargets, status };
}
