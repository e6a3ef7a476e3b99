import { h } from "../dom";
import { request, ApiError } from "../api";
import { setToken, clearToken } from "../auth";
import { navigate, takeLoginMessage, type Page } from "../app";

/** Only same-site paths after sign-in, so a crafted link cannot send the user elsewhere. */
function safeNext(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login") ? next : "/";
}

export const loginPage: Page = (root, ctx) => {
  ctx.setTitle("Sign in");
  const message = takeLoginMessage();
  const msg = h("p", { id: "login-msg", class: message ? "form-error" : "muted", role: "alert" }, message);
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": "token-hint login-msg",
  });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "login card", novalidate: true },
    h("h1", null, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-hint", class: "hint" }, "Paste the API token you were given. It is kept in this browser tab only and sent as a bearer header."),
    msg,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) {
      msg.className = "form-error";
      msg.textContent = "Enter a token.";
      input.focus();
      return;
    }
    button.disabled = true;
    msg.className = "muted";
    msg.textContent = "Checking the token…";
    try {
      // Checked before it is kept, so a typo is caught here rather than on the next page.
      await request("GET", "/v1/stats", undefined, token);
      setToken(token);
      navigate(safeNext(ctx.query.get("next")), true);
    } catch (err) {
      clearToken();
      msg.className = "form-error";
      msg.textContent =
        err instanceof ApiError && err.status === 401
          ? "That token was refused by the API (401). Check it and try again."
          : `Could not check the token: ${err instanceof Error ? err.message : String(err)}`;
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  root.append(form);
  input.focus();
};
