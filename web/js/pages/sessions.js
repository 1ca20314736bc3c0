// A table of sign-in sessions with "End session" (your own, or an admin's view of one account's), shared by the
// Accounts page and Your account.

import { api } from "../api.js";
import { h, replace, timeEl } from "../dom.js";
import { busy, confirmDialog, showNotice, showError, tableWrap, empty } from "../ui.js";

/** A live list of sessions: `userId` (an admin naming an account) or null for your own. */
export function sessionsTable({ userId = null, label = "Sessions", as = "auto", heading = true, onChange = () => {} } = {}) {
  const box = h("div", { class: "sessions", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading sessions…"));

  async function load() {
    try {
      const data = await api("GET", "/api/v1/auth/sessions", { as, query: { user_id: userId } });
      draw(data.items);
    } catch (error) {
      showError(error, "Listing sessions");
      replace(box, empty("The sessions could not be listed."));
    }
  }

  function draw(items) {
    if (!items.length) {
      replace(box, heading ? h("h3", {}, label) : null, empty("No live sessions."));
      return;
    }
    replace(box, heading ? h("h3", {}, label) : null, tableWrap(label, h("table", {},
      h("thead", {}, h("tr", {}, ["Account", "Started", "Last used", "Expires", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, items.map((s) => {
        const end = h("button", { type: "button", class: "btn btn-small btn-danger" }, "End session");
        end.setAttribute("aria-label", `End session started ${s.created_at}`);
        end.addEventListener("click", async () => {
          const ok = await confirmDialog({ title: "End this session?", confirmLabel: "End session", danger: true,
            body: h("p", {}, s.current ? "This is the session you are using: you will be signed out."
              : "Whoever uses it is signed out at once.") });
          if (!ok) return;
          const done = await busy(end, () => api("DELETE", `/api/v1/auth/sessions/${encodeURIComponent(s.id)}`, { as }), "End session");
          if (done) {
            showNotice("Session ended.");
            if (s.current) window.location.reload();
            else {
              load();
              onChange();
            }
          }
        });
        return h("tr", {}, h("td", {}, s.username, s.current ? h("span", { class: "badge" }, " this one") : null),
          h("td", {}, timeEl(s.created_at)), h("td", {}, s.last_used_at ? timeEl(s.last_used_at) : "—"),
          h("td", {}, s.expires_at ? timeEl(s.expires_at) : "never"), h("td", {}, end));
      })))));
  }

  load();
  return box;
}
