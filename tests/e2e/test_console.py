"""The operator web console (web/) in a real browser against the real local stack.

Headless Debian Chromium (/usr/bin/chromium) driven by Playwright, on the shared e2e stack (moto,
mosquitto with mTLS, the API serving /console/, the bridge) with real agent processes: sign-in refuses
a wrong token, every page loads, a rollout started from the console completes on real agents while the
job page updates itself, a job is canceled from the console, API errors show as messages naming the
field, and a screenshot of the jobs page is written under the test's tmp directory (path printed).
The console's own SigV4 signer (for an API on AWS with IAM auth) runs in the browser and is checked
against botocore's, which `ota` uses, both directly and on a request a page configured for IAM auth sent.
Every wait is on a condition in the page or the API, never a fixed sleep. Uncaught script errors and
CSP violations in the page fail the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from cli.client import ApiError
from local import console
from local.scenario import Session

from .conftest import (
    MODEL,
    WAIT,
    Release,
    create_job,
    execution,
    terminal,
    unique_epn,
    wait_execution,
    wait_registered,
)

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# as this machine's notes say: no sandbox as root, and no background traffic to a closed network
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
MS = int(WAIT * 1000)
expect.set_options(timeout=MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (python -m local.osdeps as root)")
    if console.install() != 0:
        pytest.skip("the console's toolkit is not installed and npm cannot install it (make setup)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


class Console:
    """One signed-in browser tab on the stack's console, collecting script errors as it goes."""

    def __init__(self, browser: Browser, state: dict[str, Any]) -> None:
        self.state = state
        self.url = f"{state['api_url']}/console/"
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(f"uncaught: {err}"))
        self.page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        # a refused request is logged by Chromium as "Failed to load resource"; the tests expect some
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def sign_in(self, token: str | None = None) -> None:
        self.page.goto(self.url)
        self.page.locator("input[name=token]").fill(token or self.state["token"])
        self.page.get_by_role("button", name="sign in").click()

    def open(self, route: str) -> None:
        self.page.evaluate("route => { window.location.hash = route; }", route)

    def close(self) -> None:
        self.context.close()
        assert self.errors == []


@pytest.fixture
def ui(browser: Browser, e2e_stack: dict[str, Any]) -> Iterator[Console]:
    tab = Console(browser, e2e_stack)
    yield tab
    tab.close()


def _signed_in(ui: Console) -> Page:
    ui.sign_in()
    expect(ui.page.get_by_role("heading", name="Fleet")).to_be_visible()
    return ui.page


def test_sign_in_refuses_a_wrong_token_and_every_page_loads(ui: Console, release: Release) -> None:
    page = ui.page
    ui.sign_in("not-the-token")
    expect(page.get_by_role("alert")).to_contain_text("HTTP 403")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    _signed_in(ui)
    expect(page.locator("form.filters")).to_be_visible()

    ui.open("#/packages")
    row = page.locator(f"tr[data-upload='{release.upload_id}']")
    expect(row).to_contain_text("e2e@1.0.0")
    expect(row.locator("[data-field=state]")).to_have_text("AVAILABLE")

    ui.open("#/jobs")
    expect(page.get_by_role("heading", name="All jobs")).to_be_visible()

    ui.open(f"#/rollout?package={release.upload_id}")
    expect(page.locator("input[name=package]")).to_have_value("e2e@1.0.0")
    expect(page.locator("[data-field=package]")).to_contain_text(release.upload_id)


