// The fleet page: every device with model, state, installed versions and last contact, filters, and
// the versions chart. Polls GET /devices every 5 s.

import { html } from "htm/preact";
import { useState } from "preact/hooks";
import * as api from "../api.js";
import { VersionsChart } from "../charts.js";
import { ago, appVersions, when } from "../format.js";
import { usePoll } from "../hooks.js";
import { Badge, Empty, ErrorMessage, Loading } from "../ui.js";

function matches(device, f) {
  const versions = appVersions(device.apps);
  return (!f.model || device.model === f.model) && (!f.state || device.state === f.state) &&
    (!f.version || versions.includes(f.version)) &&
    (!f.text || device.epn.toLowerCase().includes(f.text.toLowerCase()));
}

function Select({ label, name, value, options, onChange }) {
  return html`<label>${label}
    <select name=${name} value=${value} onChange=${(e) => onChange(e.target.value)}>
      <option value="">all</option>
      ${options.map((o) => html`<option value=${o}>${o}</option>`)}
    </select></label>`;
}

export function FleetPage({ onSignIn }) {
  const { data, error, loading } = usePoll(() => api.get("/devices"), 5000, []);
  const [filters, setFilters] = useState({ model: "", state: "", version: "", text: "" });
  const set = (key) => (value) => setFilters({ ...filters, [key]: value });
  const devices = (data?.devices || []).slice().sort((a, b) => a.epn.localeCompare(b.epn));
  const uniq = (values) => [...new Set(values)].sort();
  const shown = devices.filter((d) => matches(d, filters));
  return html`<section>
    <h1>Fleet</h1>
    <${ErrorMessage} error=${error} onSignIn=${onSignIn} />
    ${loading ? html`<${Loading} what="devices" />` : html`
      <${VersionsChart} devices=${devices.filter((d) => d.state === "REGISTERED")} />
      <form class="filters" onSubmit=${(e) => e.preventDefault()}>
        <${Select} label="model" name="model" value=${filters.model} options=${uniq(devices.map((d) => d.model))}
                   onChange=${set("model")} />
        <${Select} label="state" name="state" value=${filters.state} options=${uniq(devices.map((d) => d.state))}
                   onChange=${set("state")} />
        <${Select} label="version" name="version" value=${filters.version}
                   options=${uniq(devices.flatMap((d) => appVersions(d.apps)))} onChange=${set("version")} />
        <label>EPN contains <input name="text" value=${filters.text} onInput=${(e) => set("text")(e.target.value)} /></label>
        <span class="muted">${shown.length} of ${devices.length} devices</span>
      </form>
      ${shown.length === 0 ? html`<${Empty}>no device matches</${Empty}>` : html`
      <table class="devices">
        <thead><tr><th>device</th><th>model</th><th>state</th><th>installed</th><th>agent</th><th>last seen</th></tr></thead>
        <tbody>${shown.map((d) => html`<tr data-epn=${d.epn}>
          <td><a href=${`#/devices/${encodeURIComponent(d.epn)}`}>${d.epn}</a></td>
          <td>${d.model}</td>
          <td><${Badge} state=${d.state} /></td>
          <td data-field="apps">${appVersions(d.apps).join(", ") || html`<span class="muted">none</span>`}</td>
          <td>${d.agent_version || ""}</td>
          <td title=${when(d.last_seen)}>${ago(d.last_seen)}</td>
        </tr>`)}</tbody>
      </table>`}`}
  </section>`;
}
