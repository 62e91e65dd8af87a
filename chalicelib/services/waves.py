"""Staged rollouts (issue 13), the I/O half (rules in domain/waves.py): the `waves` body, wave membership
at fan-out, starting waves, releasing their executions, and the job view's wave progress.

- Fan-out (services/fanout.py): a staged job's items run one after another, each carrying the `offset`
  (ordinal of its first eligible target); `Placement` gives each eligible target its ordinal and wave,
  creates it QUEUED (sent at once) if its wave started, else WAITING (not sent), and stores the item's
  targets as wave-member items (`Repository.put_wave_members`), so a wave's members are read by ordinal
  range, never by listing the job's executions.
- A wave starts with ONE conditional write of the job (`current_wave` from n-1 to n, `wave_started_at`):
  of two sweeps only one wins. Its executions are then released (WAITING -> QUEUED, conditional, job
  document published) by release work items `{"job_id", "wave", "from"}` on the fan-out queue, a page of
  RELEASE_PAGE ordinals each, every page queuing the next (services/wave_release.py).
- A `size` job's wave 0 starts when the job is created (its members are sent as the fan-out creates
  them); a `percent` job's wave 0 starts when its fan-out is done (the last item, or the sweeper).
- Races: the fan-out stores its members, creates the executions, then reads the job again and releases
  itself any WAITING execution whose wave started meanwhile; the starter's release finds the others. A
  percent job's wave counts as complete only once its release's last page is done.
Does not: decide when a wave is due (domain/waves.py) or evaluate the failure threshold (services/abort.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..domain import executions as ex
from ..domain import waves as rules
from ..domain.errors import InvalidInput
from ..domain.models import Execution, Job, Package, bumped
from ..domain.ports import FanoutQueue, Publisher, Repository, Storage
from .common import integer, retrying
from .wave_release import release_one

log = logging.getLogger(__name__)
SHOWN_WAVES = 10  # the job view lists at most this many waves: the current one and those before it


def normalise(body: dict[str, Any]) -> dict[str, Any] | None:
    """The body's `waves`, validated: {"size": n} or {"percent": p}, plus "pause_seconds" (default 0) or
    "interval_seconds"; None when absent."""
    waves = body.get("waves")
    if waves is None:
        return None
    allowed = {"size", "percent", "pause_seconds", "interval_seconds"}
    if not isinstance(waves, dict) or not set(waves) <= allowed:
        raise InvalidInput("field 'waves' must be {\"size\": n | \"percent\": p, \"pause_seconds\"?: s | "
                           "\"interval_seconds\"?: s}", field="waves")
    if ("size" in waves) == ("percent" in waves):
        raise InvalidInput("field 'waves' needs exactly one of 'size' (devices per wave) and 'percent' (of the "
                           "targets per wave)", field="waves")
    if "pause_seconds" in waves and "interval_seconds" in waves:
        raise InvalidInput("field 'waves' takes at most one of 'pause_seconds' (after a wave finished) and "
                           "'interval_seconds' (after a wave started)", field="waves")
    normal: dict[str, Any] = {}
    if "size" in waves:
        normal["size"] = integer(waves, "size", 1, rules.MAX_WAVE_SIZE, parent="waves")
    else:
        normal["percent"] = integer(waves, "percent", 1, 100, parent="waves")
    if "interval_seconds" in waves:
        normal["interval_seconds"] = integer(waves, "interval_seconds", 1, rules.MAX_DELAY, parent="waves")
    else:
        normal["pause_seconds"] = integer(waves, "pause_seconds", 0, rules.MAX_DELAY, 0, parent="waves")
    return normal


def job_fields(normal: dict[str, Any] | None, target_count: int | None, now: float) -> dict[str, Any]:
    """The Job fields of a validated `waves` (none when absent); an explicit list needing more than
    MAX_WAVES waves is refused. A size job's wave 0 starts now."""
    if normal is None:
        return {}
    gate = "interval" if "interval_seconds" in normal else "pause"
    fields: dict[str, Any] = {"wave_gate": gate, "wave_delay": normal[f"{gate}_seconds"]}
    if "size" in normal:
        size = normal["size"]
        if target_count is not None and -(-target_count // size) > rules.MAX_WAVES:
            raise InvalidInput(f"field 'waves.size': {target_count} targets in waves of {size} make more than "
                               f"{rules.MAX_WAVES} waves", field="waves.size")
        fields.update(wave_size=size, current_wave=0, wave_started_at=now)
    else:
        fields["wave_percent"] = normal["percent"]
    return fields


@dataclass
class Placement:
    """Ordinals and waves of the eligible targets of one fan-out item (offset None: a device of a
    continuous job registered later, which joins the current wave, or wave 0 if none started yet)."""

    job: Job
    offset: int | None
    members: list[str] = field(default_factory=list)
    waiting: list[tuple[Execution, int | None]] = field(default_factory=list)  # created WAITING, ordinal
    _ordinals: dict[str, int] = field(default_factory=dict)

    @property
    def staged(self) -> bool:
        return rules.staged(self.job)

    @property
    def end(self) -> int:
        return (self.offset or 0) + len(self.members)

    def next_offset(self) -> dict[str, int]:
        return {"offset": self.end} if self.staged and self.offset is not None else {}

    def place(self, epn: str) -> tuple[str, int | None]:
        """(state, wave) of an eligible target's new execution."""
        if not self.staged:
            return ex.QUEUED, None
        if self.offset is None:
            wave = rules.late_wave(self.job)
        else:
            self._ordinals[epn] = self.end
            wave = rules.wave_of(self.job, self.end)
            self.members.append(epn)
        return (ex.QUEUED, wave) if rules.released(self.job, wave) else (ex.WAITING, wave)

    def created(self, execution: Execution) -> None:
        if execution.state == ex.WAITING:
            self.waiting.append((execution, self._ordinals.get(execution.epn)))

    def finish(self, repo: Repository, storage: Storage, publisher: Publisher, package: Package, now: float) -> int:
        """Store the members, then release what a wave started meanwhile made due; returns how many."""
        if not self.staged:
            return 0
        if self.offset is not None and self.members:
            repo.put_wave_members(self.job.job_id, self.offset, self.members)
        elif self.offset is None:
            for execution, _ in self.waiting:  # registered before wave 0 started: found when it does
                repo.put_late_member(self.job.job_id, execution.epn)
        if not self.waiting:
            return 0
        fresh = repo.get_job(self.job.job_id)
        if fresh is None or fresh.state != "ACTIVE":
            return 0
        count = 0
        for execution, ordinal in self.waiting:
            wave = rules.late_wave(fresh) if ordinal is None else rules.wave_of(fresh, ordinal)
            if wave is not None and rules.released(fresh, wave):
                count += release_one(repo, storage, publisher, fresh, package, execution.execution_id, wave, now)
        return count


def start_wave(repo: Repository, queue: FanoutQueue, job_id: str, wave: int, now: float,
               **changes: Any) -> Job | None:
    """Start `wave` (one conditional write: only if `wave - 1` is the current one) and queue its release;
    None when another sweep, or a cancel, got there first."""
    def step() -> Job | None:
        job = repo.get_job(job_id)
        if job is None or job.state != "ACTIVE" or job.current_wave != wave - 1:
            return None
        saved = bumped(job, current_wave=wave, wave_started_at=now, wave_finished_at=None, **changes)
        repo.save_job(saved)
        return saved

    started = retrying(step)
    if started is not None:
        log.info("wave started", extra={"job_id": job_id, "wave": wave})
        queue.send([{"job_id": job_id, "wave": wave, "from": 0}])
    return started


def fanout_finished(repo: Repository, queue: FanoutQueue, job_id: str, eligible: int, now: float) -> bool:
    """The fan-out is done with `eligible` ordinals: the waves are counted; a percent job gets its wave
    size and starts wave 0. True if this call started a wave."""
    job = repo.get_job(job_id)
    if job is None or job.state != "ACTIVE" or not rules.staged(job) or job.waves_total:
        return False
    size = job.wave_size or rules.percent_size(job.wave_percent, eligible)
    total = max(1, rules.wave_count(size, eligible))
    if job.current_wave < 0:
        return start_wave(repo, queue, job_id, 0, now, wave_size=size, waves_total=total) is not None

    def count() -> None:
        current = repo.get_job(job_id)
        if current is not None and not current.waves_total:
            repo.save_job(bumped(current, waves_total=total))

    retrying(count)
    return False


@dataclass(frozen=True)
class WaveSweep:
    started: int = 0
    aborted: int = 0


def start_due_waves(repo: Repository, publisher: Publisher, now: float, queue: FanoutQueue) -> WaveSweep:
    """The sweeper's part (services/sweep.py): for each ACTIVE staged job, `step_job`. Reads per job: its
    wave counters and at most one member item, never its executions."""
    started = aborted = 0
    for job in repo.list_active_jobs():
        done = step_job(repo, publisher, job, now, queue)
        started, aborted = started + done.started, aborted + done.aborted
    return WaveSweep(started, aborted)


def on_execution_ended(repo: Repository, publisher: Publisher, job_id: str, wave: int | None, now: float,
                       queue: FanoutQueue | None) -> WaveSweep:
    """An execution of a staged job's current wave reached a terminal state (services/device_messages.py):
    take the job's next step now rather than at the next sweep (every minute on AWS), so a wave whose last
    device just finished is followed at once when its gate allows (pause 0), or its end is recorded for
    the pause, or the job aborts on the wave's failure threshold. Without a fan-out queue, the sweeper's."""
    if wave is None or queue is None:
        return WaveSweep()
    job = repo.get_job(job_id)
    if job is None or job.current_wave != wave:
        return WaveSweep()
    return step_job(repo, publisher, job, now, queue)


def step_job(repo: Repository, publisher: Publisher, job: Job, now: float, queue: FanoutQueue) -> WaveSweep:
    """For one ACTIVE staged job: start its next wave when due (domain/waves.next_step), record when a
    pause job's wave was seen finished, or abort the job when its current wave crossed the failure
    threshold. Every change is a conditional write: the sweeper and device-message handlers may race."""
    from .abort import check_abort
    from .fanout import progress

    if job.state != "ACTIVE" or not rules.staged(job):
        return WaveSweep()
    if job.current_wave < 0:  # a percent job whose last fan-out item did not get to start wave 0
        made = progress(repo, job)
        if made["fanout_done"]:
            return WaveSweep(started=int(fanout_finished(repo, queue, job.job_id, made["executions_created"], now)))
        return WaveSweep()
    following = rules.has_next(job)
    if following is None:  # the fan-out is still counting: is a member of the next wave stored?
        first, _ = rules.bounds(job, job.current_wave + 1)
        following = bool(repo.wave_members(job.job_id, first, first + 1))
    if job.wave_percent:  # sized when its fan-out was done; complete once its release is
        complete = repo.job_counts(job.job_id).get(rules.released_marker(job.current_wave), 0) > 0
    else:
        complete = following or progress(repo, job)["fanout_done"]
    counts = repo.wave_counts(job.job_id, job.current_wave, job.current_wave + 1).get(job.current_wave, {})
    step = rules.next_step(job, counts, complete, following, now)
    if step is rules.Step.ABORT:
        return WaveSweep(aborted=int(check_abort(repo, publisher, job.job_id, now)))
    if step is rules.Step.MARK_FINISHED:
        retrying(partial(_mark_finished, repo, job.job_id, job.current_wave, now))
    elif step is rules.Step.START:
        return WaveSweep(started=int(start_wave(repo, queue, job.job_id, job.current_wave + 1, now) is not None))
    return WaveSweep()


def _mark_finished(repo: Repository, job_id: str, wave: int, now: float) -> None:
    job = repo.get_job(job_id)
    if job is not None and job.state == "ACTIVE" and job.current_wave == wave and job.wave_finished_at is None:
        repo.save_job(bumped(job, wave_finished_at=now))


def view(repo: Repository, job: Job) -> dict[str, Any] | None:
    """The job view's `waves`: the request, the current wave, the total (null while counting) and the
    per-state counters of the current wave and up to SHOWN_WAVES - 1 before it; None if not staged."""
    if not rules.staged(job):
        return None
    from .common import iso

    shown: list[dict[str, Any]] = []
    if job.current_wave >= 0:
        first = max(0, job.current_wave - SHOWN_WAVES + 1)
        counted = repo.wave_counts(job.job_id, first, job.current_wave + 1)
        shown = [{"wave": w, "counts": {s: max(0, counted.get(w, {}).get(s, 0)) for s in ex.STATES if s != ex.SKIPPED}}
                 for w in range(job.current_wave, first - 1, -1)]
    request = {"size": job.wave_size} if not job.wave_percent else {"percent": job.wave_percent}
    return {**request, f"{job.wave_gate}_seconds": job.wave_delay, "wave_size": job.wave_size or None,
            "total": job.waves_total or None, "current": job.current_wave if job.current_wave >= 0 else None,
            "current_started_at": iso(job.wave_started_at), "current_finished_at": iso(job.wave_finished_at),
            "recent": shown}
