// The landing page: where to go from here, by what the caller may do.

import { h, replace } from "../dom.js";
import { isAdmin, describe, hasAccount } from "../session.js";
import { pageHeader } from "../ui.js";

const CARDS = [
  ["/studio", "Studio", "Write a prompt, see the cost, generate on a warm GPU and watch it live.", false],
  ["/gallery", "Gallery", "Everything you generated: filter, tag, open full size, download.", false],
  ["/muses", "Muses", "Saved characters you reuse in the studio: attributes, prompt template, variations.", false],
  ["/tokens", "API tokens", "Create tokens for scripts and integrations; revoke them.", false],
  ["/admin/pool", "Pool", "Live instances, prewarm, terminate, safe mode and the pool's configuration.", true],
  ["/admin/usage", "Usage", "GPU hours and cost per day and per instance state.", true],
  ["/admin/audit", "Audit", "The tamper-evident audit log, filtered, and its verification.", true],
  ["/admin/incidents", "Incident review", "Replay an instance's events and see the pool as it was.", true],
  ["/admin/accounts", "Accounts", "Create accounts, disable or delete them, reset passwords, end sessions.", true],
];
const NEEDS_ACCOUNT = new Set(["/studio", "/gallery", "/muses"]); // generations belong to accounts (the admin key has its own)

export function render(main, { canVisit }) {
  const admin = isAdmin();
  const cards = CARDS.filter(([path, , , needsAdmin]) => (admin || !needsAdmin) && canVisit(path)
    && (hasAccount() || !NEEDS_ACCOUNT.has(path))).map(([path, title, text]) =>
    h("li", { class: "card tile" }, h("h2", {}, h("a", { href: `#${path}` }, title)), h("p", { class: "muted" }, text)));
  replace(main,
    pageHeader("Welcome", `Signed in as ${describe()}.`),
    hasAccount() && canVisit("/studio") ? h("p", { class: "lead" },
      h("a", { href: "#/studio", class: "btn btn-primary" }, "Generate an image"),
      " \u2014 write a prompt in the studio and press Generate.") : null,
    h("ul", { class: "tiles" }, cards),
    admin ? null : h("p", { class: "muted" }, "Operators: enter the admin key on the ", h("a", { href: "#/admin/key" }, "admin key page"),
      " to manage the pool."),
  );
}
