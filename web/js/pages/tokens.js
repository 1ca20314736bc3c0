// API tokens: create (the value is shown once), list, revoke. Admins see and may revoke everyone's.

import { api } from "../api.js";
import { h, replace, field, timeEl, short } from "../dom.js";
import { session, isAdmin } from "../session.js";
import { pageHeader, section, busy, confirmDialog, showNotice, showError, tableWrap, empty } from "../ui.js";

const EXPIRY = [["", "Never"], ["86400", "1 day"], ["2592000", "30 days"], ["7776000", "90 days"], ["31536000", "1 year"]];

export function render(main) {
  const controller = new AbortController();
  // Token requests use the session when there is one (else the admin key): that credential's role decides.
  const admin = session.user ? session.user.role === "admin" : isAdmin();
  const name = field("Name", { maxlength: 100, placeholder: "ci-runner", hint: "To recognise the token later." });
  const expiry = field("Expires after", { kind: "select", options: EXPIRY, value: "2592000" });
  const owner = admin ? field("For account", { kind: "select", options: [["", "Your own account"]],
    hint: "An admin can make a token for anyone's account." }) : null;
  const names = new Map(); // account id -> username, for the list
  if (owner) {
    api("GET", "/api/v1/accounts", { as: "admin", signal: controller.signal }).then((data) => {
      for (const a of data.items) {
        names.set(a.id, a.username);
        if (!a.disabled) owner.input.append(h("option", { value: a.username }, `${a.username} (${a.role})`));
      }
      load(); // again, with usernames in the Account column
    }).catch((error) => showError(error, "Listing accounts"));
  }
  const create = h("button", { type: "submit", class: "btn btn-primary" }, "Create token");
  const reveal = h("div", { class: "reveal", hidden: true, "aria-live": "polite" });
  const form = h("form", { class: "form-grid" }, name.wrap, expiry.wrap, owner ? owner.wrap : null,
    h("div", { class: "form-actions" }, create));
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));

  function showOnce(token) {
    const valueId = "new-token-value";
    const value = h("input", { id: valueId, class: "mono", readonly: true, value: token.token, spellcheck: "false" });
    const copy = h("button", { type: "button", class: "btn" }, "Copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(token.token);
        showNotice("Token copied.");
      } catch {
        value.select();
        showNotice("Select the text and copy it (the clipboard is not available here).");
      }
    });
    const done = h("button", { type: "button", class: "btn" }, "Done");
    done.addEventListener("click", () => {
      reveal.hidden = true;
      replace(reveal);
      create.focus();
    });
    replace(reveal,
      h("p", {}, h("strong", {}, "Copy this token now: "), "it is shown only this once and cannot be retrieved again."),
      h("div", { class: "field" }, h("label", { for: valueId }, `Token ${token.name || token.fingerprint}`),
        h("div", { class: "inline" }, value, copy, done)),
      h("p", { class: "hint" }, "Send it as ", h("code", {}, "Authorization: Bearer <token>"), "."),
    );
    reveal.hidden = false;
    value.focus();
    value.select();
  }

  async function load() {
    try {
      const data = await api("GET", "/api/v1/tokens", { signal: controller.signal });
      draw(data.items);
    } catch (error) {
      showError(error, "Listing tokens");
      replace(list, empty("The tokens could not be listed."));
    }
  }

  function draw(items) {
    if (!items.length) {
      replace(list, empty("No API tokens yet."));
      return;
    }
    const cols = ["Name", "Fingerprint", ...(admin ? ["Account"] : []), "Created", "Expires", "Last used", "Actions"];
    replace(list, tableWrap("API tokens", h("table", {},
      h("thead", {}, h("tr", {}, cols.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, items.map((t) => {
        const revoke = h("button", { type: "button", class: "btn btn-small btn-danger" }, "Revoke");
        revoke.setAttribute("aria-label", `Revoke token ${t.name || t.fingerprint}`);
        revoke.addEventListener("click", async () => {
          const ok = await confirmDialog({ title: "Revoke this token?", confirmLabel: "Revoke", danger: true,
            body: h("p", {}, "Anything using ", h("strong", {}, t.name || t.fingerprint), " stops working at once.") });
          if (!ok) return;
          const done = await busy(revoke, () => api("DELETE", `/api/v1/tokens/${encodeURIComponent(t.id)}`), "Revoke token");
          if (done) {
            showNotice(`Token ${t.name || t.fingerprint} revoked.`);
            load();
          }
        });
        return h("tr", {},
          h("td", {}, t.name || h("span", { class: "muted" }, "(unnamed)")),
          h("td", {}, h("code", {}, t.fingerprint)),
          admin ? h("td", {}, names.has(t.user_id) ? names.get(t.user_id) : h("code", { title: t.user_id }, short(t.user_id, 12))) : null,
          h("td", {}, timeEl(t.created_at)), h("td", {}, t.expires_at ? timeEl(t.expires_at) : "never"),
          h("td", {}, t.last_used_at ? timeEl(t.last_used_at) : "never"), h("td", {}, revoke));
      })))));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.input.value.trim() };
    if (expiry.input.value) body.expires_in_s = Number(expiry.input.value);
    if (owner && owner.input.value) body.username = owner.input.value;
    const token = await busy(create, () => api("POST", "/api/v1/tokens", { body }), "Create token");
    if (token) {
      name.input.value = "";
      showOnce(token);
      load();
    }
  });

  replace(main,
    pageHeader("API tokens", admin ? "Tokens of every account (you are an admin)." : "Tokens for scripts and integrations."),
    section("New token", form, reveal),
    section("Tokens", list),
  );
  load();
  return () => controller.abort();
}