def test_the_sign_in_link_signs_in_and_leaves_no_token_in_the_address_bar(ui: Console) -> None:
    page = ui.page
    page.goto(f"{ui.url}#token={quote(ui.state['token'], safe='')}")  # as `ota-local console` prints it
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    assert page.url.endswith("/console/#/fleet") and quote(ui.state["token"], safe="") not in page.url
    page.get_by_role("button", name="sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_rollout_started_from_the_console_completes_with_live_progress(
        ui: Console, on_stack: Session, release: Release, tmp_path: Path) -> None:
    epns = [unique_epn("console"), unique_epn("console")]
    agents = [on_stack.start_agent(epn, MODEL, release.pub) for epn in epns]
    wait_registered(on_stack, *agents)
    page = _signed_in(ui)
    page.locator("input[name=text]").fill(epns[0])
    expect(page.locator(f"tr[data-epn='{epns[0]}'] [data-field=state]")).to_have_text("REGISTERED")

    ui.open(f"#/rollout?package={release.upload_id}")
    for epn in epns:
        page.locator(f"input[name=device][value='{epn}']").check()
    page.locator("input[name=block_size]").fill("2048")  # ~257 blocks: progress the page can watch
    page.locator("input[name=window]").fill("8")
    blocks = -(-release.size // 2048)
    expect(page.get_by_role("status")).to_contain_text(f"2 device(s) \N{MULTIPLICATION SIGN} {blocks} block(s)")
    # record what the job page shows, from its first render on, in the page itself (same document)
    page.evaluate("""() => {
      window.__sameDocument = true;
      window.__seen = [];
      const record = () => {
        const job = document.querySelector('[data-job-detail]');
        if (!job) return;
        const text = job.dataset.state + ' ' + job.querySelector('.overall .percent').textContent;
        if (window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
      };
      new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                           attributes: true});
    }""")
    page.get_by_role("button", name="start rollout").click()
    page.wait_for_url("**/console/#/jobs/job-*")
    job_id = page.url.rsplit("/", 1)[-1]

    detail = page.locator(f"[data-job-detail='{job_id}']")
    expect(detail).to_have_attribute("data-state", "COMPLETED")
    for epn in epns:
        expect(detail.locator(f"tr[data-epn='{epn}']")).to_have_attribute("data-state", "SUCCEEDED")
        expect(detail.locator(f"tr[data-epn='{epn}'] .percent")).to_have_text("100.0%")
    expect(detail.locator(".overall .percent")).to_have_text("100.0%")
    expect(page.locator("#progress-chart canvas")).to_be_visible()
    seen: list[str] = page.evaluate("window.__seen")
    assert page.evaluate("window.__sameDocument") is True  # no reload: the page updated itself
    assert seen[0].startswith("ACTIVE") and seen[-1] == "COMPLETED 100.0%", seen
    assert len(seen) >= 2, seen
    job = on_stack.api.get(f"/jobs/{job_id}")
    assert job["state"] == "COMPLETED" and job["counts"]["SUCCEEDED"] == 2, job

    shot = tmp_path / "console-jobs.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the jobs page: {shot}")
    assert shot.stat().st_size > 10_000

    ui.open(f"#/devices/{epns[0]}")  # the inventory follows the agent's report (the page polls)
    expect(page.locator("dd[data-field=apps]")).to_have_text("e2e@1.0.0")
    expect(page.locator(f"tr[data-job='{job_id}']")).to_have_attribute("data-state", "SUCCEEDED")


def test_a_job_is_canceled_from_the_console(ui: Console, on_stack: Session, release: Release) -> None:
    epn = unique_epn("console-cancel")
    agent = on_stack.start_agent(epn, MODEL, release.pub)
    wait_registered(on_stack, agent)
    on_stack.stop_agents()  # registered, but nobody will take the job: it stays unfinished
    job_id = create_job(on_stack, release.upload_id, [epn])
    page = _signed_in(ui)
    ui.open(f"#/jobs/{job_id}")
    detail = page.locator(f"[data-job-detail='{job_id}']")
    expect(detail).to_have_attribute("data-state", "ACTIVE")
    page.get_by_role("button", name="cancel job").click()
    page.get_by_role("button", name="confirm: cancel every unfinished execution").click()
    expect(detail).to_have_attribute("data-state", "CANCELED")
    expect(detail.locator(f"tr[data-epn='{epn}']")).to_have_attribute("data-state", "CANCELED")
    assert wait_execution(on_stack, job_id, epn, lambda v: v["state"] == "CANCELED")["state"] == "CANCELED"


