"""The agent engine: one thread, one inbound queue, the state machine driven by step functions.

Transport callbacks only enqueue items; `run()` takes them one at a time (`handle`): the item, the timers
(ack idle timer, batched fsync, repair requests, URL-mode fetches), the stall budget, then the
synchronous states (agent.steps), each under the generic guard (agent.guard): an exception ends the
execution FAILED instead of wedging the agent. Every state change is persisted (agent.store) before the
risky work of the new state starts. Time comes from injected clocks, the installer and the HTTP session
can be injected, so tests can drive and break them.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from otaformat import messages, topics
from otaformat.canonical import canonical_json
from otaformat.errors import FormatError

from . import AGENT_VERSION
from .acks import AckPolicy
from .autocheck import AutoCheck
from .commanding import Commanding
from .config import Config
from .download import UrlDownload
from .downloading import Downloading
from .guard import Guard
from .history import History
from .installer import Installer
from .machine import REPORTED_STEP, STALL, Event, State, next_state, resume_state
from .selfupdate import SelfUpdate
from .spool import Spool, remove_spool
from .steps import Steps
from .store import Store, remove_stray_temps
from .transport import Connected, Disconnected, Inbound, Message, Transport, within_limit
from .verify import Policy, Refusal, Verified, check_delta_base, check_envelope

log = logging.getLogger("ota-agent")
GET_INTERVAL = 1.0


class Agent(Downloading, Steps, Commanding, AutoCheck, SelfUpdate, History, Guard):
    def __init__(self, config: Config, transport: Transport, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 crash: Callable[[str], None] = lambda name: None, get_interval: float = GET_INTERVAL,
                 installer: Installer | None = None, http: requests.Session | None = None) -> None:
        self.cfg = config
        self.transport = transport
        self.clock = clock
        self.wall = wall
        self.crash = crash
        self.get_interval = get_interval
        self.configured_get_interval = get_interval  # a paced job stretches get_interval (agent/acks.py)
        for sub in ("", "spool", "logs", "base"):
            os.makedirs(os.path.join(config.data_dir, sub), mode=0o700, exist_ok=True)
        os.makedirs(config.install_root, mode=0o755, exist_ok=True)
        for path in remove_stray_temps(config.data_dir):  # left by a kill during an atomic write
            log.info("removed stray temp file %s", path)
        self.store = Store(config.data_dir, config.installed_apps)
        # The configured root is trusted and resolved once; links *inside* it are never followed.
        self.installer = installer or Installer(os.path.realpath(config.install_root), config.data_dir,
                                                config.script_timeout)
        self.http = http
        self.inbox: queue.Queue[Inbound] = queue.Queue()
        self.backlog: deque[Inbound] = deque()
        self.state = State.IDLE
        self.job: messages.JobDocument | None = None
        self.spool: Spool | None = None
        self.acks: AckPolicy | None = None
        self.url: UrlDownload | None = None
        self.verified: Verified | None = None
        self.last_progress = 0.0
        self.last_flush = 0.0
        self.last_progress_report = 0.0
        self.reported_count = 0
        self.last_get = 0.0
        self.get_backoff = get_interval
        self.dropped: dict[str, int] = {}
        self.blocks_received = 0
        self.stop_event = threading.Event()
        self.next_check: float | None = None  # automatic updates: when the next inventory goes out
        self.instance = secrets.token_hex(8)  # tells a restart apart from this run (agent.commanding)
        self.restart_code = 0  # the exit status asked for (selfupdate.TRIAL_EXIT: start me again)

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def spool_dir(self) -> str:
        return os.path.join(self.cfg.data_dir, "spool", "current")

    @property
    def policy(self) -> Policy:
        return Policy(epn=self.cfg.epn, model=self.cfg.model, agent_version=AGENT_VERSION,
                      trusted=self.cfg.trusted_keys, floors=dict(self.store.data["floors"]),
                      installed=dict(self.store.data["apps"]), managed=self.cfg.managed_apps)

    def post(self, item: Inbound) -> None:
        self.inbox.put(item)

    def publish(self, leaf: str, payload: bytes, wait: float = 0.0) -> bool:
        return self.transport.publish(topics.topic(self.cfg.epn, leaf), payload, wait=wait)

    def report(self, state: str, *, step: str | None = None, reason: str | None = None, wait: float = 0.0,
               execution_id: str | None = None) -> bool:
        xid = execution_id or (self.job.execution_id if self.job else "-")
        progress = self.spool.count if self.spool is not None else None
        seq = self.store.next_seq()
        self.store.save()  # a sequence number is never reused after a crash (the cloud drops stale seqs)
        group = self.group_stream if step == "DOWNLOADING" else None  # joins the group (protocol 15.1)
        status = messages.Status(xid, state, step, reason[:1024] if reason else None, seq, progress, group)
        return self.publish("status", messages.encode(status), wait=wait)

    def publish_inventory(self) -> None:
        self.publish("status", messages.encode(self.inventory_message()))

    def fire(self, event: Event) -> None:
        new = next_state(self.state, event)
        log.info("%s --%s--> %s", self.state, event, new)
        if self.state == State.DOWNLOADING and new != State.DOWNLOADING:
            self.leave_group()  # the download is over: no more group frames for this device
        self.state = new
        self.last_progress = self.clock()  # every state's stall budget starts when it is entered
        self.store.data["state"] = new.value
        self.store.save()
        if new in REPORTED_STEP:
            self.report("IN_PROGRESS", step=REPORTED_STEP[new])

    def fail(self, event: Event, state: str, reason: str) -> None:
        self.store.data["outcome"] = {"state": state, "reason": reason}
        self.fire(event)

    # -- start and loop ---------------------------------------------------------------------------

    def start(self) -> None:
        persisted = str(self.store.data.get("state", "IDLE"))
        self.state = resume_state(persisted)
        job = self.store.data.get("job")
        if job is not None:
            try:
                decoded = messages.decode(canonical_json(job))
                self.job = decoded if isinstance(decoded, messages.JobDocument) else None
            except FormatError:
                self.job = None
        if self.state not in (State.IDLE, State.COMMANDING) and self.job is None:
            self.state = State.IDLE
        if self.state == State.COMMANDING and not self.store.data.get("command"):
            self.state = State.IDLE
        if self.state.value != persisted:
            if persisted == State.INSTALLING.value:
                self.store.data["outcome"] = {"state": "FAILED",
                                              "reason": "agent restarted during install; previous version restored"}
            log.info("resuming %s as %s", persisted, self.state)
            self.store.data["state"] = self.state.value
            self.store.save()
        if self.state == State.DOWNLOADING and self.job is not None and self.job.group is not None:
            self.join_group(self.job)  # subscribed again on connect, before the get
        elif self.store.data.get("group"):
            self.leave_group()  # left behind by a crash between the end of a download and the unsubscribe
        if self.state == State.DOWNLOADING:
            self.guarded("reopening the download", self.open_download)
        self.transport.start(self.post)

    def run(self) -> None:
        self.start()
        self.run_steps()
        while not self.stop_event.is_set():
            try:
                self.handle(self.next_item(self.next_deadline()))
            except Exception:  # the guard itself failed (e.g. state.json cannot be written): retry later
                log.exception("error in the agent loop in %s", self.state)
                self.stop_event.wait(0.5)
        self.close()

    def handle(self, item: Inbound | None) -> None:
        """One turn of the loop, each part guarded: the item, the timers, the stall budget, the steps."""
        if item is not None:
            self.guarded(f"handling {type(item).__name__}", self.dispatch, item)
        self.guarded("running timers", self.tick)
        self.guarded("checking the stall budget", self.check_stall)
        self.guarded("checking for releases", self.auto_check)
        self.run_steps()

    def close(self) -> None:
        if self.spool is not None:
            self.spool.flush()
            self.spool.close()
        self.transport.stop()

    def next_item(self, deadline: float) -> Inbound | None:
        if self.backlog:
            return self.backlog.popleft()
        try:
            return self.inbox.get(timeout=max(0.0, min(deadline - self.clock(), 0.5)))
        except queue.Empty:
            return None

    def next_deadline(self) -> float:
        now = self.clock()
        if self.state not in STALL:
            return now + 0.5
        deadlines = [now + 0.5]
        if self.transport.connected:
            deadlines.append(self.last_progress + self.stall_budget)
            if self.url is None and self.state == State.DOWNLOADING:
                deadlines.append(max(self.last_get + self.get_backoff, self.last_progress + self.get_interval))
        if self.acks is not None and self.acks.due_at() is not None:
            deadlines.append(self.acks.due_at() or now)
        if self.spool is not None and self.spool.dirty:
            deadlines.append(self.last_flush + self.cfg.fsync_interval)
        if self.url is not None and not self.url.waiting:
            deadlines.append(self.url.retry_at)
        return max(min(deadlines), now + 0.001)  # never spin

    def dispatch(self, item: Inbound) -> None:
        if isinstance(item, Connected):
            self.on_connected()
        elif isinstance(item, Disconnected):
            log.info("disconnected: %s", item.reason)
        elif isinstance(item, Message):
            if not within_limit(item.leaf, item.payload):
                self.count_drop("oversized")
            elif item.leaf == "blk":
                self.on_block(item.payload)
            elif item.leaf == "group":
                self.on_group_frame(item.topic, item.payload)
            elif item.leaf == "job":
                self.on_job_message(item.payload)
            elif item.leaf == "cmd":
                self.on_command_message(item.payload)
            else:
                log.info("ignoring message on %s (not supported by this agent)", item.leaf)

    def count_drop(self, code: str) -> None:
        self.dropped[code] = self.dropped.get(code, 0) + 1

    def on_connected(self) -> None:
        self.publish_inventory()
        if self.state == State.DOWNLOADING:
            self.last_progress = self.clock()
            self.request_missing()

    # -- jobs -------------------------------------------------------------------------------------

    def on_job_message(self, payload: bytes) -> None:
        try:
            msg = messages.decode(payload)
        except (FormatError, ValueError, TypeError, RecursionError) as err:  # input, not an agent fault
            log.warning("dropping malformed job-topic message: %s", err)
            self.count_drop("malformed-job")
            return
        if isinstance(msg, messages.Cancel):
            self.on_cancel(msg.execution_id)
        elif isinstance(msg, messages.JobDocument):
            self.on_job(msg)

    def on_job(self, job: messages.JobDocument) -> None:
        finished = self.store.data["finished"].get(job.execution_id)
        if finished is not None:  # republished after we finished: say again how it ended
            self.report(finished["state"], reason=finished.get("reason"), execution_id=job.execution_id)
            return
        if self.job is not None and job.execution_id == self.job.execution_id:
            if self.state == State.DOWNLOADING and job.epn == self.cfg.epn:
                self.refresh_job(job)
            return
        if self.state != State.IDLE:
            log.info("busy with %s; ignoring job %s for now", self.job and self.job.execution_id, job.execution_id)
            return
        self.job = job
        self.store.data.update(job=job.to_dict(), outcome=None, install=None)
        try:
            self.precheck(job)
        except Refusal as refusal:
            self.fail(Event.JOB_REFUSED, refusal.state, refusal.reason)
            return
        remove_spool(self.spool_dir)
        self.join_group(job)  # subscribed before the DOWNLOADING status says so (`g`)
        self.fire(Event.JOB_ACCEPTED)
        self.open_download()
        self.request_missing()

    def precheck(self, job: messages.JobDocument) -> None:
        """Refuse before the first block or byte what the signed envelope already tells (re-checked later)."""
        refusal = self.group_refusal(job)
        if refusal is not None:
            raise Refusal("REJECTED", refusal, "malformed")
        manifest = check_envelope(job, self.policy, now=self.wall(), max_package_size=self.cfg.max_package_size)
        if manifest.delta is not None:  # base_version = installed was checked; now the kept base's hash
            check_delta_base(manifest, self.kept_base_sha256(manifest.app, manifest.delta.base_version))

    def refresh_job(self, job: messages.JobDocument) -> None:
        assert self.job is not None
        same = (job.package_sha256, job.package_size, job.block_size, job.stream) == (
            self.job.package_sha256, self.job.package_size, self.job.block_size, self.job.stream)
        if not same:
            log.warning("job document for %s changed its package; ignored", job.execution_id)
            return
        if self.store.data.get("group") and (job.group is None or job.group.topic != self.store.data["group"]):
            self.leave_group()  # the cloud moved this execution to unicast (protocol 15.4)
        self.job = job
        self.store.data["job"] = job.to_dict()
        self.store.save()
        if self.url is not None and job.url:
            self.url.refresh(job.url)
        self.last_progress = self.clock()
        if self.last_progress - self.last_get >= self.get_interval:  # the get sent on connect usually suffices
            self.request_missing()

    def on_cancel(self, execution_id: str) -> None:
        if self.job is None or execution_id != self.job.execution_id:
            return
        if self.state in (State.DOWNLOADING, State.VERIFYING):
            self.close_download()
            self.fail(Event.CANCELED, "FAILED", "canceled by the cloud before install")

    def stats(self) -> dict[str, Any]:
        return {"acks": self.acks.sent if self.acks else 0, "blocks": self.blocks_received, "dropped": self.dropped}
