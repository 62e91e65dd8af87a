// The packages page: uploads grouped by app, newest version first, with their scan verdict (reasons
// for REJECTED ones) and a link to roll an AVAILABLE one out. The API has no releases yet: a package
// is shown by app@version. Polls GET /packages every 5 s.

import { html } from "htm/preact";
import { useState } from "preact/hooks";
import * as api from "../api.js";
import { bytes, compareVersions, when } from "../format.js";
import { usePoll } from "../hooks.js";
import { Badge, Empty, ErrorMessage, Loading } from "../ui.js";

export function packageLabel(p) {
  const m = p.manifest;
  if (!m) return p.upload_id;
  return m.delta ? `${m.app}@${m.base_version}..${m.version}` : `${m.app}@${m.version}`;
}

function groups(packages) {
  const byApp = new Map();
  for (const p of packages) {
    const app = p.manifest?.app || "(not readable or not scanned yet)";
    if (!byApp.has(app)) byApp.set(app, []);
    byApp.get(app).push(p);
  }
  for (const list of byApp.values()) {
    list.sort((a, b) => compareVersions(b.manifest?.version || "0", a.manifest?.version || "0") ||
      (b.created_at || "").localeCompare(a.created_at || ""));
  }
  return [...byApp.entries()].sort(([a], [b]) => a.localeCompare(b));
}

export function PackagesPage({ onSignIn }) {
  const { data, error, loading } = usePoll(() => api.get("/packages"), 5000, []);
  const [state, setState] = useState("");
  const packages = (data?.packages || []).filter((p) => !state || p.state === state);
  return html`<section>
    <h1>Packages</h1>
    <p class="muted">Releases are not in the API yet: each package is shown as app@version (a delta as
      app@base..version), one row per upload.</p>
    <${ErrorMessage} error=${error} onSignIn=${onSignIn} />
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>state <select name="state" value=${state} onChange=${(e) => setState(e.target.value)}>
        <option value="">all</option>
        ${["AVAILABLE", "PENDING", "REJECTED", "RETIRED"].map((s) => html`<option value=${s}>${s}</option>`)}
      </select></label>
    </form>
    ${loading ? html`<${Loading} what="packages" />` : packages.length === 0 ? html`<${Empty}>no package</${Empty}>` :
      groups(packages).map(([app, list]) => html`<div class="group">
        <h2>${app}</h2>
        <table class="packages">
          <thead><tr><th>package</th><th>kind</th><th>models</th><th>state</th><th>size</th><th>uploaded</th><th></th></tr></thead>
          <tbody>${list.map((p) => html`<tr data-upload=${p.upload_id}>
            <td><strong>${packageLabel(p)}</strong><br /><code class="muted">${p.upload_id}</code></td>
            <td>${p.manifest ? `${p.manifest.kind}${p.manifest.delta ? " (delta)" : ""}` : ""}</td>
            <td>${(p.manifest?.models || []).join(", ")}</td>
            <td><${Badge} state=${p.state} />
              ${p.reasons?.length ? html`<ul class="reasons">${p.reasons.map((r) => html`<li>${r}</li>`)}</ul>` : null}</td>
            <td>${bytes(p.size)}</td>
            <td title=${p.scanned_at ? `scanned ${when(p.scanned_at)}` : ""}>${when(p.created_at)}</td>
            <td>${p.state === "AVAILABLE" ? html`<a class="button" href=${`#/rollout?package=${encodeURIComponent(p.upload_id)}`}>roll out</a>` : null}</td>
          </tr>`)}</tbody>
        </table></div>`)}
  </section>`;
}
