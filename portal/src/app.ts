// Routing, layout and live polling shared by the pages.
import { h } from "./dom";
import { clearToken, getToken } from "./auth";
import { setAuthErrorHandler } from "./api";
import { localText, utcText } from "./time";

export interface Ctx {
  params: Record<string, string>;
  query: URLSearchParams;
  /** Runs `f` now and every `secs` while this page is shown and the tab is visible (live updates). */
  poll(secs: number, f: () => Promise<void>): { now(): Promise<void> };
  /** Runs when the page is left. */
  onLeave(f: () => void): void;
  navigate(path: string): void;
  setTitle(t: string): void;
  /** Marks data as freshly loaded (the "updated" indicator). */
  updated(): void;
}

export type Page = (root: HTMLElement, ctx: Ctx) => void;

interface Route {
  re: RegExp;
  keys: string[];
  page: Page;
  public?: boolean;
}

const routes: Route[] = [];
export function route(pattern: string, page: Page, isPublic = false): void {
  const keys: string[] = [];
  const re = new RegExp(
    "^" + pattern.replace(/:([a-zA-Z]+)/g, (_, k: string) => (keys.push(k), "([^/]+)")) + "/?$",
  );
  routes.push({ re, keys, page, public: isPublic });
}

let leaveHandlers: (() => void)[] = [];
let loginMessage = "";

export function takeLoginMessage(): string {
  const m = loginMessage;
  loginMessage = "";
  return m;
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

/** Back to the login form with a message (401, sign-out). */
export function toLogin(message: string): void {
  clearToken();
  loginMessage = message;
  const back = location.pathname === "/login" ? "" : `?next=${encodeURIComponent(location.pathname + location.search)}`;
  navigate(`/login${back}`, true);
}

const main = () => document.getElementById("main") as HTMLElement;
const statusLine = () => document.getElementById("live") as HTMLElement;

function layout(): void {
  const app = document.getElementById("app") as HTMLElement;
  app.replaceChildren(
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h(
      "header",
      { class: "top" },
      h("a", { href: "/", "data-link": "", class: "brand" }, "SCS Portal"),
      h("nav", { "aria-label": "Main" }, h("a", { href: "/", "data-link": "" }, "Fleet")),
      h("span", { id: "live", class: "live muted" }),
      h("button", { type: "button", id: "signout", class: "link-button", onclick: () => toLogin("Signed out.") }, "Sign out"),
    ),
    h("main", { id: "main", tabindex: -1 }),
  );
}

function setSignedIn(on: boolean): void {
  const b = document.getElementById("signout");
  if (b) b.hidden = !on;
}

export function render(): void {
  for (const f of leaveHandlers) f();
  leaveHandlers = [];
  const path = location.pathname;
  const match = routes.map((r) => ({ r, m: r.re.exec(path) })).find((x) => x.m);
  if (!match?.r.public && !getToken()) {
    if (path !== "/login") {
      loginMessage = loginMessage || "";
      navigate(`/login?next=${encodeURIComponent(path + location.search)}`, true);
      return;
    }
  }
  setSignedIn(!!getToken() && path !== "/login");
  const root = main();
  root.replaceChildren();
  statusLine().textContent = "";
  if (!match || !match.m) {
    root.append(h("h1", null, "Not found"), h("p", null, "No page here. ", h("a", { href: "/", "data-link": "" }, "Back to the fleet")));
    return;
  }
  const params: Record<string, string> = {};
  match.r.keys.forEach((k, i) => (params[k] = decodeURIComponent(match.m?.[i + 1] ?? "")));
  let alive = true;
  const timers: number[] = [];
  leaveHandlers.push(() => {
    alive = false;
    timers.forEach((t) => clearInterval(t));
  });
  const ctx: Ctx = {
    params,
    query: new URLSearchParams(location.search),
    poll(secs, f) {
      let busy = false;
      const run = async () => {
        if (!alive || busy) return;
        busy = true;
        try {
          await f();
        } finally {
          busy = false;
        }
      };
      void run();
      // Hidden tabs skip polls and catch up as soon as they are shown again.
      timers.push(window.setInterval(() => document.visibilityState === "visible" && void run(), secs * 1000));
      const onVis = () => document.visibilityState === "visible" && void run();
      document.addEventListener("visibilitychange", onVis);
      leaveHandlers.push(() => document.removeEventListener("visibilitychange", onVis));
      return { now: run };
    },
    onLeave(f) {
      leaveHandlers.push(f);
    },
    navigate: (p) => navigate(p),
    setTitle(t) {
      document.title = `${t} · SCS Portal`;
    },
    updated() {
      if (!alive) return;
      const now = Date.now();
      const el = statusLine();
      el.replaceChildren("Live · updated ", h("time", { datetime: new Date(now).toISOString(), title: utcText(now) }, localText(now)));
    },
  };
  match.r.page(root, ctx);
}

export function start(): void {
  layout();
  setAuthErrorHandler(() => toLogin("The API refused the token (401): it is wrong, expired or revoked. Sign in again."));
  document.addEventListener("click", (e) => {
    const a = (e.target as Element | null)?.closest?.("a[data-link]") as HTMLAnchorElement | null;
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href);
    if (url.origin !== location.origin) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
    main().focus();
  });
  window.addEventListener("popstate", render);
  render();
}
