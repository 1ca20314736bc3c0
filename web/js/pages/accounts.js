// Create accounts (admin): the gateway has no account list yet, so this page only creates.

import { api } from "../api.js";
import { h, replace, field, timeEl } from "../dom.js";
import { pageHeader, section, busy, showNotice, tableWrap, empty } from "../ui.js";

export function render(main) {
  const created = [];
  const user = field("Username", { required: true, maxlength: 64, pattern: "[a-z0-9][a-z0-9_.\\-]{2,63}", autocomplete: "off",
    autocapitalize: "none", spellcheck: "false", hint: "3–64 characters: lowercase letters, digits, _ . -" });
  const pass = field("Password", { kind: "password", required: true, minlength: 10, maxlength: 1024, autocomplete: "new-password",
    hint: "At least 10 characters. Share it with the person privately." });
  const role = field("Role", { kind: "select", options: [["user", "User"], ["admin", "Admin"]], value: "user" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create account");
  const form = h("form", { class: "form-grid" }, user.wrap, pass.wrap, role.wrap, h("div", { class: "form-actions" }, submit));
  const list = h("div");

  function draw() {
    if (!created.length) {
      replace(list, empty("Accounts you create here are listed until you leave the page."));
      return;
    }
    replace(list, tableWrap("Accounts created", h("table", {},
      h("thead", {}, h("tr", {}, ["Username", "Role", "Id", "Created"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, created.map((u) => h("tr", {}, h("td", {}, u.username), h("td", {}, u.role), h("td", {}, h("code", {}, u.id)),
        h("td", {}, timeEl(u.created_at))))))));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { username: user.input.value.trim(), password: pass.input.value, role: role.input.value };
    const result = await busy(submit, () => api("POST", "/api/v1/auth/register", { body, as: "admin" }), "Create account");
    if (result) {
      created.unshift(result);
      pass.input.value = "";
      user.input.value = "";
      showNotice(`Account ${result.username} created.`);
      draw();
    }
  });
  draw();
  replace(main, pageHeader("Accounts", "Create accounts for the people who use Stoker."), section("New account", form),
    section("Created this visit", list));
}