def test_a_devices_refusal_shows_its_reason_on_the_job_and_device_pages(
        ui: Console, on_stack: Session, release: Release) -> None:
    on_stack.pack("keygen", "--out", str(on_stack.work / "other-keys"))
    epn = unique_epn("console-reject")
    agent = on_stack.start_agent(epn, MODEL, on_stack.work / "other-keys" / "publisher.pub")  # trusts another key
    wait_registered(on_stack, agent)
    job_id = create_job(on_stack, release.upload_id, [epn])
    page = _signed_in(ui)
    ui.open(f"#/jobs/{job_id}")
    row = page.locator(f"[data-job-detail='{job_id}'] tr[data-epn='{epn}']")
    expect(row).to_have_attribute("data-state", "REJECTED")
    view = wait_execution(on_stack, job_id, epn, lambda v: v["state"] == "REJECTED")
    reason = [t["reason"] for t in view["timeline"] if t["reason"]][-1]  # the latest reason, as the page shows
    expect(row.locator("[data-field=reason]")).to_contain_text(reason)
    expect(page.locator("[data-field=failures]")).to_contain_text(f"REJECTED: {reason}")
    ui.open(f"#/devices/{epn}")
    expect(page.locator(f"tr[data-job='{job_id}'] .reason")).to_contain_text(reason)


def test_api_errors_show_as_messages_naming_the_field(ui: Console, release: Release) -> None:
    page = _signed_in(ui)
    ui.open(f"#/rollout?package={release.upload_id}")
    page.locator("input[name=target-kind][value=model]").check()
    page.locator("input[name=model]").fill("console-no-such-model")
    page.get_by_role("button", name="start rollout").click()
    alert = page.locator("form.rollout [role=alert]")
    expect(alert).to_contain_text("HTTP 409")
    expect(alert.locator(".field code")).to_have_text("targets.model")
    assert "#/rollout" in page.url  # nothing was created, the form stays

    page.locator("input[name=model]").fill(MODEL)
    page.locator("input[name=block_size]").fill("100")  # below the API's 256
    page.get_by_role("button", name="start rollout").click()
    expect(alert).to_contain_text("HTTP 400")
    expect(alert.locator(".field code")).to_have_text("block_size")
    expect(page.locator("label.invalid input[name=block_size]")).to_be_visible()

    ui.open("#/jobs/job-console-missing")
    expect(page.get_by_role("alert").first).to_contain_text("HTTP 404")


def test_a_staged_job_from_the_form_shows_its_waves_and_waiting_executions(
        ui: Console, on_stack: Session, release: Release, tmp_path: Path) -> None:
    """Waves of one device made in the form: the first device's wave runs, the second's execution is
    WAITING with its wave; once the first agent (offline at first) comes back and succeeds, the sweeper
    starts wave 1 and the page shows it, the finished wave 0 with its own counters."""
    agents = {a.epn: a for a in (on_stack.start_agent(unique_epn("console-wave"), MODEL, release.pub)
                                 for _ in range(2))}
    wait_registered(on_stack, *agents.values())
    first, second = sorted(agents)  # the form sends the devices sorted: the waves follow that order
    on_stack.stop_agents()  # nobody takes wave 0 until the first agent is started again below
    page = _signed_in(ui)
    ui.open(f"#/rollout?package={release.upload_id}")
    for epn in (first, second):
        page.locator(f"input[name=device][value='{epn}']").check()
    page.locator("select[name=wave-kind]").select_option("size")
    page.locator("input[name='waves.size']").fill("1")
    page.locator("input[name='waves.pause_seconds']").fill("0")
    page.get_by_role("button", name="start rollout").click()
    page.wait_for_url("**/console/#/jobs/job-*")
    job_id = page.url.rsplit("/", 1)[-1]
    assert on_stack.api.get(f"/jobs/{job_id}")["waves"]["size"] == 1  # the form sent the waves

    detail = page.locator(f"[data-job-detail='{job_id}']")
    waves = detail.locator("[data-field=waves]")
    expect(waves).to_have_attribute("data-total", "2")
    expect(waves).to_have_attribute("data-current", "0")
    expect(waves.locator("[data-field=wave-spec]")).to_have_text(
        "1 device per wave; each wave starts 0 s after the previous one finished")
    expect(waves.locator("[data-field=wave-position]")).to_have_text("wave 0 (of waves 0..1)")
    expect(waves.locator("[data-field=waves-later]")).to_contain_text("1 later wave not started")
    expect(waves.locator("tr[data-wave='0'] .count.s-queued")).to_have_text("1 queued")
    waiting = detail.locator(f"tr[data-epn='{second}']")
    expect(waiting).to_have_attribute("data-state", "WAITING")
    expect(waiting.locator("td[data-field=wave]")).to_have_text("1")
    expect(waiting.locator("[data-field=reason]")).to_contain_text("waits for wave 1 to start")
    expect(detail.locator(f"tr[data-epn='{first}']")).to_have_attribute("data-state", "QUEUED")
    expect(detail.locator(f"tr[data-epn='{first}'] td[data-field=wave]")).to_have_text("0")
    expect(detail.locator(".overall .count.s-waiting")).to_have_text("1 waiting")
    assert execution(on_stack, job_id, second)["state"] == "WAITING"

    on_stack.restart_agent(agents[first])  # wave 0 runs; then the sweeper starts wave 1 (its agent is offline)
    expect(waves).to_have_attribute("data-current", "1")
    expect(waves.locator("[data-field=wave-position]")).to_have_text("wave 1 (of waves 0..1)")
    expect(waves.locator("tr[data-wave='0'] .count.s-succeeded")).to_have_text("1 succeeded")
    expect(waves.locator("tr[data-wave='1'] .count.s-queued")).to_have_text("1 queued")
    expect(waves.locator("[data-field=waves-later]")).to_have_count(0)
    expect(waiting).to_have_attribute("data-state", "QUEUED")
    shot = tmp_path / "console-waves.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of a staged job: {shot}")
    on_stack.api.post(f"/jobs/{job_id}/cancel")
    expect(detail).to_have_attribute("data-state", "CANCELED")


