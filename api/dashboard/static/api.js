// The REST client: JSON in and out, the bearer token for writes, and the API's health
// (up / database down / unreachable) for the banner.

const TOKEN_KEY = "mb.apiToken";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || "",
  set: (value) => {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    window.dispatchEvent(new Event("mb-token"));
  },
};

export class ApiError extends Error {
  constructor(status, body, path) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : "";
    const name = (body && body.error) || (status ? `HTTP ${status}` : "API unreachable");
    super(detail ? `${name}: ${detail}` : name);
    this.status = status;
    this.body = body;
    this.path = path;
  }
}

// ---- health: "up" | "db_down" | "down" -------------------------------------------------

const listeners = new Set();
// streaming: what /health says of the streaming processes (ok, stale, absent, unknown).
export const health = { state: "up", reason: "", streaming: "unknown" };

function setHealth(state, reason = "", streaming = health.streaming) {
  if (health.state === state && health.reason === reason && health.streaming === streaming) return;
  const was = health.state;
  Object.assign(health, { state, reason, streaming });
  for (const fn of listeners) fn(health, was);
}

export function onHealth(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export async function api(path, { method = "GET", body, timeout = 15000 } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && token.get()) headers.Authorization = `Bearer ${token.get()}`;
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeout);
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctrl.signal,
      cache: "no-store",
    });
  } catch (err) {
    const why = err.name === "AbortError" ? `no answer within ${timeout / 1000} s` : err.message;
    setHealth("down", `the API at ${location.host} is unreachable (${why})`);
    throw new ApiError(0, { error: "API unreachable", detail: why }, path);
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.status === 503 && data && data.error === "database unavailable") {
    setHealth("db_down", `database unavailable: ${data.detail}`);
  } else if (res.status < 500) {
    setHealth("up");
  }
  if (!res.ok) throw new ApiError(res.status, data, path);
  return data;
}

// GET /health every few seconds: notices the API (or its database) coming back without
// any user action, so the pages can reload what failed.
export function watchHealth(intervalMs = 5000) {
  const probe = async () => {
    try {
      const res = await fetch("/health", { cache: "no-store" });
      const data = await res.json().catch(() => null);
      const parts = (data && data.components) || {};
      const streaming = (parts.streaming && parts.streaming.status) || "unknown";
      if (res.status === 503) {
        const db = parts.database;
        setHealth("db_down", `database unavailable: ${(db && db.detail) || "see /health"}`, streaming);
      } else {
        setHealth("up", "", streaming);
      }
    } catch (err) {
      setHealth("down", `the API at ${location.host} is unreachable (${err.message})`);
    }
  };
  probe();
  setInterval(probe, intervalMs);
  return probe; // to check at once (tests, debugging)
}
