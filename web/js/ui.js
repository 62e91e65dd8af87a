// Shared view pieces: API error messages, progress bars, state badges, loading and empty states.
// Pure rendering from props; no requests.

import { html } from "htm/preact";
import { percent } from "./format.js";

export function ErrorMessage({ error, onSignIn }) {
  if (!error) return null;
  const status = error.status ? ` (HTTP ${error.status})` : "";
  const signIn = onSignIn && [401, 403].includes(error.status);
  return html`<div class="message error" role="alert" data-error-code=${error.code || ""}>
    <strong>${error.code || "Error"}${status}</strong>: ${error.message}
    ${error.field ? html` <span class="field">field <code>${error.field}</code></span>` : null}
    ${signIn ? html` <button type="button" onClick=${onSignIn}>sign in again</button>` : null}
  </div>`;
}

export function Notice({ children }) {
  return html`<div class="message notice" role="status">${children}</div>`;
}

export function Progress({ value, state, label }) {
  const shown = Math.max(0, Math.min(100, value ?? 0));
  return html`<div class="progress" data-state=${state || ""}>
    <div class="bar" role="progressbar" aria-label=${label || "progress"} aria-valuemin="0" aria-valuemax="100"
         aria-valuenow=${shown.toFixed(1)}>
      <span style=${{ width: `${shown}%` }}></span>
    </div>
    <span class="percent">${percent(shown)}</span>
  </div>`;
}

export function Badge({ state, step }) {
  if (!state) return null;
  return html`<span class=${`badge s-${state.toLowerCase()}`} data-field="state">${state}${
    step && state === "IN_PROGRESS" ? html` <small>${step.toLowerCase()}</small>` : null}</span>`;
}

export function Loading({ what }) {
  return html`<p class="muted" aria-busy="true">loading ${what}…</p>`;
}

export function Empty({ children }) {
  return html`<p class="muted empty">${children}</p>`;
}

export function Counts({ counts }) {
  const parts = Object.entries(counts || {}).filter(([, n]) => n > 0);
  if (!parts.length) return html`<span class="muted">no executions</span>`;
  return html`<span class="counts">${parts.map(([state, n]) =>
    html`<span class=${`count s-${state.toLowerCase()}`} title=${state}>${n} ${state.toLowerCase()}</span>`)}</span>`;
}
