// The one way the UI talks to the gateway: JSON requests, the error shape, credentials, live streams.
//
// Credentials: a signed-in user rides on the HttpOnly session cookie the gateway sets at sign-in
// (the UI never sees or stores that token). The admin key, when entered, lives in sessionStorage
// (gone when the tab closes) and is sent as X-Admin-Api-Key. Admin requests prefer the key;
// everything else uses the session, and falls back to the key when nobody is signed in (the admin key
// acts as its built-in admin account). "session" requests use the cookie only (checking who is signed in).

const KEY_STORAGE = "stoker.adminKey";
const ADMIN_HEADER = "X-Admin-Api-Key";

let signedInUser = false;
let onAuthLost = () => {};

/** Tell the client whether a cookie session exists (decides which credential "auto" requests use). */
export function noteSession(present) {
  signedInUser = Boolean(present);
}

/** Called with "session" or "admin_key" when the gateway refuses a credential it used to accept. */
export function setAuthLostHandler(handler) {
  onAuthLost = handler;
}

export function adminKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setAdminKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetAdminKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

/** A refusal from the API ({"error": {"code", "message", "details"}}) or a failure to reach it. */
export class ApiError extends Error {
  constructor(status, code, message, { details = null, correlationId = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.correlationId = correlationId;
    this.retryAfter = retryAfter;
  }
}

function credentialFor(as) {
  const key = adminKey();
  if (!key || as === "session") return null;
  if (as === "admin" || !signedInUser) return key;
  return null;
}

function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") u.searchParams.set(name, String(value));
  }
  return u.pathname + u.search;
}

async function errorOf(response) {
  const correlationId = response.headers.get("X-Correlation-Id");
  const retryAfter = response.headers.get("Retry-After");
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const err = body && typeof body === "object" && body.error ? body.error : null;
  if (err && typeof err.code === "string" && typeof err.message === "string") {
    return new ApiError(response.status, err.code, err.message, { details: err.details ?? null, correlationId, retryAfter });
  }
  // Not the house shape (a proxy's error page, say): never show its body, only the status.
  return new ApiError(response.status, `HTTP_${response.status}`, response.statusText || "the gateway answered with an error",
    { correlationId, retryAfter });
}

/**
 * Call the API. `as`: "admin" (prefer the admin key), "session" (the cookie only), "user" or "auto" (the
 * session, else the admin key's built-in account).
 * `probe`: a 401 is an expected answer (checking a credential), not a lost sign-in.
 * Resolves to the decoded JSON body (or null for an empty one); rejects with an ApiError.
 */
export async function api(method, path, { body, query, as = "auto", signal, raw = false, probe = false } = {}) {
  const headers = { Accept: "application/json" };
  const key = credentialFor(as);
  if (key) headers[ADMIN_HEADER] = key;
  const init = { method, headers, credentials: "same-origin", signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "NETWORK", "cannot reach the gateway; check that Stoker is running");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (error.status === 401 && !probe) onAuthLost(key ? "admin_key" : "session", error);
    throw error;
  }
  if (raw) return response;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Follow a Server-Sent Events endpoint over fetch (EventSource cannot send the admin key header).
 * Reconnects with backoff; `onState` hears "connecting", "live", "reconnecting" and "stopped".
 * Returns an object with close().
 */
export function stream(path, { as = "auto", onEvent, onState = () => {} }) {
  const controller = new AbortController();
  let retryMs = 2000;
  let closed = false;

  function dispatch(block) {
    let kind = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") kind = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
      else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
    }
    if (!data.length) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch {
      return; // a malformed message is skipped, not fatal
    }
    onEvent(kind, parsed, id);
  }

  async function once() {
    const headers = { Accept: "text/event-stream" };
    const key = credentialFor(as);
    if (key) headers[ADMIN_HEADER] = key;
    const response = await fetch(path, { headers, credentials: "same-origin", signal: controller.signal, cache: "no-store" });
    if (!response.ok) {
      const error = await errorOf(response);
      if (error.status === 401) onAuthLost(key ? "admin_key" : "session", error);
      throw error;
    }
    onState("live");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  (async () => {
    let failures = 0;
    while (!closed) {
      onState(failures ? "reconnecting" : "connecting");
      try {
        await once();
        failures = 0;
      } catch (exc) {
        if (closed || (exc && exc.name === "AbortError")) break;
        if (exc instanceof ApiError && (exc.status === 401 || exc.status === 403)) {
          onState("stopped", exc);
          return;
        }
        failures += 1;
      }
      if (closed) break;
      onState("reconnecting");
      const wait = Math.min(retryMs * 2 ** Math.min(failures, 3), 15000);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    onState("stopped");
  })();

  return {
    close() {
      closed = true;
      controller.abort();
    },
  };
}
