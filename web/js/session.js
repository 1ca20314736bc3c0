// Who is using the UI: a signed-in account (cookie session) and/or the admin key (this tab only).

import { api, adminKey, setAdminKey, forgetAdminKey, noteSession, ApiError } from "./api.js";

export const session = {
  user: null, // GET /api/v1/auth/me through the cookie: {actor, role, via, user}
  admin: null, // the same through the admin key: {actor, role: "admin", via: "admin_key"}
};

/** Re-read both credentials from the gateway. */
export async function refresh() {
  noteSession(false);
  // A signed-out visitor is an answer here (200 {"authenticated": false}), not a 401 the browser logs as an error.
  const status = await api("GET", "/api/v1/auth/session", { as: "user", probe: true });
  session.user = status && status.authenticated ? status : null;
  noteSession(Boolean(session.user));
  session.admin = null;
  if (adminKey()) {
    try {
      session.admin = await api("GET", "/api/v1/auth/me", { as: "admin", probe: true });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      forgetAdminKey();
    }
  }
}

export function signedIn() {
  return Boolean(session.user || session.admin);
}

export function isAdmin() {
  return Boolean(session.admin || (session.user && session.user.role === "admin"));
}

export async function signIn(username, password) {
  const result = await api("POST", "/api/v1/auth/login", { body: { username, password }, as: "user", probe: true });
  await refresh();
  return result;
}

/** End the cookie session (if any) and forget the admin key. */
export async function signOut() {
  if (session.user) {
    try {
      await api("POST", "/api/v1/auth/logout", { as: "user", probe: true });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
    }
  }
  forgetAdminKey();
  session.user = null;
  session.admin = null;
  noteSession(false);
}

/** Check an admin key against the gateway; keep it for this tab only if it is one. */
export async function useAdminKey(key) {
  const previous = adminKey();
  setAdminKey(key);
  try {
    const me = await api("GET", "/api/v1/auth/me", { as: "admin", probe: true });
    session.admin = me;
    return me;
  } catch (error) {
    if (previous && previous !== key) setAdminKey(previous);
    else forgetAdminKey();
    throw error;
  }
}

export function dropAdminKey() {
  forgetAdminKey();
  session.admin = null;
}

/** A short description of who is signed in, for the header. */
export function describe() {
  const parts = [];
  if (session.user) {
    const u = session.user.user;
    parts.push(u ? `${u.username} (${u.role})` : session.user.actor);
  }
  if (session.admin) parts.push("admin key");
  return parts.join(" + ");
}
