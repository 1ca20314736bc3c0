// The landing page: where to go from here, by what the caller may do.

import { h, replace } from "../dom.js";
import { isAdmin, describe } from "../session.js";
import { pageHeader } from "../ui.js";

const CARDS = [
  ["/tokens", "API tokens", "Create tokens for scripts and integrations; revoke them.", false],
  ["/admin/pool", "Pool", "Live instances, prewarm, terminate, safe mode and the pool's configuration.", true],
  ["/admin/usage", "Usage", "GPU hours and cost per day and per instance state.", true],
  ["/admin/audit", "Audit", "The tamper-evident audit log, filtered, and its verification.", true],
  ["/admin/incidents", "Incident review", "Replay an instance's events and see the pool as it was.", true],
  ["/admin/accounts", "Accounts", "Create user and admin accounts.", true],
];

export function render(main) {
  const admin = isAdmin();
  const cards = CARDS.filter(([, , , needsAdmin]) => admin || !needsAdmin).map(([path, title, text]) =>
    h("li", { class: "card tile" }, h("h2", {}, h("a", { href: `#${path}` }, title)), h("p", { class: "muted" }, text)));
  replace(main,
    pageHeader("Welcome", `Signed in as ${describe()}.`),
    h("ul", { class: "tiles" }, cards),
    admin ? null : h("p", { class: "muted" }, "Operators: enter the admin key on the ", h("a", { href: "#/admin/key" }, "admin key page"),
      " to manage the pool."),
  );
}
