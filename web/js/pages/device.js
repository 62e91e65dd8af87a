// One device: its inventory (state, model, agent, installed apps, certificate, last contact), its
// executions with their job's app@version and outcome, and its history (every execution's timeline,
// newest first). Polls every 3 s.

import { html } from "htm/preact";
import * as api from "../api.js";
import { ago, appVersions, when } from "../format.js";
import { usePoll } from "../hooks.js";
import { Badge, Empty, ErrorMessage, Loading, Progress } from "../ui.js";
import { failureReason } from "./jobs.js";
import { stageNote } from "./stages.js";

export function DevicePage({ epn, onSignIn }) {
  const { data, error, loading } = usePoll(async () => {
    const [device, list, jobs] = await Promise.all([
      api.get(api.path("/devices/{}", epn)), api.get(api.path("/devices/{}/executions", epn)), api.get("/jobs")]);
    return { device, executions: list.executions || [], jobs: new Map((jobs.jobs || []).map((j) => [j.job_id, j])) };
  }, 3000, [epn]);
  if (loading) return html`<section><h1>Device ${epn}</h1><${Loading} what="the device" /></section>`;
  if (!data) return html`<section><h1>Device ${epn}</h1><${ErrorMessage} error=${error} onSignIn=${onSignIn} /></section>`;
  const { device, executions, jobs } = data;
  const label = (jobId) => { const j = jobs.get(jobId); return j ? `${j.app}@${j.version}` : ""; };
  const history = executions.flatMap((e) => (e.timeline || []).map((t) => ({ ...t, job: e.job_id })))
    .sort((a, b) => (b.at || "").localeCompare(a.at || ""));
  const ordered = executions.slice().sort((a, b) => (b.last_activity || "").localeCompare(a.last_activity || ""));
  return html`<section class="device" data-epn=${device.epn}>
    <h1>Device ${device.epn} <${Badge} state=${device.state} /></h1>
    <${ErrorMessage} error=${error} onSignIn=${onSignIn} />
    <h2>Inventory</h2>
    <dl class="facts">
      <dt>model</dt><dd>${device.model}</dd>
      <dt>installed</dt><dd data-field="apps">${appVersions(device.apps).join(", ") || "none reported"}</dd>
      <dt>agent</dt><dd>${device.agent_version || "unknown"}</dd>
      <dt>last seen</dt><dd title=${when(device.last_seen)}>${ago(device.last_seen)}</dd>
      <dt>registered</dt><dd>${when(device.registered_at) || "not yet"}</dd>
      <dt>pre-authorised</dt><dd>${when(device.created_at)}</dd>
      <dt>certificate</dt><dd><code>${device.certificate_id || "none"}</code></dd>
    </dl>
    <h2>Executions</h2>
    ${ordered.length === 0 ? html`<${Empty}>no job has targeted this device</${Empty}>` : html`
    <table class="executions">
      <thead><tr><th>job</th><th>package</th><th>state</th><th>progress</th><th>last activity</th><th>reason</th></tr></thead>
      <tbody>${ordered.map((e) => html`<tr data-job=${e.job_id} data-state=${e.state}>
        <td><a href=${`#/jobs/${encodeURIComponent(e.job_id)}`}>${e.job_id}</a></td>
        <td>${label(e.job_id)}</td>
        <td><${Badge} state=${e.state} step=${e.step} /></td>
        <td><${Progress} value=${e.percent} state=${e.state} label=${`job ${e.job_id}`} /></td>
        <td title=${when(e.last_activity)}>${ago(e.last_activity)}</td>
        <td class="reason">${failureReason(e) || stageNote(e)}</td>
      </tr>`)}</tbody>
    </table>`}
    <h2>History</h2>
    ${history.length === 0 ? html`<${Empty}>nothing yet</${Empty}>` : html`<ol class="timeline history">${history.map((t) => html`<li>
      <time title=${t.at}>${when(t.at)}</time> <a href=${`#/jobs/${encodeURIComponent(t.job)}`}>${label(t.job) || t.job}</a>
      <${Badge} state=${t.state} step=${t.step} />${t.reason ? html` <span class="reason">${t.reason}</span>` : null}</li>`)}</ol>`}
  </section>`;
}
