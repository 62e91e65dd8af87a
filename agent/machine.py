"""The agent's state machine as data: states, events, the transition table and the resume table. No I/O.

One execution at a time goes IDLE -> DOWNLOADING -> VERIFYING -> INSTALLING -> COMMITTING -> REPORTING
-> IDLE; failures branch to ROLLING_BACK (once something was touched) or straight to REPORTING. The
step functions that produce the events live in `agent.runtime`; this module only says what follows what.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    IDLE = "IDLE"
    DOWNLOADING = "DOWNLOADING"
    VERIFYING = "VERIFYING"
    INSTALLING = "INSTALLING"
    COMMITTING = "COMMITTING"
    ROLLING_BACK = "ROLLING_BACK"
    REPORTING = "REPORTING"
    COMMANDING = "COMMANDING"  # a verified remote command runs (agent.commanding); only entered from IDLE
    TRIAL = "TRIAL"  # a new agent is installed, not committed: it must connect and confirm (agent.selfupdate)


class Event(StrEnum):
    JOB_ACCEPTED = "JOB_ACCEPTED"  # a valid job document for this device arrived
    JOB_REFUSED = "JOB_REFUSED"  # job document refused before downloading (wrong epn, bad sizes, policy)
    COMPLETE = "COMPLETE"  # every block is in the spool and durable
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"  # stall budget spent, spool unusable
    CANCELED = "CANCELED"  # the cloud canceled the execution before install
    VERIFIED = "VERIFIED"  # signature, policy, hashes (and delta result) all good
    REJECTED = "REJECTED"  # verification or policy refused the package
    INSTALLED = "INSTALLED"  # files written, scripts ran, `current` switched
    INSTALL_FAILED = "INSTALL_FAILED"  # a script failed or timed out, or writing failed
    COMMITTED = "COMMITTED"  # version floor, inventory and history persisted
    ROLLED_BACK = "ROLLED_BACK"  # previous `current` restored
    REPORTED = "REPORTED"  # terminal status published, spool removed
    FAULT = "FAULT"  # an unexpected exception in a step, timer or handler: the execution ends FAILED
    COMMAND_ACCEPTED = "COMMAND_ACCEPTED"  # a command passed every check; its id is persisted as seen
    COMMAND_DONE = "COMMAND_DONE"  # its outcome was reported (or it was dropped after a fault)
    TRIAL_STARTED = "TRIAL_STARTED"  # an agent package is installed: restart into it before committing
    CONFIRMED = "CONFIRMED"  # the new agent connected and its report was acknowledged


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.IDLE, Event.JOB_ACCEPTED): State.DOWNLOADING,
    (State.IDLE, Event.JOB_REFUSED): State.REPORTING,
    (State.DOWNLOADING, Event.COMPLETE): State.VERIFYING,
    (State.DOWNLOADING, Event.DOWNLOAD_FAILED): State.REPORTING,
    (State.DOWNLOADING, Event.CANCELED): State.REPORTING,
    (State.VERIFYING, Event.VERIFIED): State.INSTALLING,
    (State.VERIFYING, Event.REJECTED): State.REPORTING,
    (State.VERIFYING, Event.CANCELED): State.REPORTING,
    (State.INSTALLING, Event.INSTALLED): State.COMMITTING,
    (State.INSTALLING, Event.INSTALL_FAILED): State.ROLLING_BACK,
    (State.COMMITTING, Event.COMMITTED): State.REPORTING,
    (State.COMMITTING, Event.INSTALL_FAILED): State.ROLLING_BACK,
    (State.ROLLING_BACK, Event.ROLLED_BACK): State.REPORTING,
    (State.REPORTING, Event.REPORTED): State.IDLE,
    # FAULT: the generic guard (agent.guard). Nothing touched yet -> report; something touched -> roll back;
    # a fault while rolling back or reporting never loops (REPORTING -> IDLE keeps the outcome in `finished`).
    (State.DOWNLOADING, Event.FAULT): State.REPORTING,
    (State.VERIFYING, Event.FAULT): State.REPORTING,
    (State.INSTALLING, Event.FAULT): State.ROLLING_BACK,
    (State.COMMITTING, Event.FAULT): State.ROLLING_BACK,
    (State.ROLLING_BACK, Event.FAULT): State.REPORTING,
    (State.REPORTING, Event.FAULT): State.IDLE,
    # Remote commands: one at a time, never during an execution (the cloud resends them after it).
    (State.IDLE, Event.COMMAND_ACCEPTED): State.COMMANDING,
    (State.COMMANDING, Event.COMMAND_DONE): State.IDLE,
    (State.COMMANDING, Event.FAULT): State.IDLE,
    # Self-update: commit only once the new agent confirmed; otherwise the launcher restores the old one.
    (State.COMMITTING, Event.TRIAL_STARTED): State.TRIAL,
    (State.TRIAL, Event.CONFIRMED): State.COMMITTING,
    (State.TRIAL, Event.FAULT): State.ROLLING_BACK,
}

# States that wait on the network, and the event their stall budget fires when no progress was made for
# that long while connected. Every state listed here must be left by that event (checked by the tests).
STALL: dict[State, Event] = {
    State.DOWNLOADING: Event.DOWNLOAD_FAILED,
}

# Where to continue after a crash or power cut, from the last persisted state.
RESUME: dict[State, State] = {
    State.IDLE: State.IDLE,
    State.DOWNLOADING: State.DOWNLOADING,  # keep the spool and bitmap, ask only for missing blocks
    State.VERIFYING: State.VERIFYING,  # verify again from the spool: nothing was installed yet
    State.INSTALLING: State.ROLLING_BACK,  # half-written install: restore the previous `current`
    State.COMMITTING: State.COMMITTING,  # `current` already switched: finishing the commit is idempotent
    State.ROLLING_BACK: State.ROLLING_BACK,  # rollback is idempotent
    State.REPORTING: State.REPORTING,  # publish the persisted outcome again (QoS 1, the cloud dedups)
    State.COMMANDING: State.COMMANDING,  # never run again: report it (a reboot or restart-agent succeeded)
    State.TRIAL: State.TRIAL,  # the new agent's first start (the launcher restores the old one otherwise)
}

# Steps of otaformat.messages.Status reported while IN_PROGRESS.
REPORTED_STEP: dict[State, str] = {
    State.DOWNLOADING: "DOWNLOADING",
    State.VERIFYING: "VERIFYING",
    State.INSTALLING: "INSTALLING",
}

# Crash checkpoints honoured when OTA_AGENT_CRASH_AT names them (tests only).
CHECKPOINTS = ("block-written", "verified", "mid-install", "before-commit", "after-commit")


class TransitionError(Exception):
    """An event that the table does not allow in the current state (a bug, never input-driven)."""


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError as err:
        raise TransitionError(f"event {event} is not allowed in state {state}") from err


def resume_state(persisted: str) -> State:
    """State to continue in after a restart; unknown text (never written by us) falls back to IDLE."""
    try:
        return RESUME[State(persisted)]
    except ValueError:
        return State.IDLE
