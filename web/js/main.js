// The app shell: who is signed in, the navigation, and a hash router (#/path?query) that mounts pages.

import { api, setAuthLostHandler } from "./api.js";
import { h, replace } from "./dom.js";
import { ROUTES, SECTIONS, available, match } from "./routes.js";
import { session, refresh, signedIn, isAdmin, signOut, describe, dropAdminKey } from "./session.js";
import { showError, showNotice, clearMessages } from "./ui.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const whoami = document.getElementById("whoami");
const menuToggle = document.getElementById("menu-toggle");
let apiPaths = null;
let cleanup = null;
let renderSeq = 0;
let lastPath = null;

function parseHash() {
  const raw = window.location.hash.startsWith("#/") ? window.location.hash.slice(1) : "/";
  const [path, query = ""] = raw.split("?");
  return { path: path || "/", params: new URLSearchParams(query) };
}

/** Go to a route ("/admin/pool", or with a query). */
export function navigate(path) {
  const target = `#${path}`;
  if (window.location.hash === target) route();
  else window.location.hash = target;
}

function rights() {
  return { signedIn: signedIn(), admin: isAdmin() };
}

function renderNav(current) {
  const visible = ROUTES.filter((r) => r.section && available(r, apiPaths, rights()));
  nav.hidden = !signedIn();
  document.body.classList.toggle("signed-in", signedIn());
  menuToggle.hidden = !signedIn();
  document.body.dataset.admin = isAdmin() ? "1" : "0";
  const groups = SECTIONS.map(([key, title]) => {
    const items = visible.filter((r) => r.section === key);
    if (!items.length) return null;
    const headingId = `nav-${key}`;
    return h("div", { class: "nav-group" },
      h("h2", { class: "nav-title", id: headingId }, title),
      h("ul", { "aria-labelledby": headingId },
        items.map((r) => h("li", {}, h("a", { href: `#${r.path}`, "aria-current": r.path === current ? "page" : null }, r.label)))));
  });
  replace(nav, groups);
  if (!signedIn()) {
    replace(whoami);
    return;
  }
  const out = h("button", { type: "button", class: "btn btn-small", id: "sign-out" }, "Sign out");
  out.addEventListener("click", async () => {
    try {
      await signOut();
    } catch (error) {
      showError(error, "Sign out");
      return;
    }
    clearMessages();
    showNotice("Signed out.", { sticky: true });
    navigate("/signin");
  });
  replace(whoami, h("span", { class: "who" }, "Signed in as ", h("strong", {}, describe())), out);
}

async function route() {
  const seq = ++renderSeq;
  const { path, params } = parseHash();
  const entry = match(path);
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
    cleanup = null;
  }
  if (lastPath !== null && lastPath !== path) clearMessages({ keepSticky: true }); // old pages' messages
  lastPath = path;
  document.body.classList.remove("nav-open");
  menuToggle.setAttribute("aria-expanded", "false");
  if (!entry || (entry.requires && !available(entry, apiPaths, { signedIn: true, admin: true }))) {
    renderNav(path);
    replace(main, h("h1", { tabindex: "-1" }, "Page not found"), h("p", {}, "There is no page at ", h("code", {}, path), ". ",
      h("a", { href: "#/" }, "Go home"), "."));
    main.querySelector("h1").focus();
    return;
  }
  if (entry.access !== "public" && !signedIn()) {
    navigate(`/signin?next=${encodeURIComponent(path + (params.toString() ? `?${params}` : ""))}`);
    return;
  }
  renderNav(path);
  document.title = `${entry.label} · Stoker`;
  if (entry.access === "admin" && !isAdmin()) {
    replace(main, h("h1", { tabindex: "-1" }, entry.label),
      h("p", {}, "This page needs the admin role. Enter the admin key on the ",
        h("a", { href: "#/admin/key" }, "admin key page"), ", or sign in with an admin account."));
    main.querySelector("h1").focus();
    return;
  }
  let module;
  try {
    module = await entry.load();
  } catch (error) {
    showError(error, `Loading ${entry.label}`);
    return;
  }
  if (seq !== renderSeq) return; // the user navigated on meanwhile
  replace(main);
  try {
    const result = module.render(main, { params, session, navigate, onSessionChange, canVisit });
    cleanup = typeof result === "function" ? result : null;
  } catch (error) {
    showError(error, entry.label);
  }
  const heading = main.querySelector("h1");
  if (heading && !main.contains(document.activeElement)) heading.focus({ preventScroll: false });
}

/** Whether the caller may open the page at `path` (it exists, the gateway offers it, the role allows it). */
function canVisit(path) {
  const entry = match(path);
  return Boolean(entry) && available(entry, apiPaths, rights());
}

/** Pages call this after signing in or out, or changing the admin key. */
function onSessionChange(next = null) {
  if (next) navigate(next);
  else route();
}

setAuthLostHandler((which) => {
  if (which === "admin_key" && session.admin) {
    dropAdminKey();
    showNotice("The gateway no longer accepts the admin key; it was forgotten. Enter it again.", { timeout: 0, sticky: true });
    route();
  } else if (which === "session" && session.user) {
    session.user = null;
    showNotice("Your session ended; sign in again.", { timeout: 0, sticky: true });
    route();
  }
});

async function boot() {
  menuToggle.addEventListener("click", () => {
    const open = !document.body.classList.contains("nav-open");
    document.body.classList.toggle("nav-open", open);
    menuToggle.setAttribute("aria-expanded", String(open));
  });
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    (main.querySelector("h1") || main).focus();
  });
  const [who, doc] = await Promise.allSettled([
    refresh(),
    api("GET", "/api/openapi.json", { as: "session", probe: true }),
  ]);
  if (who.status === "rejected") showError(who.reason, "Checking your sign-in");
  apiPaths = doc.status === "fulfilled" && doc.value && doc.value.paths ? new Set(Object.keys(doc.value.paths)) : new Set();
  window.addEventListener("hashchange", () => {
    if (window.location.hash.startsWith("#/") || !window.location.hash) route();
  });
  await route();
  document.getElementById("booting")?.remove();
}

boot().catch((error) => showError(error, "Starting the UI"));
