// Talking to the peakwatch API. The session lives in an HttpOnly cookie set by the login route, so the
// dashboard never sees the token: same-origin requests carry it, and EventSource sends it by itself.

const BASE = "/api/v1";
const SESSION_HINT = "peakwatch.session";
// Whether a login happened in this browser. Only a hint: it saves a request that would answer 401 on a
// first visit (the browser logs every 401 response to the console), never a credential.

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

async function request(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(BASE + path, init);
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // not JSON (a proxy's error page): keep the status text
    }
    if (response.status === 401) localStorage.removeItem(SESSION_HINT);
    throw new ApiError(response.status, detail);
  }
  return response.status === 204 ? null : response.json();
}

const get = (path) => request("GET", path);
const query = (params) =>
  new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null)).toString();

export const hasSessionHint = () => localStorage.getItem(SESSION_HINT) !== null;

let principal = null;

/** Whether the logged-in user may acknowledge alerts (operators and admins; viewers only look). */
export const mayAcknowledge = () => principal !== null && principal.role !== "viewer";

export async function login(username, password) {
  const session = await request("POST", "/auth/login", { username, password });
  localStorage.setItem(SESSION_HINT, "1");
  principal = session.principal;
  return principal;
}

export async function logout() {
  try {
    await request("POST", "/auth/logout");
  } finally {
    localStorage.removeItem(SESSION_HINT);
  }
}

export async function me() {
  principal = await get("/auth/me");
  return principal;
}
export const changePassword = (currentPassword, newPassword) =>
  request("POST", "/auth/password", { current_password: currentPassword, new_password: newPassword });

export const sites = () => get("/sites");
export const site = (id) => get(`/sites/${encodeURIComponent(id)}`);
export const meters = (id) => get(`/sites/${encodeURIComponent(id)}/meters`);

/** The latest closed window of a period, or null when none has closed yet (404). */
export async function latestKpis(siteId, period = "1m") {
  try {
    return await get(`/sites/${encodeURIComponent(siteId)}/kpis/latest?${query({ period })}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/**
 * The newest 1-minute window of the last `withinMs`, else the newest day of the last 30, else null. The range
 * query answers 200 even when empty, so a site that is reporting never costs a 404 (which the browser
 * would log as an error).
 */
export async function recentKpis(siteId, withinMs = 15 * 60_000) {
  const now = Date.now();
  const windows = await kpiSeries(siteId, "1m", now - withinMs, now + 60_000);
  if (windows.length) return windows.at(-1);
  // quiet for a while: the newest day window of the last 30 days (a range query: 200 even when empty)
  const days = await kpiSeries(siteId, "1d", now - 30 * 86_400_000, now + 86_400_000, 10000, false);
  return days.at(-1) ?? null;
}

/** Windows of a period; the period in progress (`status: "open"`) last unless `includeOpen` is false. */
export const kpiSeries = (siteId, period, fromMs, toMs, limit = 10000, includeOpen = true) =>
  get(`/sites/${encodeURIComponent(siteId)}/kpis?${query({ period, from: fromMs, to: toMs, limit, include_open: includeOpen ? undefined : false })}`);

/** Where the CSV of the same series downloads from (the browser sends the cookie). */
export const kpiCsvUrl = (siteId, period, fromMs, toMs) =>
  `${BASE}/sites/${encodeURIComponent(siteId)}/kpis.csv?${query({ period, from: fromMs, to: toMs })}`;

/** Refused input received since `fromMs`, counted by reason and by site (within the user's scope). */
export const deadLetterCounts = (fromMs) => get(`/dead-letters/counts?${query({ from: fromMs })}`);

/** Where the matching dead letters are listed, newest first (the browser sends the cookie). */
export const deadLettersUrl = (params) => `${BASE}/dead-letters?${query(params)}`;

export const alerts = (params) => get(`/alerts?${query({ limit: 1000, ...params })}`);
export const acknowledge = (alertId) => request("POST", `/alerts/${alertId}/acknowledge`);

/**
 * Live alert changes (Server-Sent Events). `onChange` gets the snapshot's list or one changed alert;
 * EventSource reconnects by itself, and each reconnection starts with a fresh snapshot.
 * Returns a function that closes the stream.
 */
export function alertStream(onChange) {
  let source = null;
  let retry = null;
  const open = () => {
    source = new EventSource(`${BASE}/alerts/stream`);
    source.addEventListener("snapshot", (event) => onChange(JSON.parse(event.data)));
    source.addEventListener("alert", (event) => onChange([JSON.parse(event.data)]));
    // EventSource retries a dropped connection by itself, but gives up for good after an HTTP error
    // status (a 502 while the API restarts): then open a new one a little later
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED && retry === null) {
        retry = setTimeout(() => {
          retry = null;
          open();
        }, 5_000);
      }
    });
  };
  open();
  return () => {
    clearTimeout(retry);
    source.close();
  };
}
