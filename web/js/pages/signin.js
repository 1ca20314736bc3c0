// Sign in with an account, or use the admin key (kept for this browser tab only).

import { api } from "../api.js";
import { h, replace, field } from "../dom.js";
import { signIn, useAdminKey, signedIn } from "../session.js";
import { pageHeader, clearMessages, busy } from "../ui.js";

function nextPath(params) {
  const next = params.get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/signin") ? next : "/";
}

/** Open registration (dev mode): make your own user account, then you are signed in with it. */
function registerCard(params, onSessionChange) {
  const user = field("New username", { autocomplete: "username", required: true, maxlength: 64, autocapitalize: "none",
    spellcheck: "false", pattern: "[a-z0-9][a-z0-9_.\\-]{2,63}", hint: "3–64 characters: lowercase letters, digits, _ . -" });
  const pass = field("New password", { kind: "password", autocomplete: "new-password", required: true, minlength: 10,
    maxlength: 1024, hint: "At least 10 characters." });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create account");
  const form = h("form", { class: "stack", "aria-label": "Create an account" }, user.wrap, pass.wrap, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await busy(submit, async () => {
      const username = user.input.value.trim();
      await api("POST", "/api/v1/auth/register", { body: { username, password: pass.input.value }, as: "session" });
      await signIn(username, pass.input.value);
      return true;
    }, "Create account");
    if (ok) {
      clearMessages();
      onSessionChange(nextPath(params));
    }
  });
  return h("section", { class: "card", "aria-labelledby": "signin-register" }, h("h2", { id: "signin-register" }, "New here?"),
    h("p", { class: "muted" }, "This Stoker lets anyone make a user account."), form);
}

export function render(main, { params, onSessionChange }) {
  const user = field("Username", { autocomplete: "username", required: true, maxlength: 128, autocapitalize: "none",
    spellcheck: "false" });
  const pass = field("Password", { kind: "password", autocomplete: "current-password", required: true, maxlength: 1024 });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h("form", { class: "stack", "aria-label": "Sign in with your account" }, user.wrap, pass.wrap, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await busy(submit, async () => {
      await signIn(user.input.value.trim(), pass.input.value);
      return true;
    }, "Sign in");
    pass.input.value = "";
    if (ok) {
      clearMessages();
      onSessionChange(nextPath(params));
    } else {
      pass.input.focus();
    }
  });

  const key = field("Admin key", { kind: "password", autocomplete: "off", required: true, maxlength: 512,
    hint: "Printed by `stoker up` in dev mode, or STOKER_ADMIN_KEY. Kept in this tab only (sessionStorage) and sent as X-Admin-Api-Key." });
  const useKey = h("button", { type: "submit", class: "btn" }, "Use admin key");
  const keyForm = h("form", { class: "stack", "aria-label": "Use the admin key" }, key.wrap, useKey);
  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await busy(useKey, async () => {
      await useAdminKey(key.input.value.trim(), { signIn: true });
      return true;
    }, "Admin key");
    key.input.value = "";
    if (ok) {
      clearMessages();
      onSessionChange(nextPath(params) === "/" ? "/admin/pool" : nextPath(params));
    }
  });

  const howTo = h("section", { class: "card", "aria-labelledby": "signin-how" }, h("h2", { id: "signin-how" }, "How to get in"),
    h("ul", {},
      h("li", {}, h("strong", {}, "You ran "), h("code", {}, "stoker up"), h("strong", {}, ": "),
        "use the admin key it printed (\u201cAdmin key (dev mode, kept in .stoker/admin_key)\u201d, or your ",
        h("code", {}, "STOKER_ADMIN_KEY"), "). It signs you in as the built-in ", h("strong", {}, "admin"),
        " account: generate in the studio, run the pool, and make accounts for others under Administration \u2192 Accounts."),
      h("li", {}, h("strong", {}, "Someone else runs Stoker: "),
        "accounts are made by an admin. Ask yours for a username and password, then sign in with them here.")));

  const register = h("div");
  api("GET", "/api/v1/auth/options", { as: "session", probe: true }).then((options) => {
    if (options && options.open_registration) replace(register, registerCard(params, onSessionChange));
  }).catch(() => {}); // without the answer, the page still says how accounts are made

  replace(main,
    pageHeader("Sign in", signedIn() ? "You are already signed in; signing in again switches account." : "Stoker keeps rented GPUs warm for ComfyUI."),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "signin-account" }, h("h2", { id: "signin-account" }, "Account"), form),
      h("section", { class: "card", "aria-labelledby": "signin-admin" }, h("h2", { id: "signin-admin" }, "Operator"),
        h("p", { class: "muted" }, "The admin key signs you in as the built-in admin account: studio, pool, accounts, usage, audit."), keyForm)),
    register,
    howTo,
  );
  user.input.focus();
  return () => {};
}
