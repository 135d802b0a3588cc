// The one place that talks to /api: session cookie + CSRF header, errors as readable messages.

const CSRF_COOKIE = "autodl_csrf";
const CSRF_HEADER = "X-CSRF-Token";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export class ApiError extends Error {
  /** ``errors``: the server's field errors of a 422, ``[{loc, msg, type}]``. */
  constructor(status, message, errors = []) {
    super(message);
    this.status = status;
    this.errors = Array.isArray(errors) ? errors : [];
  }
}

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return "";
}

const NETWORK_MESSAGE = "Could not reach the server. Check the connection and try again.";

function messageFor(status, body) {
  const detail = body && typeof body === "object" ? body.detail : null;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || String(d)).join("; ");
  if (status === 413) return "That upload is larger than this server accepts.";
  if (status >= 500) return "The server hit an error. Try again in a moment.";
  return `The request failed (HTTP ${status}).`;
}

function toLogin() {
  const here = window.location.pathname + window.location.search;
  window.location.assign(`/login?next=${encodeURIComponent(here)}`);
}

/** Call the API; returns parsed JSON (or null for 204); throws ApiError with a readable message. */
export async function api(path, { method = "GET", json, form, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (!SAFE.has(method)) headers[CSRF_HEADER] = csrfToken();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) body = form;
  let response;
  try {
    response = await fetch(`/api${path}`, { method, headers, body, signal, credentials: "same-origin" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, NETWORK_MESSAGE);
  }
  if (response.status === 401 && !path.startsWith("/auth/")) {
    toLogin();
    throw new ApiError(401, "Your session has ended. Log in again.");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, messageFor(response.status, data), data?.errors);
  return data;
}

/**
 * POST a multipart form with upload progress (fetch cannot report bytes sent).
 * Returns {promise, abort}; onProgress(loaded, total) fires as bytes leave the browser.
 */
export function uploadForm(path, form, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", `/api${path}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader(CSRF_HEADER, csrfToken());
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        data = null;
      }
      if (xhr.status === 401) toLogin();
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, messageFor(xhr.status, data)));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, NETWORK_MESSAGE)));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "Upload cancelled.")));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
