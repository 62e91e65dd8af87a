// Creating a rollout: a package by app@version (for a delta, optionally a fallback full package),
// targets by model or by devices, mode, block size, window, timeouts, retries, the abort threshold and
// staged waves (size or percent, pause or interval); an estimate of what it sends; POST /jobs with an
// Idempotency-Key (a double click makes one job), then the job's live page. The form does not check
// bounds itself: the API does, and its message (naming the field) is shown next to the form.

import { html } from "htm/preact";
import { useMemo, useRef, useState } from "preact/hooks";
import * as api from "../api.js";
import { bytes } from "../format.js";
import { usePoll } from "../hooks.js";
import { ErrorMessage, Loading, Notice } from "../ui.js";
import { packageLabel } from "./packages.js";

const DEFAULTS = { mode: "block", block_size: "32768", window: "64", stall_seconds: "300", total_seconds: "604800",
                   max_retries: "0", failure_threshold_percent: "50", min_executed: "10" };
const IOT_UNIT = 5 * 1024; // IoT Core bills messages in 5 KB units

const WAVES = { kind: "none", value: "", gate: "pause", seconds: "" };

const newKey = () => `console-${crypto.randomUUID()}`;

function number(text) {
  return /^-?\d+$/.test(String(text).trim()) ? Number(text) : String(text); // the API says what is wrong
}

function Field({ label, name, value, onInput, hint, error, type = "text" }) {
  return html`<label class=${error === name ? "field invalid" : "field"}>${label}
    <input name=${name} type=${type} value=${value} onInput=${(e) => onInput(e.target.value)}
           aria-invalid=${error === name ? "true" : "false"} />
    ${hint ? html`<small class="muted">${hint}</small>` : null}</label>`;
}

// the body's `waves` from the form (docs/api.md "Staged rollouts"); values go as typed, the API judges them
export function wavesBody(waves) {
  if (waves.kind === "none") return undefined;
  const body = { [waves.kind]: number(waves.value) };
  if (String(waves.seconds).trim() !== "") body[`${waves.gate}_seconds`] = number(waves.seconds);
  return body;
}

function WavesFields({ waves, setWaves, field }) {
  const set = (name) => (value) => setWaves({ ...waves, [name]: value });
  return html`<fieldset class=${field.startsWith("waves") ? "invalid waves" : "waves"}><legend>Waves</legend>
    <label class="field">staged rollout
      <select name="wave-kind" value=${waves.kind} onChange=${(e) => set("kind")(e.target.value)}>
        <option value="none">no waves: every target at once</option>
        <option value="size">waves of a number of devices</option>
        <option value="percent">waves of a percentage of the targets</option>
      </select></label>
    ${waves.kind === "none" ? null : html`
      <${Field} label=${waves.kind === "size" ? "devices per wave" : "% of the eligible targets per wave"} name=${`waves.${waves.kind}`}
                value=${waves.value} onInput=${set("value")} error=${field} hint=${waves.kind === "size" ? "1..10000" : "1..100"} />
      <label class="field">the next wave starts
        <select name="wave-gate" value=${waves.gate} onChange=${(e) => set("gate")(e.target.value)}>
          <option value="pause">a pause after the previous wave finished</option>
          <option value="interval">an interval after the previous wave started</option>
        </select></label>
      <${Field} label=${waves.gate === "pause" ? "pause (s)" : "interval (s)"} name=${`waves.${waves.gate}_seconds`} value=${waves.seconds}
                onInput=${set("seconds")} error=${field} hint=${waves.gate === "pause" ? "0..604800, empty: 0" : "1..604800"} />`}
  </fieldset>`;
}

// a delta's fallback: a full package of its app (same version first) for devices not on its base
function FallbackField({ pkg, packages, value, onChange, field }) {
  if (!pkg?.manifest?.delta) return null;
  const { app, version } = pkg.manifest;
  const full = packages.filter((p) => p.manifest && !p.manifest.delta && p.manifest.app === app)
    .sort((a, b) => Number(b.manifest.version === version) - Number(a.manifest.version === version));
  return html`<label class=${field === "fallback_package_id" ? "field invalid" : "field"}>fallback for devices not on ${app}@${pkg.manifest.base_version}
    <select name="fallback" value=${value} onChange=${(e) => onChange(e.target.value)}
            aria-invalid=${field === "fallback_package_id" ? "true" : "false"}>
      <option value="">none: such devices are SKIPPED</option>
      ${full.map((p) => html`<option value=${p.upload_id}>${packageLabel(p)} full, ${p.upload_id} (${(p.manifest.models || []).join(", ")}, ${bytes(p.size)})</option>`)}
    </select>
    <small class="muted">a full package of ${app}@${version}; a device without the app or on another older version takes it instead of being skipped</small></label>`;
}

