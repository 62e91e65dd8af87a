"""Staged rollouts (issue 13), the pure rules: which wave a target belongs to, when the next wave is
due, and when a wave's failures abort the job. No I/O, no clock (`now` is passed in).

A staged job sends its executions wave after wave. Membership follows target order: the fan-out gives
every eligible target (not SKIPPED) the next *ordinal* (0, 1, 2, ...: explicit list order, or the
model's device listing order), and the wave of ordinal n is `n // wave_size`. For `percent` the size is
`ceil(percent x eligible / 100)` (at least 1), known only when the fan-out is done; a `size` job knows
it from the start. There are at most MAX_WAVES waves: an explicit list that would need more is refused
at creation; for a model target the last wave (MAX_WAVES - 1) takes every remaining device.

The next wave starts when the current one is *due*: `interval` jobs `delay` seconds after the current
wave started; `pause` jobs `delay` seconds after the current wave finished (its membership complete and
every execution of it terminal, as first seen by the sweeper). Either way not if the current wave
crossed the job's failure threshold: the threshold is evaluated per wave (`abort_reason`), and a wave
smaller than `min_executed` counts once all of its executions were executed.
Does not: store, publish or read anything (services/waves.py does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum

from .executions import STATES, UNFINISHED
from .models import Job
from .retries import abort_reason as threshold_reason

MAX_WAVES = 1000
MAX_WAVE_SIZE = 10_000
MAX_DELAY = 7 * 86400
NO_END = 1 << 40  # the end ordinal of the last wave of a model target: every remaining device


class Step(Enum):
    WAIT = "wait"  # nothing to do now
    MARK_FINISHED = "mark finished"  # pause job: record when the current wave was seen finished
    START = "start"  # start the next wave now
    ABORT = "abort"  # the current wave crossed the failure threshold


def staged(job: Job) -> bool:
    return job.wave_size > 0 or job.wave_percent > 0


def percent_size(percent: int, eligible: int) -> int:
    """A percent job's wave size once its eligible targets are counted (ceil, at least one device)."""
    return max(1, math.ceil(percent * eligible / 100))


def wave_count(size: int, eligible: int) -> int:
    """How many waves `eligible` targets make in waves of `size` (at most MAX_WAVES)."""
    return min(MAX_WAVES, math.ceil(eligible / size)) if size > 0 else 0


def wave_of(job: Job, ordinal: int) -> int | None:
    """The wave of the target with this ordinal; None while a percent job's size is unknown."""
    if job.wave_size <= 0:
        return None
    return min(ordinal // job.wave_size, MAX_WAVES - 1)


def bounds(job: Job, wave: int) -> tuple[int, int]:
    """The ordinals [first, end) of a wave (the last possible wave runs to NO_END)."""
    first = wave * job.wave_size
    return first, NO_END if wave >= MAX_WAVES - 1 else first + job.wave_size


def released(job: Job, wave: int | None) -> bool:
    """Has this wave started (its executions are sent as soon as they exist)?"""
    return wave is not None and 0 <= wave <= job.current_wave


def late_wave(job: Job) -> int | None:
    """The wave a device of a continuous job registered after the fan-out joins: the current one, or
    None while no wave has started (it then waits for wave 0)."""
    return job.current_wave if job.current_wave >= 0 else None


def has_next(job: Job) -> bool | None:
    """Is there a wave after the current one? None while the fan-out is still counting (the caller
    looks for a member of the next wave)."""
    if job.current_wave >= MAX_WAVES - 1:
        return False
    if job.waves_total:
        return job.current_wave + 1 < job.waves_total
    return None


def unfinished(counts: Mapping[str, int]) -> int:
    return sum(max(0, counts.get(s, 0)) for s in UNFINISHED)


def abort_reason(job: Job, wave: int, counts: Mapping[str, int]) -> str | None:
    """Why one wave's counters abort the job (the job's threshold; `min_executed` capped at the wave's
    size so a small wave still counts), or None."""
    members = sum(max(0, counts.get(s, 0)) for s in STATES)
    reason = threshold_reason(counts, job.abort_percent, max(1, min(job.abort_min_executed, members)))
    return None if reason is None else f"wave {wave}: {reason}"


def released_marker(wave: int) -> str:
    """The job counter a percent job's release of `wave` adds when its last page is done (until then its
    WAITING members have no wave and are in no wave's counters, so the wave is not complete)."""
    return f"released_w{wave}"


def next_step(job: Job, counts: Mapping[str, int], complete: bool, next_exists: bool, now: float) -> Step:
    """What the sweeper does about a started staged job: `counts` are the current wave's counters,
    `complete` says its membership is complete (fan-out past it; a percent job's: released whole),
    `next_exists` that a next wave exists."""
    if job.current_wave < 0 or job.state != "ACTIVE":
        return Step.WAIT
    if abort_reason(job, job.current_wave, counts) is not None:
        return Step.ABORT
    if not next_exists:
        return Step.WAIT
    if job.wave_gate == "interval":
        started = job.wave_started_at if job.wave_started_at is not None else now
        return Step.START if now >= started + job.wave_delay else Step.WAIT
    if not complete or unfinished(counts):
        return Step.WAIT
    if job.wave_finished_at is None:
        return Step.START if job.wave_delay == 0 else Step.MARK_FINISHED
    return Step.START if now >= job.wave_finished_at + job.wave_delay else Step.WAIT


def counter_moves(before: tuple[str, int | None] | None, after: tuple[str, int | None]
                  ) -> dict[int, dict[str, int]]:
    """How a write of an execution moves the per-wave counters (the repositories apply it): `before`
    is the stored (state, wave), None for a new execution; an execution without a wave counts in none."""
    moves: dict[int, dict[str, int]] = {}
    if before == after:
        return moves
    if before is not None and before[1] is not None:
        moves.setdefault(before[1], {})[before[0]] = -1
    if after[1] is not None:
        wave = moves.setdefault(after[1], {})
        wave[after[0]] = wave.get(after[0], 0) + 1
    return {w: {s: d for s, d in m.items() if d} for w, m in moves.items() if any(m.values())}
