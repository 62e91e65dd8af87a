// Sign-in: the local stack's operator token, or (config.json "auth": "sigv4", an API on AWS with IAM
// auth) temporary AWS credentials, checked with one API request before they are kept (sessionStorage,
// this tab only). Does not: store anything the API refused, or fetch credentials itself.

import { html } from "htm/preact";
import { useState } from "preact/hooks";
import * as api from "../api.js";
import { clearToken, saveCredentials, saveToken } from "../session.js";
import { regionOf } from "../sigv4.js";
import { ErrorMessage } from "../ui.js";

function Input({ label, name, value, onInput, secret = false }) {
  return html`<label class="field">${label}
    <input name=${name} type=${secret ? "password" : "text"} autocomplete="off" value=${value}
           onInput=${(e) => onInput(e.target.value)} /></label>`;
}

export function SignIn({ reason, onSignedIn }) {
  const sigv4 = api.authMode() === "sigv4";
  const [fields, setFields] = useState({ token: "", accessKeyId: "", secretAccessKey: "", sessionToken: "",
                                         region: sigv4 ? regionOf(api.apiLocation()) : "" });
  const [error, setError] = useState(reason || null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (value) => setFields({ ...fields, [name]: value });
  const ready = sigv4 ? fields.accessKeyId.trim() && fields.secretAccessKey.trim() && fields.region.trim()
    : fields.token.trim();
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    if (sigv4) saveCredentials(fields); else saveToken(fields.token);
    try {
      await api.get("/jobs");
      onSignedIn();
    } catch (err) {
      clearToken();
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<section class="signin">
    <h1>Sign in</h1>
    ${sigv4 ? html`<p>The console signs its calls to <code>${api.apiLocation()}</code> (IAM auth) with temporary AWS
      credentials that may call <code>execute-api:Invoke</code> on it: for example
      <code>aws configure export-credentials --format env</code> after <code>aws sso login</code>, or the
      credentials of a Cognito identity pool role (infra/README.md, "The web console").</p>` : html`
      <p>The console calls the OTA API at <code>${api.apiLocation()}</code> with the operator's bearer token.
      On the local stack, <code>ota-local console</code> prints a sign-in link, and
      <code>ota-local env</code> shows the token as <code>OTA_TOKEN</code>.</p>`}
    <form onSubmit=${submit}>
      ${sigv4 ? html`
        <${Input} label="access key id" name="accessKeyId" value=${fields.accessKeyId} onInput=${set("accessKeyId")} />
        <${Input} label="secret access key" name="secretAccessKey" secret value=${fields.secretAccessKey} onInput=${set("secretAccessKey")} />
        <${Input} label="session token" name="sessionToken" secret value=${fields.sessionToken} onInput=${set("sessionToken")} />
        <${Input} label="region" name="region" value=${fields.region} onInput=${set("region")} />`
      : html`<${Input} label="operator token" name="token" secret value=${fields.token} onInput=${set("token")} />`}
      <button type="submit" class="primary" disabled=${busy || !ready}>sign in</button>
    </form>
    <${ErrorMessage} error=${error} />
  </section>`;
}
