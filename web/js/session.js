// The operator's credential for this browser tab: the bearer token of the local stack, or temporary
// AWS credentials for an API with IAM auth (signed per request by sigv4.js). Kept in sessionStorage
// (this tab only, gone when it closes), never in localStorage or a cookie. A sign-in link
// `/console/#token=...` (printed by `ota-local console`) is read once and removed from the address bar.
// Does not: check a credential (the API does, on the first request).

const KEY = "ota-console-token";
const AWS_KEY = "ota-console-aws";

export function takeTokenFromLink() {
  const match = /^#token=([^&]+)/.exec(window.location.hash);
  if (!match) return;
  saveToken(decodeURIComponent(match[1]));
  history.replaceState(null, "", window.location.pathname + "#/fleet");
}

export function readToken() {
  return sessionStorage.getItem(KEY) || "";
}

export function saveToken(token) {
  sessionStorage.setItem(KEY, token.trim());
}

export function readCredentials() {
  try {
    return JSON.parse(sessionStorage.getItem(AWS_KEY) || "null");
  } catch {
    return null;
  }
}

export function saveCredentials({ accessKeyId, secretAccessKey, sessionToken, region }) {
  sessionStorage.setItem(AWS_KEY, JSON.stringify({ accessKeyId: accessKeyId.trim(), secretAccessKey: secretAccessKey.trim(),
                                                  sessionToken: sessionToken.trim(), region: region.trim() }));
}

export function hasCredential(mode) {
  return mode === "sigv4" ? Boolean(readCredentials()) : Boolean(readToken());
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(AWS_KEY);
}
