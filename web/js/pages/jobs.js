// The jobs page: every job with its overall progress; the selected job (#/jobs/<id>) live, one progress
// bar per device, failure reasons, the timeline of each execution, a progress-over-time chart and a
// cancel button; a staged job's waves, a delta job's fallback and the fan-out's progress (stages.js).
// The job list polls every 3 s; an ACTIVE job polls every second until it is over.

import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import * as api from "../api.js";
import { ProgressChart } from "../charts.js";
import { FAILED, ago, bytes, when } from "../format.js";
import { usePoll } from "../hooks.js";
import { Badge, Counts, Empty, ErrorMessage, Loading, Progress } from "../ui.js";
import { FanoutProgress, PackageCell, TargetFacts, WavesPanel, stageNote } from "./stages.js";

const LIVE_MS = 1000;
const MAX_SAMPLES = 3600; // an hour of live samples in the chart

export function failureReason(execution) {
  if (!FAILED.includes(execution.state) && execution.state !== "CANCELED") return "";
  const reasons = (execution.timeline || []).map((t) => t.reason).filter(Boolean);
  return reasons[reasons.length - 1] || execution.note || "";
}

function JobList({ selected, onSignIn }) {
  const { data, error, loading } = usePoll(() => api.get("/jobs"), 3000, []);
  const jobs = (data?.jobs || []).slice().sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  return html`<div>
    <${ErrorMessage} error=${error} onSignIn=${onSignIn} />
    ${loading ? html`<${Loading} what="jobs" />` : jobs.length === 0 ? html`<${Empty}>no job yet: <a href="#/rollout">create a rollout</a></${Empty}>` : html`
    <table class="jobs">
      <thead><tr><th>job</th><th>package</th><th>state</th><th>progress</th><th>devices</th><th>created</th></tr></thead>
      <tbody>${jobs.map((j) => html`<tr data-job=${j.job_id} class=${j.job_id === selected ? "selected" : ""}>
        <td><a href=${`#/jobs/${encodeURIComponent(j.job_id)}`}>${j.job_id}</a></td>
        <td>${j.app}@${j.version} <span class="muted">${j.mode}</span></td>
        <td><${Badge} state=${j.state} /></td>
        <td><${Progress} value=${j.percent} state=${j.state} label=${`job ${j.job_id}`} /></td>
        <td><${Counts} counts=${j.counts} />${j.waves?.current !== null && j.waves?.current !== undefined
          ? html` <small class="muted" data-field="wave">wave ${j.waves.current}${j.waves.total ? ` (of 0..${j.waves.total - 1})` : ""}</small>` : null}${
          j.fanout_done === false ? html` <small class="muted" data-field="fanout">fan-out: ${j.targets_resolved} resolved</small>` : null}</td>
        <td title=${when(j.created_at)}>${ago(j.created_at)}</td>
      </tr>`)}</tbody>
    </table>`}
  </div>`;
}

function CancelButton({ job, onDone }) {
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  if (job.state !== "ACTIVE") return null;
  const cancel = async () => {
    setBusy(true);
    try {
      await api.post(api.path("/jobs/{}/cancel", job.job_id));
      setError(null);
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      setAsking(false);
    }
  };
  return html`<span class="cancel">
    ${asking
      ? html`<button type="button" class="danger" disabled=${busy} onClick=${cancel}>confirm: cancel every unfinished execution</button>
             <button type="button" onClick=${() => setAsking(false)}>keep running</button>`
      : html`<button type="button" class="danger" onClick=${() => setAsking(true)}>cancel job</button>`}
    <${ErrorMessage} error=${error} />
  </span>`;
}

function Timeline({ timeline }) {
  return html`<ol class="timeline">${(timeline || []).map((t) => html`<li>
    <time title=${t.at}>${when(t.at)}</time> <${Badge} state=${t.state} step=${t.step} />
    ${t.step && t.state !== "IN_PROGRESS" ? html` <small>${t.step.toLowerCase()}</small>` : null}
    ${t.reason ? html` <span class="reason">${t.reason}</span>` : null}</li>`)}</ol>`;
}

// executions that did not succeed, grouped by their reason: what an operator reads first
function FailureSummary({ executions }) {
  const groups = new Map();
  for (const e of executions) {
    const reason = failureReason(e);
    if (!reason || !FAILED.includes(e.state)) continue;
    const key = `${e.state}: ${reason}`;
    groups.set(key, [...(groups.get(key) || []), e.epn]);
  }
  if (!groups.size) return null;
  return html`<div class="message error failures" data-field="failures"><strong>Failures by reason</strong>
    <ul>${[...groups.entries()].sort((a, b) => b[1].length - a[1].length).map(([reason, epns]) =>
      html`<li>${epns.length} × ${reason} <small class="muted">(${epns.slice(0, 5).join(", ")}${epns.length > 5 ? ", …" : ""})</small></li>`)}</ul>
  </div>`;
}

function JobDetail({ id, onSignIn }) {
  const started = useRef(Date.now());
  const [samples, setSamples] = useState([]);
  useEffect(() => { started.current = Date.now(); setSamples([]); }, [id]);
  const { data, error, loading, refresh } = usePoll(async () => {
    const [job, list] = await Promise.all([api.get(api.path("/jobs/{}", id)),
                                           api.get(api.path("/jobs/{}/executions", id))]);
    return { job, executions: list.executions || [], nextCursor: list.next_cursor || null };
  }, LIVE_MS, [id], (d) => d.job.state === "ACTIVE");
  useEffect(() => {
    if (!data) return;
    const counts = data.job.counts || {};
    const sample = { t: (Date.now() - started.current) / 1000, percent: data.job.percent,
                     succeeded: counts.SUCCEEDED || 0, failed: FAILED.reduce((n, s) => n + (counts[s] || 0), 0) };
    setSamples((old) => [...old.slice(-(MAX_SAMPLES - 1)), sample]);
  }, [data]);
  if (loading) return html`<${Loading} what=${`job ${id}`} />`;
  if (!data) return html`<${ErrorMessage} error=${error} onSignIn=${onSignIn} />`;
  const { job, executions, nextCursor } = data;
  const rows = executions.slice().sort((a, b) => a.epn.localeCompare(b.epn));
  const staged = Boolean(job.waves);
  const withFallback = Boolean(job.fallback_package_id);
  return html`<div class="job" data-job-detail=${job.job_id} data-state=${job.state}>
    <h2>${job.app}@${job.version} <small class="muted">${job.job_id}</small> <${Badge} state=${job.state} /></h2>
    <${ErrorMessage} error=${error} onSignIn=${onSignIn} />
    <dl class="facts">
      <dt>mode</dt><dd>${job.mode}${job.mode === "block" ? `, ${bytes(job.block_size)} blocks × ${job.block_count}, window ${job.window}` : ""}</dd>
      <dt>package</dt><dd><code>${job.package_id}</code></dd>
      <dt>created</dt><dd>${when(job.created_at)}</dd>
      <${TargetFacts} job=${job} />
      <dt>delivered</dt><dd>${bytes(job.bytes_done)} of ${bytes(job.bytes_total)}</dd>
      ${job.abort ? html`<dt>abort at</dt><dd>${job.abort.failure_threshold_percent}% failed of ≥ ${job.abort.min_executed} executed; ${job.max_retries} retries</dd>` : null}
    </dl>
    <div class="overall"><${Progress} value=${job.percent} state=${job.state} label="whole job" /> <${Counts} counts=${job.counts} />
      <${CancelButton} job=${job} onDone=${refresh} />
      ${job.state === "ACTIVE" ? html`<span class="live" title="refreshing every second">● live</span>` : null}</div>
    <${FanoutProgress} job=${job} />
    <${WavesPanel} job=${job} />
    <${FailureSummary} executions=${executions} />
    <${ProgressChart} samples=${samples} />
    <table class="executions">
      <thead><tr><th>device</th>${staged ? html`<th>wave</th>` : null}${withFallback ? html`<th>package</th>` : null}<th>state</th><th>progress</th><th>blocks</th><th>retransmitted</th><th>last activity</th><th>reason</th></tr></thead>
      <tbody>${rows.map((e) => html`<tr data-epn=${e.epn} data-state=${e.state} data-wave=${e.wave ?? ""}>
        <td><a href=${`#/devices/${encodeURIComponent(e.epn)}`}>${e.epn}</a>${e.attempt ? html` <small>attempt ${e.attempt + 1}</small>` : null}</td>
        ${staged ? html`<td data-field="wave">${e.wave ?? "–"}</td>` : null}
        ${withFallback ? html`<td><${PackageCell} job=${job} execution=${e} /></td>` : null}
        <td><${Badge} state=${e.state} step=${e.step} /></td>
        <td><${Progress} value=${e.percent} state=${e.state} label=${`device ${e.epn}`} /></td>
        <td>${e.blocks_acked}/${e.blocks_total}</td>
        <td>${e.retransmissions}</td>
        <td title=${when(e.last_activity)}>${ago(e.last_activity)}</td>
        <td class="reason" data-field="reason">${failureReason(e) || stageNote(e)}
          <details><summary>timeline</summary><${Timeline} timeline=${e.timeline} /></details></td>
      </tr>`)}</tbody>
    </table>
    ${nextCursor ? html`<p class="muted" data-field="more">the first ${rows.length} executions (by EPN) of ${job.targets_resolved}</p>` : null}
  </div>`;
}

export function JobsPage({ id, onSignIn }) {
  return html`<section>
    <h1>Jobs</h1>
    ${id ? html`<${JobDetail} id=${id} onSignIn=${onSignIn} key=${id} />` : null}
    <h2 class="list-title">All jobs</h2>
    <${JobList} selected=${id} onSignIn=${onSignIn} />
  </section>`;
}