def _delta_with_fallback(s: Session, release: Release) -> tuple[str, str]:
    """A delta e2e 1.0.0..1.0.5 and the full e2e 1.0.5, signed with the release's key: their upload ids."""
    src = s.work / "src-1.0.5"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "app").write_bytes(os.urandom(64 * 1024))
    full, delta = s.work / "e2e-1.0.5.otapkg", s.work / "e2e-delta.otapkg"
    s.pack("build", str(src), "--app", "e2e", "--version", "1.0.5", "--model", MODEL, "--key", str(release.key),
           "--compression", "none", "--out", str(full))
    s.pack("delta", "--from", str(release.package), "--to", str(full), "--key", str(release.key), "--out", str(delta))
    ids = []
    for path in (delta, full):
        done = s.ota("--json", "packages", "upload", str(path), "--timeout", str(WAIT))
        assert done.code == 0, done.out + done.err
        ids.append(done.json()["upload_id"])
    return ids[0], ids[1]


def test_a_delta_job_with_a_fallback_shows_which_executions_take_it(
        ui: Console, on_stack: Session, release: Release) -> None:
    """One device on the delta's base (e2e 1.0.0), one without the app: the job made in the form with a
    fallback sends the delta to the first and the full package to the second, and the page says which."""
    delta, full = _delta_with_fallback(on_stack, release)
    on_base, bare = (on_stack.start_agent(unique_epn("console-fb"), MODEL, release.pub) for _ in range(2))
    wait_registered(on_stack, on_base, bare)
    first = create_job(on_stack, release.upload_id, [on_base.epn])
    assert wait_execution(on_stack, first, on_base.epn, terminal)["state"] == "SUCCEEDED"
    assert on_stack.wait_for("the base installed", lambda: on_stack.device(on_base.epn)["apps"] == {"e2e": "1.0.0"},
                             WAIT)
    page = _signed_in(ui)
    ui.open(f"#/rollout?package={delta}")
    expect(page.locator("input[name=package]")).to_have_value("e2e@1.0.0..1.0.5")
    for epn in (on_base.epn, bare.epn):
        page.locator(f"input[name=device][value='{epn}']").check()
    page.locator("select[name=fallback]").select_option(full)
    expect(page.get_by_role("status")).to_contain_text("each device not on its base takes the fallback instead")
    page.locator("input[name=block_size]").fill("4096")
    page.get_by_role("button", name="start rollout").click()
    page.wait_for_url("**/console/#/jobs/job-*")
    job_id = page.url.rsplit("/", 1)[-1]

    detail = page.locator(f"[data-job-detail='{job_id}']")
    expect(detail.locator("dd[data-field=fallback] code")).to_have_text(full)
    expect(detail.locator("[data-field=fallback-executions]")).to_have_text("1 execution")
    expect(detail.locator(f"tr[data-epn='{bare.epn}'] [data-field=package]")).to_have_attribute("data-fallback", "true")
    expect(detail.locator(f"tr[data-epn='{on_base.epn}'] [data-field=package]")).to_have_attribute(
        "data-fallback", "false")
    expect(detail).to_have_attribute("data-state", "COMPLETED")
    for agent, package in ((on_base, delta), (bare, full)):
        seen = execution(on_stack, job_id, agent.epn)
        assert (seen["state"], seen["package_id"]) == ("SUCCEEDED", package), seen
        expect(detail.locator(f"tr[data-epn='{agent.epn}'] [data-field=package]")).to_have_attribute("title", package)


