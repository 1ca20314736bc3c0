// Your account: change your password, see your sign-in sessions and end any of them.

import { api } from "../api.js";
import { h, replace, field } from "../dom.js";
import { session, keySession } from "../session.js";
import { pageHeader, section, busy, showNotice, clearMessages } from "../ui.js";
import { sessionsTable } from "./sessions.js";

export function render(main) {
  const me = session.user && session.user.user;
  if (!me || keySession()) {
    replace(main, pageHeader("Your account", "Password and sign-in sessions."),
      section("Password", h("p", {}, me ? "This is the admin key's built-in account: it has no password. Change "
        : "You are using the admin key, which has no password. Change ", h("code", {}, "STOKER_ADMIN_KEY"),
        " to change it; people get their own accounts on the Accounts page.")),
      me ? section("Your sessions", sessionsTable({ label: "Your sessions", heading: false })) : null);
    return () => {};
  }
  const current = field("Current password", { kind: "password", required: true, maxlength: 1024, autocomplete: "current-password" });
  const next = field("New password", { kind: "password", required: true, minlength: 10, maxlength: 1024, autocomplete: "new-password",
    hint: "At least 10 characters. Your other sessions end; this one stays." });
  const save = h("button", { type: "submit", class: "btn btn-primary" }, "Change password");
  const form = h("form", { class: "form-grid" }, current.wrap, next.wrap, h("div", { class: "form-actions" }, save));
  const box = h("div", {}, sessionsTable({ label: "Your sessions", as: "session", heading: false }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { current_password: current.input.value, new_password: next.input.value };
    const result = await busy(save, () => api("PUT", "/api/v1/auth/password", { body, as: "session" }), "Change password");
    if (result) {
      form.reset();
      clearMessages(); // the wrong-password message, if any, is over
      showNotice(`Password changed; ${result.sessions_ended} other session(s) ended.`);
      replace(box, sessionsTable({ label: "Your sessions", as: "session", heading: false }));
    }
  });
  replace(main, pageHeader("Your account", `${me.username} (${me.role})`),
    section("Password", form), section("Your sessions", box));
  return () => {};
}
