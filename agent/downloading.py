"""The DOWNLOADING state of the agent: spool setup, block handling, acks, repair requests, timers.

Block mode: every frame is checked (size before decoding, CRC, stream, range, exact size), written in
place, acknowledged by the ack policy once durable, and gaps are asked for again with `get` after
`get_interval` without progress (doubling up to 8 s); a spool found complete on resume is acknowledged
before verification. URL mode: one Range request per tick, a DOWNLOADING status with the blocks held
every 3 s while they grow (the cloud's only progress signal there); a server sending more than asked
ends the download FAILED. The stall budget (agent.guard.check_stall, for every
state in machine.STALL) fails the download when no new data arrives for that long while connected.
Group delivery (docs/protocol.md section 15): a block-mode job whose document names a `group` is
followed (its topic subscribed, persisted as `group` in state.json) from acceptance until the download
ends or the cloud republishes the document without it; frames on that topic are accepted with the
group stream only, and statuses, acks and requests carry `g` meanwhile.
Mixed into agent.runtime.Agent.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from otaformat import messages, topics, wire
from otaformat.errors import MalformedError

from .acks import AckPolicy, paced_idle, paced_repair
from .download import UrlDownload
from .machine import Event, State
from .spool import Spool

log = logging.getLogger("ota-agent")

if TYPE_CHECKING:
    from .runtime import Agent

MAX_GET_INTERVAL = 8.0
URL_TIMEOUT = 30.0
URL_PROGRESS_INTERVAL = 3.0  # URL mode has no acks: a DOWNLOADING status with `progress` this often


class Downloading:
    @property
    def stall_budget(self: Agent) -> float:
        """The agent's own budget, shortened to the job's stall_timeout (the cloud gives up then anyway)."""
        job_budget = self.job.stall_timeout if self.job is not None and self.job.stall_timeout > 0 else None
        return min(self.cfg.stall_budget, job_budget) if job_budget else self.cfg.stall_budget

    # -- group delivery -----------------------------------------------------------------------------

    @property
    def group_stream(self: Agent) -> int | None:
        """The group stream while this download follows its job's group topic (else None: unicast)."""
        job = self.job
        if job is None or job.group is None or self.state != State.DOWNLOADING:
            return None
        return job.group.stream if self.store.data.get("group") == job.group.topic else None

    def group_refusal(self: Agent, job: messages.JobDocument) -> str | None:
        """Why a job's group cannot be followed by this device (another model's topic), or None."""
        parsed = topics.parse_group_topic(job.group.topic) if job.group is not None else None
        if job.group is not None and (parsed is None or parsed[0] != self.cfg.model):
            return f"malformed: group topic {job.group.topic} is not one of model {self.cfg.model}"
        return None

    def join_group(self: Agent, job: messages.JobDocument) -> None:
        """Subscribe to the job's group topic (before the DOWNLOADING status and the first get go out)."""
        if job.mode != "block" or job.group is None:
            return
        self.transport.follow(job.group.topic)
        self.store.data["group"] = job.group.topic  # persisted with the transition that follows

    def leave_group(self: Agent) -> None:
        """Unsubscribe from the group topic this agent recorded, if any (also one left by a crash)."""
        topic = self.store.data.get("group")
        if not topic:
            return
        self.transport.unfollow(str(topic))
        self.store.data["group"] = None
        self.store.save()
        log.info("left group topic %s", topic)

    def on_group_frame(self: Agent, topic: str, payload: bytes) -> None:
        stream = self.group_stream
        if stream is None or self.job is None or self.job.group is None or topic != self.job.group.topic:
            self.count_drop("group-not-followed")
            return
        self.on_block(payload, stream)

    def open_download(self: Agent) -> None:
        assert self.job is not None
        job = self.job
        try:
            self.spool = Spool(self.spool_dir, package_size=job.package_size, block_size=job.block_size,
                               block_count=job.block_count, stream=job.stream)
        except (MalformedError, OSError) as err:
            self.fail(Event.DOWNLOAD_FAILED, "FAILED", f"cannot prepare the spool: {err}")
            return
        self.acks = AckPolicy(job.window or 1, paced_idle(self.cfg.ack_idle, job.pace_ms), self.cfg.ack_fraction)
        self.get_interval = paced_repair(self.configured_get_interval, job.pace_ms)
        self.url = None
        if job.mode == "url" and job.url:  # one request never outlasts the stall budget (real seconds)
            self.url = UrlDownload(job.url, self.spool, self.request_url, session=self.http,
                                   timeout=min(URL_TIMEOUT, self.stall_budget), clock=self.clock)
        now = self.clock()
        self.last_progress = self.last_flush = self.last_progress_report = now
        self.reported_count = 0
        self.last_get = now
        self.get_backoff = self.get_interval
        if self.spool.complete:
            if self.url is None:  # resumed with every block held: tell the cloud before moving on
                self.send_ack()
            self.fire(Event.COMPLETE)

    def close_download(self: Agent) -> None:
        if self.spool is not None:
            self.spool.close()
        self.spool, self.acks, self.url = None, None, None

    def request_missing(self: Agent) -> None:
        if self.state != State.DOWNLOADING or self.spool is None or self.job is None or self.url is not None:
            return
        missing = self.spool.missing()
        if missing:
            request = wire.make_request(self.job.execution_id, self.job.stream, missing, group=self.group_stream)
            self.publish("get", wire.encode_request(request))
        self.last_get = self.clock()

    def request_url(self: Agent) -> None:
        assert self.job is not None
        self.publish("get", messages.encode(messages.UrlRefresh(self.job.execution_id)))

    def on_block(self: Agent, payload: bytes, stream: int | None = None) -> None:
        """A frame from ota/{epn}/blk (the execution's stream) or the followed group topic (`stream`)."""
        if self.state != State.DOWNLOADING or self.spool is None or self.acks is None or self.url is not None:
            self.count_drop("not-downloading")
            return
        try:
            frame = self.spool.check(payload, stream)
        except MalformedError as err:
            self.count_drop(err.code)
            return
        new = self.spool.write(frame)
        self.blocks_received += 1
        now = self.clock()
        if new:
            self.last_progress = now
            self.get_backoff = self.get_interval
            self.crash("block-written")
        if self.acks.on_block(now, new=new, complete=self.spool.complete):
            self.send_ack()
        if self.spool.complete:
            self.finish_download()

    def send_ack(self: Agent) -> None:
        assert self.spool is not None and self.acks is not None and self.job is not None
        self.spool.flush()  # a block is acknowledged only once it is durable
        self.last_flush = self.clock()
        ack = self.spool.ack(self.job.execution_id)
        self.publish("ack", wire.encode_ack(replace(ack, group=self.group_stream)))
        self.acks.acked()

    def finish_download(self: Agent) -> None:
        assert self.spool is not None
        self.spool.flush()
        self.fire(Event.COMPLETE)

    def tick(self: Agent) -> None:
        if self.state != State.DOWNLOADING:
            return
        if self.spool is None or self.acks is None:  # a download that can never progress: a bug, not a wait
            raise RuntimeError("DOWNLOADING without an open spool")
        if self.url is not None:
            if self.url.step():
                self.last_progress = self.clock()
            if self.url.error:
                error = self.url.error
                self.close_download()
                self.fail(Event.DOWNLOAD_FAILED, "FAILED", f"download aborted: {error}")
                return
            if self.spool.complete:
                self.finish_download()
                return
            self.report_url_progress()
        now = self.clock()
        if self.acks.idle_due(now):
            self.send_ack()
        if self.spool.dirty and now - self.last_flush >= self.cfg.fsync_interval:
            self.spool.flush()
            self.last_flush = now
        idle = now - self.last_progress >= self.get_interval
        if self.transport.connected and self.url is None and idle and now - self.last_get >= self.get_backoff:
            self.request_missing()
            self.get_backoff = min(self.get_backoff * 2, MAX_GET_INTERVAL)

    def report_url_progress(self: Agent) -> None:
        """URL mode: the blocks held so far, every URL_PROGRESS_INTERVAL while they grow (block mode has acks)."""
        assert self.spool is not None
        now = self.clock()
        if now - self.last_progress_report >= URL_PROGRESS_INTERVAL and self.spool.count > self.reported_count:
            self.report("IN_PROGRESS", step="DOWNLOADING")
            self.last_progress_report, self.reported_count = now, self.spool.count

    def stall_reason(self: Agent) -> str:
        held = f" ({self.spool.count}/{self.spool.block_count} blocks)" if self.spool is not None else ""
        return f"download stalled: no new data for {self.stall_budget:g} s{held}"
