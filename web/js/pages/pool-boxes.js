// Own GPU boxes: join tokens (made once, shown once, revocable) and the boxes that joined with each.

import { api } from "../api.js";
import { h, replace, field, rate, utc } from "../dom.js";
import { busy, confirmDialog, showNotice, tableWrap, empty } from "../ui.js";

/** The "Own GPU boxes" card; `refresh()` reloads the token list. */
export function boxesSection() {
  const label = field("Label", { maxlength: 200, value: "", hint: "e.g. studio boxes" });
  const dph = field("Cost per hour ($)", { kind: "number", min: 0, max: 1000, step: "0.01", value: "0",
    hint: "What an hour of such a box costs you (0: free)." });
  const make = h("button", { type: "submit", class: "btn btn-primary" }, "Make a join token");
  const shown = h("div", { class: "banner", role: "status", hidden: true, id: "join-token-made" });
  const body = h("tbody");
  const table = h("table", {}, h("caption", { class: "sr-only" }, "Join tokens"),
    h("thead", {}, h("tr", {}, ["Label", "$/h", "Boxes", "Made", "State", ""].map((t) => h("th", { scope: "col" }, t)))), body);
  const wrap = tableWrap("Join tokens table", table);
  const none = empty("No join tokens yet.");
  const form = h("form", { class: "inline-form", "aria-label": "Make a join token" }, label.wrap, dph.wrap, make);

  async function refresh() {
    const list = await api("GET", "/api/v1/pool/join-tokens", { as: "admin" }).catch(() => null);
    const items = list ? list.items : [];
    replace(body, ...items.map((t) => {
      const revoke = h("button", { type: "button", class: "btn btn-small btn-danger", disabled: t.revoked,
        "aria-label": `Revoke ${t.label || t.token_id}` }, "Revoke");
      revoke.addEventListener("click", async () => {
        const ok = await confirmDialog({ title: "Revoke this join token?", confirmLabel: "Revoke", danger: true,
          body: h("p", {}, "No box can join with it any more, and the boxes that did stop being used.") });
        if (!ok) return;
        const result = await busy(revoke, () => api("DELETE", `/api/v1/pool/join-tokens/${encodeURIComponent(t.token_id)}`,
          { as: "admin" }), "Revoke");
        if (result) showNotice("Join token revoked.");
        await refresh();
      });
      return h("tr", { dataset: { token: t.token_id } }, h("td", {}, t.label || "—"), h("td", { class: "num" }, rate(t.dph)),
        h("td", {}, t.nodes.join(", ") || "—"), h("td", {}, t.created_at ? utc(t.created_at) : "—"),
        h("td", {}, t.revoked ? "revoked" : "active"), h("td", {}, revoke));
    }));
    wrap.hidden = !items.length;
    none.hidden = Boolean(items.length);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const made = await busy(make, () => api("POST", "/api/v1/pool/join-tokens",
      { body: { label: label.input.value.trim(), dph: Number(dph.input.value || 0) }, as: "admin" }), "Join token");
    if (!made) return;
    shown.hidden = false;
    replace(shown, h("p", {}, h("strong", {}, "Shown once: "), "on the box, run"),
      h("pre", { class: "log" }, `stoker agent --join ${location.origin} --token ${made.token}`));
    await refresh();
  });

  const element = h("section", { class: "card", "aria-labelledby": "pool-boxes" }, h("h2", { id: "pool-boxes" }, "Own GPU boxes"),
    h("p", { class: "hint" }, "Boxes that join are used before anything is rented; a box that stops heartbeating is marked lost."),
    form, shown, wrap, none);
  wrap.hidden = true;
  none.hidden = true;
  refresh();
  return { element, refresh };
}
