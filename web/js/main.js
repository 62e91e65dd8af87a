// The console's entry point: reads config.json (where the API is), the sign-in state, and the hash
// route (#/fleet, #/packages, #/jobs[/<id>], #/devices/<epn>, #/rollout), and renders the page.
// Does not: fetch anything a page needs (each page does).

import { html, render } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import * as api from "./api.js";
import { useRoute } from "./hooks.js";
import { DevicePage } from "./pages/device.js";
import { FleetPage } from "./pages/fleet.js";
import { JobsPage } from "./pages/jobs.js";
import { PackagesPage } from "./pages/packages.js";
import { RolloutPage } from "./pages/rollout.js";
import { SignIn } from "./pages/signin.js";
import { clearToken, hasCredential, takeTokenFromLink } from "./session.js";

const NAV = [["fleet", "Fleet"], ["packages", "Packages"], ["jobs", "Jobs"], ["rollout", "New rollout"]];

function Page({ route, onSignIn }) {
  const [name, id] = route.parts;
  switch (name) {
    case "packages": return html`<${PackagesPage} onSignIn=${onSignIn} />`;
    case "jobs": return html`<${JobsPage} id=${id} onSignIn=${onSignIn} />`;
    case "devices": return id ? html`<${DevicePage} epn=${id} onSignIn=${onSignIn} key=${id} />`
      : html`<${FleetPage} onSignIn=${onSignIn} />`;
    case "rollout": return html`<${RolloutPage} query=${route.query} onSignIn=${onSignIn} key=${route.query.get("package") || ""} />`;
    default: return html`<${FleetPage} onSignIn=${onSignIn} />`;
  }
}

function App() {
  const route = useRoute();
  const [signedIn, setSignedIn] = useState(hasCredential(api.authMode()));
  const [refusal, setRefusal] = useState(null);
  useEffect(() => api.onUnauthorized((error) => setRefusal(error)), []);
  const signOut = (reason) => {
    clearToken();
    setRefusal(reason || null);
    setSignedIn(false);
  };
  const section = route.parts[0] === "devices" ? "fleet" : route.parts[0] || "fleet";
  return html`<header>
      <a class="brand" href="#/fleet">OTA console</a>
      <nav>${NAV.map(([key, label]) => html`<a href=${`#/${key}`} class=${section === key ? "active" : ""}>${label}</a>`)}</nav>
      <span class="api muted" title="the API this console talks to">${api.apiLocation()}</span>
      ${signedIn ? html`<button type="button" class="link" onClick=${() => signOut()}>sign out</button>` : null}
    </header>
    <main>${signedIn
      ? html`<${Page} route=${route} onSignIn=${() => signOut(refusal)} />`
      : html`<${SignIn} reason=${refusal} onSignedIn=${() => { setRefusal(null); setSignedIn(true); }} />`}</main>`;
}

async function start() {
  let config = {};
  try {
    const answer = await fetch("./config.json", { cache: "no-cache" });
    if (answer.ok) config = await answer.json();
  } catch {
    config = {};
  }
  api.configure(config);
  takeTokenFromLink();
  render(html`<${App} />`, document.getElementById("app"));
}

start();
