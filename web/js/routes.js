// Every page of the UI: its hash route, nav entry, who may see it, and its module (loaded on first visit).
//
// A page module exports `render(main, ctx)` and may return a cleanup function (stop streams, timers).
// `ctx` = {params: URLSearchParams, session, navigate(path), onSessionChange(next?), canVisit(path)}.
// A page is listed only when it has a module (`load`) and, with `requires`, when the gateway's OpenAPI
// document has that path (the generation pages: when the gateway offers generations).

export const ROUTES = [
  { path: "/", label: "Home", section: "you", access: "signed-in", load: () => import("./pages/home.js") },
  { path: "/studio", label: "Studio", section: "you", access: "signed-in", requires: "/api/v1/generations",
    load: () => import("./pages/studio.js") },
  { path: "/gallery", label: "Gallery", section: "you", access: "signed-in", requires: "/api/v1/gallery",
    load: () => import("./pages/gallery.js") },
  { path: "/muses", label: "Muses", section: "you", access: "signed-in", requires: "/api/v1/muses",
    load: () => import("./pages/muses.js") },
  { path: "/tokens", label: "API tokens", section: "you", access: "signed-in", load: () => import("./pages/tokens.js") },
  { path: "/admin/pool", label: "Pool", section: "admin", access: "admin", load: () => import("./pages/pool.js") },
  { path: "/admin/policies", label: "Policies", section: "admin", access: "admin",
    load: () => import("./pages/policies.js") },
  { path: "/admin/usage", label: "Usage", section: "admin", access: "admin", load: () => import("./pages/usage.js") },
  { path: "/admin/audit", label: "Audit", section: "admin", access: "admin", load: () => import("./pages/audit.js") },
  { path: "/admin/incidents", label: "Incident review", section: "admin", access: "admin",
    load: () => import("./pages/incidents.js") },
  { path: "/admin/accounts", label: "Accounts", section: "admin", access: "admin",
    load: () => import("./pages/accounts.js") },
  { path: "/account", label: "Your account", section: "settings", access: "signed-in",
    load: () => import("./pages/account.js") },
  { path: "/admin/key", label: "Admin key", section: "settings", access: "signed-in",
    load: () => import("./pages/adminkey.js") },
  { path: "/signin", label: "Sign in", section: null, access: "public", load: () => import("./pages/signin.js") },
];

export const SECTIONS = [
  ["you", "Workspace"],
  ["admin", "Administration"],
  ["settings", "Settings"],
];

/** The route for a path, or null. */
export function match(path) {
  return ROUTES.find((r) => r.path === path) || null;
}

/** Whether a route is available with the gateway's API paths (a Set) and the caller's rights. */
export function available(route, apiPaths, { signedIn, admin }) {
  if (!route.load) return false;
  if (route.requires && !(apiPaths && [...apiPaths].some((p) => p === route.requires || p.startsWith(`${route.requires}/`)))) {
    return false;
  }
  if (route.access === "admin") return admin;
  if (route.access === "signed-in") return signedIn;
  return true;
}
