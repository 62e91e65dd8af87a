// The console's HTTP client for the operator API (docs/api.md): JSON in and out, the operator's
// credential on every request (the local stack's bearer token, or a SigV4 signature from temporary AWS
// credentials when config.json says "auth": "sigv4"), and every refusal as an ApiError carrying the
// API's {"error", "message", "field"}. Does not: retry, cache, or decide what a page shows.

import { readCredentials, readToken } from "./session.js";
import { sign } from "./sigv4.js";

let apiUrl = "";
let auth = "bearer";
const unauthorizedListeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

export function configure(config) {
  apiUrl = (config.api_url || "").replace(/\/$/, "");
  auth = config.auth === "sigv4" ? "sigv4" : "bearer";
}

export function authMode() {
  return auth;
}

export function apiLocation() {
  return apiUrl || window.location.origin;
}

export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

async function errorFrom(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  const code = body.error || body.Code || `HTTP ${response.status}`;
  const message = body.message || body.Message || response.statusText || "the API refused the request";
  return new ApiError(response.status, code, message, body.field);
}

export async function request(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const credentials = auth === "sigv4" ? readCredentials() : null;
  const token = auth === "bearer" ? readToken() : "";
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (credentials) {
    const url = new URL(apiUrl + path, window.location.href).href;
    Object.assign(init.headers, await sign({ method, url, body: init.body || "", credentials, region: credentials.region,
                                             contentType: init.body ? "application/json" : null }));
  }
  let response;
  try {
    response = await fetch(apiUrl + path, init);
  } catch (err) {
    throw new ApiError(0, "Unreachable", `the API cannot be reached at ${apiLocation()} (${err.message})`);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 || response.status === 403) unauthorizedListeners.forEach((f) => f(error));
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body, headers) => request("POST", path, body, headers);

export function path(template, ...ids) {
  // encode every id put into a path: a hostile name must stay one segment
  return template.replace(/\{\}/g, () => encodeURIComponent(ids.shift()));
}