function Estimate({ pkg, devices, form, fallback }) {
  if (!pkg || !devices) return null;
  // which devices take a fallback depends on their installed versions, known to the API (?dry_run=true)
  const aside = fallback ? ` Priced at the delta's size: each device not on its base takes the fallback instead, ${
    bytes(fallback.size)}.` : "";
  if (form.mode === "url") {
    return html`<${Notice}>${`estimate: ${devices} device(s) each download ${bytes(pkg.size)} over HTTPS ` +
      `(${bytes(pkg.size * devices)} in all).${aside}`}</${Notice}>`;
  }
  const size = Number(form.block_size);
  if (!(size > 0)) return null;
  const blocks = Math.ceil(pkg.size / size);
  const units = blocks * Math.ceil((size + 64) / IOT_UNIT);
  const acks = devices * Math.ceil(blocks / Math.max(1, Number(form.window) || 1));
  const text = `estimate: ${devices} device(s) × ${blocks} block(s) = ${devices * blocks} MQTT block messages ` +
    `(${devices * units} billed 5 KB units on IoT Core), at least ${acks} acks, ${bytes(pkg.size * devices)} in all.${aside}`;
  return html`<${Notice}>${text}</${Notice}>`;
}

export function RolloutPage({ query, onSignIn }) {
  const { data, error: loadError, loading } = usePoll(async () => {
    const [packages, devices] = await Promise.all([api.get("/packages?state=AVAILABLE"), api.get("/devices")]);
    return { packages: packages.packages || [], devices: devices.devices || [] };
  }, 0, []);
  const initial = query.get("package") || "";
  const [text, setText] = useState(null);
  const [upload, setUpload] = useState(initial);
  const [targetKind, setTargetKind] = useState("devices");
  const [model, setModel] = useState("");
  const [chosen, setChosen] = useState(new Set());
  const [form, setForm] = useState(DEFAULTS);
  const [waves, setWaves] = useState(WAVES);
  const [fallback, setFallback] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const key = useRef(newKey());
  const set = (name) => (value) => setForm({ ...form, [name]: value });

  const packages = data?.packages || [];
  const byUpload = new Map(packages.map((p) => [p.upload_id, p]));
  const shownText = text ?? (byUpload.has(upload) ? packageLabel(byUpload.get(upload)) : "");
  const candidates = useMemo(() => packages.filter((p) => packageLabel(p) === shownText.trim()), [packages, shownText]);
  const pkg = byUpload.get(upload) && packageLabel(byUpload.get(upload)) === shownText.trim() ? byUpload.get(upload)
    : candidates.length === 1 ? candidates[0] : null;
  const models = pkg?.manifest?.models || [];
  const registered = (data?.devices || []).filter((d) => d.state === "REGISTERED");
  const eligible = registered.filter((d) => !pkg || models.includes(d.model));
  const targetModel = model || models[0] || "";
  const targetCount = targetKind === "model" ? registered.filter((d) => d.model === targetModel).length : chosen.size;

  const toggle = (epn) => {
    const next = new Set(chosen);
    if (next.has(epn)) next.delete(epn); else next.add(epn);
    setChosen(next);
  };

  const submit = async (event) => {
    event.preventDefault();
    if (!pkg) {
      setError(new api.ApiError(0, "InvalidInput", shownText.trim()
        ? `no single AVAILABLE package ${shownText.trim()}${candidates.length > 1 ? ": choose one below" : ""}`
        : "choose a package (app@version)", "package_id"));
      return;
    }
    const body = {
      package_id: pkg.upload_id,
      targets: targetKind === "model" ? { model: targetModel } : { devices: [...chosen].sort() },
      mode: form.mode, block_size: number(form.block_size), window: number(form.window),
      timeouts: { stall_seconds: number(form.stall_seconds), total_seconds: number(form.total_seconds) },
      max_retries: number(form.max_retries),
      abort: { failure_threshold_percent: number(form.failure_threshold_percent), min_executed: number(form.min_executed) },
    };
    const staged = wavesBody(waves);
    if (staged) body.waves = staged;
    if (fallback && pkg.manifest?.delta) body.fallback_package_id = fallback;
    setBusy(true);
    try {
      const job = await api.post("/jobs", body, { "Idempotency-Key": key.current });
      window.location.hash = `#/jobs/${encodeURIComponent(job.job_id)}`;
    } catch (err) {
      if (err.status >= 400 && err.status < 500) key.current = newKey(); // nothing was made: a changed form is a new request
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  if (loading) return html`<section><h1>New rollout</h1><${Loading} what="packages and devices" /></section>`;
  const field = error?.field || "";
  return html`<section>
    <h1>New rollout</h1>
    <${ErrorMessage} error=${loadError} onSignIn=${onSignIn} />
    <form class="rollout" onSubmit=${submit} novalidate>
      <fieldset><legend>Package</legend>
        <label class=${field === "package_id" ? "field invalid" : "field"}>app@version
          <input name="package" list="package-labels" value=${shownText} placeholder="demo-app@1.1.0"
                 onInput=${(e) => { setText(e.target.value); setUpload(""); }} />
          <datalist id="package-labels">${[...new Set(packages.map(packageLabel))].map((l) => html`<option value=${l} />`)}</datalist>
        </label>
        ${candidates.length > 1 ? html`<label class="field">several uploads are ${shownText}:
          <select name="upload" value=${upload} onChange=${(e) => setUpload(e.target.value)}>
            <option value="">choose…</option>
            ${candidates.map((p) => html`<option value=${p.upload_id}>${p.upload_id} (${(p.manifest.models || []).join(", ")}, ${bytes(p.size)})</option>`)}
          </select></label>` : null}
        ${pkg ? html`<p class="muted" data-field="package">→ <code>${pkg.upload_id}</code>: ${pkg.manifest.kind}${pkg.manifest.delta ? ` delta from ${pkg.manifest.base_version}` : ""},
          models ${models.join(", ")}, ${bytes(pkg.size)}</p>` : null}
        <${FallbackField} pkg=${pkg} packages=${packages} value=${fallback} onChange=${setFallback} field=${field} />
      </fieldset>
      <fieldset class=${field.startsWith("targets") ? "invalid" : ""}><legend>Targets</legend>
        <label class="inline"><input type="radio" name="target-kind" value="devices" checked=${targetKind === "devices"}
          onChange=${() => setTargetKind("devices")} /> these devices</label>
        <label class="inline"><input type="radio" name="target-kind" value="model" checked=${targetKind === "model"}
          onChange=${() => setTargetKind("model")} /> every registered device of a model</label>
        ${targetKind === "model" ? html`<label class="field">model
          <input name="model" list="model-names" value=${targetModel} onInput=${(e) => setModel(e.target.value)} />
          <datalist id="model-names">${[...new Set([...models, ...registered.map((d) => d.model)])].map((m) => html`<option value=${m} />`)}</datalist>
          <small class="muted">${targetCount} registered device(s) of ${targetModel || "this model"}</small></label>` : html`
          <div class="device-choice">
            ${eligible.length === 0 ? html`<p class="muted">no registered device${pkg ? ` of ${models.join(", ")}` : ""}</p>` : null}
            ${eligible.map((d) => html`<label class="inline device-option"><input type="checkbox" name="device" value=${d.epn}
              checked=${chosen.has(d.epn)} onChange=${() => toggle(d.epn)} /> ${d.epn} <small class="muted">${d.model}</small></label>`)}
          </div>`}
      </fieldset>
      <fieldset><legend>Delivery</legend>
        <label class="field">mode <select name="mode" value=${form.mode} onChange=${(e) => set("mode")(e.target.value)}>
          <option value="block">block (MQTT)</option><option value="url">url (HTTPS download)</option></select></label>
        <${Field} label="block size (bytes)" name="block_size" value=${form.block_size} onInput=${set("block_size")} error=${field} hint="256..122880" />
        <${Field} label="window (blocks in flight)" name="window" value=${form.window} onInput=${set("window")} error=${field} hint="1..100" />
        <details><summary>timeouts, retries, abort</summary>
          <${Field} label="stall timeout (s)" name="timeouts.stall_seconds" value=${form.stall_seconds} onInput=${set("stall_seconds")} error=${field} hint="5..86400" />
          <${Field} label="total timeout (s)" name="timeouts.total_seconds" value=${form.total_seconds} onInput=${set("total_seconds")} error=${field} hint="60..2592000" />
          <${Field} label="retries per device" name="max_retries" value=${form.max_retries} onInput=${set("max_retries")} error=${field} hint="0..5" />
          <${Field} label="abort when failed ≥ (%)" name="abort.failure_threshold_percent" value=${form.failure_threshold_percent}
                    onInput=${set("failure_threshold_percent")} error=${field} hint="1..100" />
          <${Field} label="… of at least (executed)" name="abort.min_executed" value=${form.min_executed} onInput=${set("min_executed")} error=${field} hint="1..100000" />
        </details>
      </fieldset>
      <${WavesFields} waves=${waves} setWaves=${setWaves} field=${field} />
      <${Estimate} pkg=${pkg} devices=${targetCount} form=${form}
                   fallback=${pkg?.manifest?.delta && fallback ? byUpload.get(fallback) : null} />
      <${ErrorMessage} error=${error} onSignIn=${onSignIn} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? "starting…" : "start rollout"}</button>
    </form>
  </section>`;
}
