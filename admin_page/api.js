// The API client: the session (sessionStorage) and every request, with its headers.
//
// The token lives in sessionStorage (this tab only, gone when it closes) and travels in the
// X-User-Id/X-Auth-Token headers, never in a cookie: a page on another site cannot make the
// browser send it, so there is no CSRF to defend against (docs/admin-page.md). A 401 on any
// call means the token expired or was revoked: `request` then waits for the user to sign in
// again (the app shows a dialog over the page, so nothing typed is lost) and retries.

const STORAGE_KEY = "livechat-departments-admin";
// Relative to the page: /admin/ -> /api/v1/, /chat-api/admin/ -> /chat-api/api/v1/.
const API_BASE = new URL("../api/v1/", document.baseURI);

export class ApiFailure extends Error {
  /** status: HTTP status (0: no answer); body: the API's JSON error body, if any. */
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.errorType = this.body.errorType || null;
  }
}

let session = readSession();
const prefetched = new Map(); // url -> the promise of a GET started ahead (prefetch)
let reauthenticate = null; // set by the app: () => Promise<void> resolved once signed in again
let pendingSignIn = null; // one dialog for every request that got a 401 meanwhile

function readSession() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY)) || null;
  } catch {
    return null;
  }
}

export function currentSession() {
  return session;
}

export function setSession(value) {
  session = value;
  prefetched.clear(); // answers fetched for one session never reach another's views
  if (value) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(STORAGE_KEY);
}

export function onUnauthorized(handler) {
  reauthenticate = handler;
}

export function apiUrl(path, query) {
  const url = new URL(path, API_BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (Array.isArray(value)) value.forEach((item) => url.searchParams.append(name, item));
    else if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

/**
 * One API call: `request("GET", "livechat/department", {query: {text}})`. Resolves with the
 * JSON body; rejects with ApiFailure (an AbortError when `signal` aborted it). With
 * `reauth: false` a 401 is an ApiFailure like any other.
 */
export async function request(method, path, { query, body, signal, reauth = true } = {}) {
  if (method === "GET" && prefetched.size) {
    const url = apiUrl(path, query).href;
    const ahead = prefetched.get(url);
    if (ahead) {
      prefetched.delete(url);
      return ahead;
    }
  }
  for (;;) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const sent = session;
    if (sent) {
      headers["X-User-Id"] = sent.userId;
      headers["X-Auth-Token"] = sent.authToken;
    }
    let response;
    try {
      response = await fetch(apiUrl(path, query), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        credentials: "omit",
        cache: "no-store",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiFailure(0, null);
    }
    let json = null;
    try {
      json = await response.json();
    } catch {
      json = null;
    }
    if (response.ok) return json;
    if (response.status === 401 && sent && reauth && reauthenticate) {
      if (session === sent) setSession(null);
      await signInAgain();
      continue; // the same call, with the new token
    }
    throw new ApiFailure(response.status, json);
  }
}

/**
 * Start a GET now that a view will make soon (the first list after sign-in, while the
 * permissions load): the view's identical `request` then takes this answer (once). A failed
 * prefetch is forgotten, so the view asks again and gets its own error.
 */
export function prefetch(path, query) {
  const url = apiUrl(path, query).href;
  const ahead = request("GET", path, { query });
  ahead.catch(() => prefetched.delete(url));
  prefetched.set(url, ahead);
}

function signInAgain() {
  if (!pendingSignIn) {
    pendingSignIn = reauthenticate().finally(() => {
      pendingSignIn = null;
    });
  }
  return pendingSignIn;
}

/** POST login; resolves with {userId, authToken, me}. Never triggers the sign-in dialog. */
export async function login(user, password) {
  let response;
  try {
    response = await fetch(apiUrl("login"), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ user, password }),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiFailure(0, null);
  }
  const json = await response.json().catch(() => null);
  if (!response.ok) {
    const failure = new ApiFailure(response.status, json);
    failure.retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw failure;
  }
  return json.data;
}

/** POST logout with the current token (best effort), then forget it. */
export async function logout() {
  const sent = session;
  setSession(null);
  if (!sent) return;
  try {
    await fetch(apiUrl("logout"), {
      method: "POST",
      headers: { "X-User-Id": sent.userId, "X-Auth-Token": sent.authToken, Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    // the token is forgotten here anyway; it expires on the server in time
  }
}