def test_a_job_whose_fan_out_is_still_running_shows_how_far_it_got(
        ui: Console, on_stack: Session, release: Release) -> None:
    """The fan-out of two devices is over in a moment here, so the browser is shown the real job view with
    the counters a running fan-out has (fanout_done false, 1 of 2 resolved): the page shows that progress,
    and once the real view comes through again (fan-out done) the notice goes away."""
    epns = [unique_epn("console-fan") for _ in range(2)]
    agents = [on_stack.start_agent(epn, MODEL, release.pub) for epn in epns]
    wait_registered(on_stack, *agents)
    on_stack.stop_agents()
    job_id = create_job(on_stack, release.upload_id, epns)
    page = _signed_in(ui)
    running = {"on": True}

    def midway(route: Route) -> None:
        job = route.fetch().json()
        if running["on"]:
            job.update(fanout_done=False, targets_resolved=1, executions_created=1)
        route.fulfill(json=job)

    page.route(f"**/jobs/{job_id}", midway)
    ui.open(f"#/jobs/{job_id}")
    notice = page.locator(f"[data-job-detail='{job_id}'] [data-field=fanout]")
    expect(notice).to_contain_text("1 of 2 target(s) resolved, 1 execution(s) created")
    expect(notice.get_by_role("progressbar", name="fan-out")).to_have_attribute("aria-valuenow", "50.0")
    targets = page.locator(f"[data-job-detail='{job_id}'] dd[data-field=targets]")
    expect(targets).to_contain_text("(fan-out in progress)")
    running["on"] = False
    expect(notice).to_have_count(0)
    expect(targets).to_have_text(
        "2 listed devices: 2 resolved, 2 sent or waiting")
    on_stack.api.post(f"/jobs/{job_id}/cancel")


BAD_WAVES = [  # (what the form is set to, the field the API names)
    ({"kind": "size", "value": "0", "gate": "pause", "seconds": ""}, "waves.size"),
    ({"kind": "percent", "value": "150", "gate": "pause", "seconds": ""}, "waves.percent"),
    ({"kind": "size", "value": "5", "gate": "interval", "seconds": "0"}, "waves.interval_seconds"),
    ({"kind": "size", "value": "5", "gate": "pause", "seconds": "a week"}, "waves.pause_seconds"),
]


def test_a_bad_wave_spec_in_the_form_shows_the_apis_message(ui: Console, on_stack: Session,
                                                            release: Release) -> None:
    page = _signed_in(ui)
    ui.open(f"#/rollout?package={release.upload_id}")
    alert = page.locator("form.rollout [role=alert]")
    for form, field in BAD_WAVES:
        page.locator("select[name=wave-kind]").select_option(form["kind"])
        page.locator(f"input[name='waves.{form['kind']}']").fill(form["value"])
        page.locator("select[name=wave-gate]").select_option(form["gate"])
        page.locator(f"input[name='waves.{form['gate']}_seconds']").fill(form["seconds"])
        page.get_by_role("button", name="start rollout").click()
        expect(alert.locator(".field code")).to_have_text(field)
        expect(alert).to_contain_text("HTTP 400")
        value: Any = int(form["value"])
        seconds: Any = int(form["seconds"]) if form["seconds"].isdigit() else form["seconds"] or None
        waves = {form["kind"]: value, **({f"{form['gate']}_seconds": seconds} if seconds is not None else {})}
        try:  # the same body straight to the API: the page shows its message, word for word
            on_stack.api.post("/jobs", {"package_id": release.upload_id, "targets": {"devices": []}, "waves": waves})
        except ApiError as err:
            assert (err.status, err.field) == (400, field), err
            expect(alert).to_contain_text(str(err))
        else:
            pytest.fail(f"the API accepted waves {waves}")
        expect(page.locator(f"fieldset.waves.invalid label.invalid input[name='{field}']")).to_be_visible()
        assert "#/rollout" in page.url  # nothing was created, the form stays


