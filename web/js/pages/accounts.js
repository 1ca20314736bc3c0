// Accounts (admin): create, list, disable/enable, reset a password, delete; see and end anyone's sessions.

import { api } from "../api.js";
import { h, replace, field, timeEl } from "../dom.js";
import { pageHeader, section, busy, confirmDialog, showNotice, showError, tableWrap, empty } from "../ui.js";
import { sessionsTable } from "./sessions.js";

export function render(main) {
  const controller = new AbortController();
  const user = field("Username", { required: true, maxlength: 64, pattern: "[a-z0-9][a-z0-9_.\\-]{2,63}", autocomplete: "off",
    autocapitalize: "none", spellcheck: "false", hint: "3–64 characters: lowercase letters, digits, _ . -" });
  const pass = field("Password", { kind: "password", required: true, minlength: 10, maxlength: 1024, autocomplete: "new-password",
    hint: "At least 10 characters. Share it with the person privately." });
  const role = field("Role", { kind: "select", options: [["user", "User"], ["admin", "Admin"]], value: "user" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create account");
  const form = h("form", { class: "form-grid" }, user.wrap, pass.wrap, role.wrap, h("div", { class: "form-actions" }, submit));
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const sessions = h("div");

  async function load() {
    try {
      const data = await api("GET", "/api/v1/accounts", { as: "admin", signal: controller.signal });
      draw(data.items);
    } catch (error) {
      showError(error, "Listing accounts");
      replace(list, empty("The accounts could not be listed."));
    }
  }

  async function act(button, name, method, path, body, done) {
    const result = await busy(button, () => api(method, path, { as: "admin", body }), name);
    if (result) {
      showNotice(done(result));
      load();
    }
  }

  function actions(a) {
    if (a.builtin) return h("span", { class: "muted" }, "the admin key's account");
    const base = `/api/v1/accounts/${encodeURIComponent(a.id)}`;
    const toggle = h("button", { type: "button", class: "btn btn-small" }, a.disabled ? "Enable" : "Disable");
    toggle.setAttribute("aria-label", `${a.disabled ? "Enable" : "Disable"} ${a.username}`);
    toggle.addEventListener("click", () => act(toggle, a.disabled ? "Enable" : "Disable", "POST",
      `${base}/${a.disabled ? "enable" : "disable"}`, undefined,
      (r) => `Account ${r.username} ${r.disabled ? "disabled: it cannot sign in and its sessions ended" : "enabled"}.`));
    const reset = h("button", { type: "button", class: "btn btn-small" }, "Reset password");
    reset.setAttribute("aria-label", `Reset the password of ${a.username}`);
    reset.addEventListener("click", async () => {
      const values = await confirmDialog({ title: `New password for ${a.username}`, confirmLabel: "Set password",
        body: h("p", {}, "Their sessions end; tell them the new password privately."),
        fields: [{ name: "password", label: "New password", kind: "password", maxlength: 1024 }] });
      if (!values) return;
      act(reset, "Reset password", "POST", `${base}/password`, { password: values.password },
        (r) => `Password of ${r.username} set; ${r.sessions_ended} session(s) ended.`);
    });
    const show = h("button", { type: "button", class: "btn btn-small" }, "Sessions");
    show.setAttribute("aria-label", `Sessions of ${a.username}`);
    show.addEventListener("click", () => {
      replace(sessions, sessionsTable({ userId: a.id, label: `Sessions of ${a.username}`, as: "admin", onChange: load }));
      sessions.scrollIntoView({ block: "nearest" });
    });
    const del = h("button", { type: "button", class: "btn btn-small btn-danger" }, "Delete");
    del.setAttribute("aria-label", `Delete ${a.username}`);
    del.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: `Delete ${a.username}?`, confirmLabel: "Delete", danger: true,
        body: h("p", {}, "The account, its API tokens and sessions are removed. Its generations stay; the audit log keeps its history.") });
      if (ok) act(del, "Delete account", "DELETE", base, undefined, (r) => `Account ${r.username} deleted.`);
    });
    return h("div", { class: "inline" }, toggle, reset, show, del);
  }

  function draw(items) {
    if (!items.length) {
      replace(list, empty("No accounts yet."));
      return;
    }
    replace(list, tableWrap("Accounts", h("table", {},
      h("thead", {}, h("tr", {}, ["Username", "Role", "State", "Created", "Sessions", "Tokens", "Actions"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, items.map((a) => h("tr", { "data-account": a.username },
        h("td", {}, h("strong", {}, a.username)), h("td", {}, a.role),
        h("td", {}, a.builtin ? h("span", { class: "badge" }, "built-in")
          : h("span", { class: `badge ${a.disabled ? "job-failed" : "job-completed"}` }, a.disabled ? "disabled" : "active")),
        h("td", {}, timeEl(a.created_at)), h("td", {}, String(a.sessions)), h("td", {}, String(a.tokens)),
        h("td", {}, actions(a))))))));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { username: user.input.value.trim(), password: pass.input.value, role: role.input.value };
    const result = await busy(submit, () => api("POST", "/api/v1/auth/register", { body, as: "admin" }), "Create account");
    if (result) {
      form.reset(); // a reset form is not "user-invalid": the emptied fields do not turn red
      showNotice(`Account ${result.username} created.`);
      load();
    }
  });
  replace(main, pageHeader("Accounts", "The people who use Stoker. The admin key is the built-in admin account."),
    section("New account", form), section("All accounts", list, sessions));
  load();
  return () => controller.abort();
}
