// What a job's fan-out and staging do, as the job page shows them (docs/api.md "Asynchronous fan-out",
// "Staged rollouts (waves)", "A delta job's fallback"): the fan-out's progress while the targets are
// still being expanded, the waves (request, current wave, total, per-wave counters), the fallback
// package and which executions take it, and why an execution waits or was skipped. Pure rendering
// from the job and execution views the API returns; no requests, no rules of its own.

import { html } from "htm/preact";
import { TERMINAL, ago, when } from "../format.js";
import { Badge, Counts, Progress } from "../ui.js";

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

// "1 device per wave, each 300 s after the previous one finished": the request, as the API echoes it
export function waveSpec(waves) {
  const per = waves.size ? `${plural(waves.size, "device")} per wave`
    : `${waves.percent}% of the targets per wave${waves.wave_size ? ` (${plural(waves.wave_size, "device")})` : ""}`;
  const next = waves.interval_seconds !== undefined
    ? `each wave starts ${waves.interval_seconds} s after the previous one started`
    : `each wave starts ${waves.pause_seconds ?? 0} s after the previous one finished`;
  return `${per}; ${next}`;
}

// where the rollout stands: the current wave (the API counts waves from 0) of how many
export function wavePosition(waves) {
  if (!waves) return "";
  const total = waves.total === null || waves.total === undefined ? null : waves.total;
  if (waves.current === null || waves.current === undefined) {
    return total === null ? "no wave started yet (counting the targets)" : `no wave started yet (${plural(total, "wave")})`;
  }
  const of = total === null ? "(the number of waves is still being counted)" : `(of waves 0..${total - 1})`;
  return `wave ${waves.current} ${of}`;
}

// the explanation an unfinished or skipped execution's row carries (failures have their own)
export function stageNote(execution) {
  if (execution.state === "WAITING") {
    return execution.wave === null || execution.wave === undefined
      ? "waits for its wave (the wave size is known once every target is counted)"
      : `waits for wave ${execution.wave} to start`;
  }
  if (execution.state === "SKIPPED") {
    const reasons = (execution.timeline || []).map((t) => t.reason).filter(Boolean);
    return execution.reason || reasons[reasons.length - 1] || "not eligible: never sent";
  }
  return "";
}

export function takesFallback(job, execution) {
  return Boolean(execution.fallback) || (job.fallback_package_id && execution.package_id
    && execution.package_id !== job.package_id);
}

// the package an execution takes, on a delta job with a fallback: the delta, or the full package
export function PackageCell({ job, execution }) {
  if (execution.state === "SKIPPED") return html`<span class="muted" data-field="package">none</span>`;
  return takesFallback(job, execution)
    ? html`<span class="badge fallback" data-field="package" data-fallback="true" title=${execution.package_id}>fallback: full package</span>`
    : html`<span class="badge delta" data-field="package" data-fallback="false" title=${execution.package_id || job.package_id}>delta</span>`;
}

// while the background fan-out still expands the targets: how far it got (the job's own counters)
export function FanoutProgress({ job }) {
  if (job.fanout_done !== false) return null;
  const total = job.target_spec?.devices; // an explicit list; a model's devices are counted as they are reached
  return html`<div class="message notice fanout" data-field="fanout">
    <strong>fan-out in progress</strong>${`: ${job.targets_resolved}${total ? ` of ${total}` : ""} target(s) resolved, ` +
      `${job.executions_created} execution(s) created${job.target_spec?.model ? ` (every registered device of ${job.target_spec.model})` : ""}`}
    ${total ? html`<${Progress} value=${(100 * job.targets_resolved) / total} state="ACTIVE" label="fan-out" />` : null}
  </div>`;
}

// the facts rows (inside the job's <dl>) about its targets and fallback
export function TargetFacts({ job }) {
  const spec = job.target_spec?.model ? `every registered device of ${job.target_spec.model}${job.continuous ? " (continuous)" : ""}`
    : `${plural(job.target_spec?.devices ?? 0, "listed device")}`;
  const skipped = job.counts?.SKIPPED || 0;
  return html`
    <dt>targets</dt><dd data-field="targets">${spec}: ${job.targets_resolved} resolved, ${job.executions_created} sent or waiting${
      skipped ? `, ${skipped} skipped` : ""}${job.fanout_done === false ? " (fan-out in progress)" : ""}</dd>
    ${job.fallback_package_id ? html`<dt>fallback</dt><dd data-field="fallback"><code>${job.fallback_package_id}</code>${
      ", the full package for a device not on the delta's base: "}<strong data-field="fallback-executions">${
      plural(job.fallback_executions || 0, "execution")}</strong> take it</dd>` : null}`;
}

function WaveRow({ wave, current }) {
  const counts = wave.counts || {};
  const all = Object.values(counts).reduce((a, b) => a + b, 0);
  const done = TERMINAL.reduce((n, s) => n + (counts[s] || 0), 0);
  const state = wave.wave === current ? (done === all && all ? "finished" : "current") : "finished";
  return html`<tr data-wave=${wave.wave} data-state=${state}>
    <td>wave ${wave.wave}${wave.wave === current ? html` <${Badge} state="CURRENT" />` : null}</td>
    <td><${Progress} value=${all ? (100 * done) / all : 0} state=${done === all && all ? "COMPLETED" : "ACTIVE"}
                     label=${`wave ${wave.wave}`} /></td>
    <td><${Counts} counts=${counts} /></td>
  </tr>`;
}

// a staged job's waves: the request, the current wave, when it started/finished, and each recent wave
export function WavesPanel({ job }) {
  const waves = job.waves;
  if (!waves) return null;
  const later = waves.total !== null && waves.total !== undefined && waves.current !== null
    ? waves.total - 1 - waves.current : null;
  return html`<div class="waves" data-field="waves" data-current=${waves.current ?? ""} data-total=${waves.total ?? ""}>
    <h3>Waves</h3>
    <p><span data-field="wave-spec">${waveSpec(waves)}</span>${". "}<strong data-field="wave-position">${wavePosition(waves)}</strong>${waves.current_started_at
        ? html`, started <span title=${when(waves.current_started_at)}>${ago(waves.current_started_at)}</span>` : null}${
        waves.current_finished_at ? html`, finished <span title=${when(waves.current_finished_at)}>${ago(waves.current_finished_at)}</span>` : null}${
        later ? html`; <span data-field="waves-later">${plural(later, "later wave")} not started (their executions are WAITING)</span>` : null}</p>
    ${waves.recent?.length ? html`<table class="wave-list">
      <thead><tr><th>wave</th><th>finished executions</th><th>executions</th></tr></thead>
      <tbody>${waves.recent.map((w) => html`<${WaveRow} wave=${w} current=${waves.current} key=${w.wave} />`)}</tbody>
    </table>` : null}
  </div>`;
}