SIGV4_CASES = [
    ("GET", "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/api/packages?state=AVAILABLE&app=demo", "", ""),
    ("POST", "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/api/jobs", '{"package_id": "up-1"}',
     "FwoGZXIv+/="),
    ("GET", "https://ota.example.com/api/devices/dev-1;x%20y?model=a%2Fb&model=a&z=", "", "tok"),
    ("POST", "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/api/jobs/job-1/cancel", "", ""),
]


def test_the_consoles_sigv4_signatures_match_botocores(browser: Browser, e2e_stack: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tab = Console(browser, e2e_stack)
    tab.page.goto(tab.url)
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    when = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    for method, url, body, token in SIGV4_CASES:
        region = "eu-west-1"
        signed = tab.page.evaluate("""async ([method, url, body, token, region, now]) => {
          const { sign } = await import("./js/sigv4.js");
          const credentials = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                sessionToken: token, region };
          return sign({ method, url, body, credentials, region, contentType: body ? "application/json" : null,
                        now: new Date(now) });
        }""", [method, url, body, token, region, when.isoformat()])
        expected = AWSRequest(method=method, url=url, data=body.encode(),
                              headers={"Content-Type": "application/json"} if body else {})
        SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token or None),
                  "execute-api", region).add_auth(expected)
        assert signed["Authorization"] == expected.headers["Authorization"], (method, url)
        assert signed["X-Amz-Date"] == expected.headers["X-Amz-Date"] == "20261201T100005Z"
        assert signed.get("X-Amz-Security-Token") == expected.headers.get("X-Amz-Security-Token")
    tab.close()


def test_with_iam_auth_the_console_signs_each_request_with_the_pasted_credentials(
        browser: Browser, e2e_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """config.json as `local.console export` writes it for AWS ("auth": "sigv4"): the page asks for
    temporary credentials and signs its calls; here the stack's token authorizer refuses the signature
    (on AWS, IAM decides), and the request the browser sent carries botocore's exact signature."""
    tab = Console(browser, e2e_stack)
    page = tab.page
    page.route("**/console/config.json",
               lambda route: route.fulfill(json={"api_url": e2e_stack["api_url"], "auth": "sigv4"}))
    sent: list[Any] = []
    page.on("request", lambda request: sent.append(request) if request.url.endswith("/jobs") else None)
    page.goto(tab.url)
    for name, value in (("accessKeyId", "ASIAEXAMPLE"), ("secretAccessKey", "c2VjcmV0/example+key"),
                        ("sessionToken", "IQoJb3JpZ2luX2VjEXAMPLE=="), ("region", "eu-west-1")):
        page.locator(f"input[name={name}]").fill(value)
    page.get_by_role("button", name="sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("HTTP 403")
    headers = sent[0].all_headers()
    assert "bearer" not in headers["authorization"].lower()
    when = datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    expected = AWSRequest(method="GET", url=sent[0].url, data=b"")
    SigV4Auth(Credentials("ASIAEXAMPLE", "c2VjcmV0/example+key", "IQoJb3JpZ2luX2VjEXAMPLE=="), "execute-api",
              "eu-west-1").add_auth(expected)
    assert headers["authorization"] == expected.headers["Authorization"]
    assert headers["x-amz-security-token"] == "IQoJb3JpZ2luX2VjEXAMPLE=="
    assert page.evaluate("sessionStorage.length") == 0  # refused credentials are not kept
    tab.close()
