// Enter or forget the admin key for this tab (sessionStorage; sent as X-Admin-Api-Key, never shown again).

import { h, replace, field } from "../dom.js";
import { session, useAdminKey, dropAdminKey, keySession, signOut } from "../session.js";
import { pageHeader, section, busy, showNotice } from "../ui.js";

export function render(main, { onSessionChange }) {
  const key = field("Admin key", { kind: "password", autocomplete: "off", required: true, maxlength: 512,
    hint: "Kept in this browser tab only (sessionStorage) until you forget it or close the tab." });
  const save = h("button", { type: "submit", class: "btn btn-primary" }, "Use admin key");
  const form = h("form", { class: "stack" }, key.wrap, save);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const me = await busy(save, () => useAdminKey(key.input.value.trim()), "Admin key");
    key.input.value = "";
    if (me) {
      showNotice(`Admin key accepted (${me.actor}).`);
      onSessionChange();
    }
  });
  const forget = h("button", { type: "button", class: "btn" }, "Forget admin key");
  forget.addEventListener("click", async () => {
    if (keySession()) {
      await signOut(); // the session was the key's own account: forgetting the key signs out
      showNotice("Admin key forgotten and signed out.", { sticky: true });
      onSessionChange("/signin");
      return;
    }
    dropAdminKey();
    showNotice("Admin key forgotten for this tab.", { sticky: true });
    onSessionChange(session.user ? "/admin/key" : "/signin");
  });
  const status = session.admin
    ? h("p", {}, "An admin key is in use in this tab, acting as ", h("code", {}, session.admin.actor),
      " (its built-in account ", h("code", {}, session.admin.user_id || "?"), "). ", forget)
    : h("p", { class: "muted" }, "No admin key in this tab.");
  replace(main,
    pageHeader("Admin key", "Admin pages use the admin key when one is set, otherwise your account's role."),
    section("Current", status),
    section(session.admin ? "Replace the key" : "Enter the key", form),
  );
}
