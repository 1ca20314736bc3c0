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
  const status = await api("GET", "/api/v1/auth/session", { as: "session", probe: true });
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
  const result = await api("POST", "/api/v1/auth/login", { body: { username, password }, as: "session", probe: true });
  await refresh();
  return result;
}

/** End the cookie session (if any) and forget the admin key. */
export async function signOut() {
  if (session.user) {
    try {
      await api("POST", "/api/v1/auth/logout", { as: "session", probe: true });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
    }
  }
  forgetAdminKey();
  session.user = null;
  session.admin = null;
  noteSession(false);
}

/**
 * Check an admin key against the gateway; keep it for this tab only if it is one. With `signIn` and nobody
 * signed in, also start a browser session of the key's built-in admin account (so images, downloads and
 * live streams work as for any account).
 */
export async function useAdminKey(key, { signIn: startSession = false } = {}) {
  const previous = adminKey();
  setAdminKey(key);
  let me;
  try {
    me = await api("GET", "/api/v1/auth/me", { as: "admin", probe: true });
    session.admin = me;
  } catch (error) {
    if (previous && previous !== key) setAdminKey(previous);
    else forgetAdminKey();
    throw error;
  }
  if (startSession && !session.user) {
    await api("POST", "/api/v1/auth/admin-session", { as: "admin", probe: true });
    await refresh();
  }
  return me;
}

/** Whether the caller has an account to generate with (a signed-in account, or the admin key's own). */
export function hasAccount() {
  return Boolean((session.user && session.user.user) || (session.admin && session.admin.user_id));
}

/** Whether the cookie session is the admin key's built-in account (the key signed this tab in). */
export function keySession() {
  return Boolean(session.user && session.admin && session.user.user && session.user.user.id === session.admin.user_id);
}

export function dropAdminKey() {
  forgetAdminKey();
  session.admin = null;
}

/** A short description of who is signed in, for the header. */
export function describe() {
  const parts = [];
  if (keySession()) return `${session.user.user.username} (admin key)`;
  if (session.user) {
    const u = session.user.user;
    parts.push(u ? `${u.username} (${u.role})` : session.user.actor);
  }
  if (session.admin) parts.push("admin key");
  return parts.join(" + ");
}
