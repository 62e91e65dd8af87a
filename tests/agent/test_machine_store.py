"""The transition and resume tables, the atomic store, and the spool/bitmap."""

from __future__ import annotations

import os

import pytest

from agent.machine import RESUME, STALL, TRANSITIONS, Event, State, TransitionError, next_state, resume_state
from agent.spool import Spool
from agent.store import Store, atomic_write
from otaformat import wire
from otaformat.errors import MalformedError

HAPPY = [
    (State.IDLE, Event.JOB_ACCEPTED, State.DOWNLOADING),
    (State.DOWNLOADING, Event.COMPLETE, State.VERIFYING),
    (State.VERIFYING, Event.VERIFIED, State.INSTALLING),
    (State.INSTALLING, Event.INSTALLED, State.COMMITTING),
    (State.COMMITTING, Event.COMMITTED, State.REPORTING),
    (State.REPORTING, Event.REPORTED, State.IDLE),
]
FAILURES = [
    (State.IDLE, Event.JOB_REFUSED, State.REPORTING),
    (State.DOWNLOADING, Event.DOWNLOAD_FAILED, State.REPORTING),
    (State.DOWNLOADING, Event.CANCELED, State.REPORTING),
    (State.VERIFYING, Event.REJECTED, State.REPORTING),
    (State.VERIFYING, Event.CANCELED, State.REPORTING),
    (State.INSTALLING, Event.INSTALL_FAILED, State.ROLLING_BACK),
    (State.COMMITTING, Event.INSTALL_FAILED, State.ROLLING_BACK),
    (State.ROLLING_BACK, Event.ROLLED_BACK, State.REPORTING),
]
FAULTS = [  # the generic guard: nothing touched -> report, something touched -> roll back, never loop
    (State.DOWNLOADING, Event.FAULT, State.REPORTING),
    (State.VERIFYING, Event.FAULT, State.REPORTING),
    (State.INSTALLING, Event.FAULT, State.ROLLING_BACK),
    (State.COMMITTING, Event.FAULT, State.ROLLING_BACK),
    (State.ROLLING_BACK, Event.FAULT, State.REPORTING),
    (State.REPORTING, Event.FAULT, State.IDLE),
]
COMMANDS = [  # remote commands: only from IDLE, one at a time, a fault drops back to IDLE
    (State.IDLE, Event.COMMAND_ACCEPTED, State.COMMANDING),
    (State.COMMANDING, Event.COMMAND_DONE, State.IDLE),
    (State.COMMANDING, Event.FAULT, State.IDLE),
    # self-update: a new agent commits only after it confirmed itself; a fault restores the old one
    (State.COMMITTING, Event.TRIAL_STARTED, State.TRIAL),
    (State.TRIAL, Event.CONFIRMED, State.COMMITTING),
    (State.TRIAL, Event.FAULT, State.ROLLING_BACK),
]


@pytest.mark.parametrize(("state", "event", "new"), HAPPY + FAILURES + FAULTS + COMMANDS)
def test_transitions(state, event, new):
    assert next_state(state, event) == new


def test_table_is_exactly_these_rows():
    assert {(s, e): n for s, e, n in HAPPY + FAILURES + FAULTS + COMMANDS} == TRANSITIONS


def test_every_busy_state_can_fault_out_and_every_waiting_state_has_a_stall_budget():
    assert {s for s, e in TRANSITIONS if e == Event.FAULT} == set(State) - {State.IDLE}
    assert set(STALL) == {State.DOWNLOADING}  # the only state waiting on the network for its progress
    assert all((state, event) in TRANSITIONS for state, event in STALL.items())


@pytest.mark.parametrize(("state", "event"), [
    (State.IDLE, Event.COMPLETE), (State.INSTALLING, Event.CANCELED),
    (State.REPORTING, Event.JOB_ACCEPTED), (State.COMMITTING, Event.REJECTED),
])
def test_forbidden_transitions(state, event):
    with pytest.raises(TransitionError):
        next_state(state, event)


@pytest.mark.parametrize(
    ("persisted", "resumed"),
    [("IDLE", State.IDLE), ("DOWNLOADING", State.DOWNLOADING), ("VERIFYING", State.VERIFYING),
     ("INSTALLING", State.ROLLING_BACK), ("COMMITTING", State.COMMITTING), ("ROLLING_BACK", State.ROLLING_BACK),
     ("REPORTING", State.REPORTING), ("garbage", State.IDLE)],
)
def test_resume_table(persisted, resumed):
    assert resume_state(persisted) == resumed


def test_every_state_resumes_and_no_resume_lands_in_installing():
    assert set(RESUME) == set(State)
    assert State.INSTALLING not in RESUME.values()


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(str(path), b"old")
    atomic_write(str(path), b"new content")
    assert path.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["state.json"]


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(str(path), b"old")
    with pytest.raises(TypeError):  # the write fails half-way: the old file stays, the temp file goes
        atomic_write(str(path), "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_store_round_trip_and_finished_is_bounded(tmp_path):
    store = Store(str(tmp_path), {"demo": "1.0.0"})
    assert store.data["floors"] == {"demo": "1.0.0"}
    for i in range(40):
        store.remember_finished(f"x{i}", {"state": "SUCCEEDED"})
    store.data["state"] = "DOWNLOADING"
    store.save()
    again = Store(str(tmp_path), {})
    assert again.data["state"] == "DOWNLOADING" and len(again.data["finished"]) == 32
    assert "x39" in again.data["finished"] and "x0" not in again.data["finished"]


def _spool(tmp_path, size=1000, bs=256):
    return Spool(str(tmp_path / "spool"), package_size=size, block_size=bs,
                 block_count=wire.block_count(size, bs), stream=7)


def test_spool_is_exactly_package_size_and_bitmap_follows_flush(tmp_path):
    spool = _spool(tmp_path)
    assert os.path.getsize(spool.path) == 1000
    frame = spool.check(wire.encode_frame(7, 3, 4, b"z" * (1000 - 3 * 256)))
    assert spool.write(frame) and not spool.write(frame)
    assert os.path.getsize(spool.path) == 1000
    spool.close()
    assert _spool(tmp_path).count == 0  # not flushed: not durable, not counted
    spool = _spool(tmp_path)
    spool.write(frame)
    spool.flush()
    spool.close()
    again = _spool(tmp_path)
    assert again.missing() == [0, 1, 2] and again.count == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (wire.encode_frame(7, 0, 4, b"a" * 255), "size"),
        (wire.encode_frame(7, 3, 4, b"a" * 256), "size"),
        (wire.encode_frame(7, 4, 5, b"a" * 256), "range"),
        (wire.encode_frame(8, 0, 4, b"a" * 256), "stream"),
        (wire.encode_frame(7, 0, 4, b"a" * 300), "oversized"),
    ],
)
def test_spool_rejects_frames(tmp_path, frame, code):
    spool = _spool(tmp_path)
    with pytest.raises(MalformedError) as info:
        spool.check(frame)
    assert info.value.code == code


def test_spool_refuses_inconsistent_counts(tmp_path):
    with pytest.raises(MalformedError):
        Spool(str(tmp_path / "s"), package_size=1000, block_size=256, block_count=5, stream=1)


@pytest.mark.parametrize("content", [b"{torn", b"[1, 2]", b"\xff\xfe"])
def test_unreadable_state_is_a_clear_error_not_a_reset(tmp_path, content):
    from agent.store import StoreError

    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(StoreError) as info:
        Store(str(tmp_path), {"demo": "1.0.0"})
    assert "state.json" in str(info.value)


def test_mqtt_transport_sets_tcp_nodelay():
    import socket

    from agent.mqtt_transport import MqttTransport

    transport = MqttTransport("dev-1", "127.0.0.1", 1)
    assert transport.client._client_id == b"dev-1" and transport.client._clean_session is False
    with socket.socket() as sock:
        transport._on_socket_open(transport.client, None, sock)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


@pytest.mark.parametrize("seed", range(12))
def test_spool_ack_equals_wire_make_ack(tmp_path, seed):
    import random

    rng = random.Random(seed)
    bs = 256
    count = rng.choice([1, 7, 8, 9, 64, 300, 70000])
    size = bs * (count - 1) + rng.randint(1, bs)
    spool = Spool(str(tmp_path / "s"), package_size=size, block_size=bs, block_count=count, stream=3)
    density = rng.random()
    prefix = rng.randint(0, count)
    for i in range(count):
        if i < prefix or rng.random() < density * 0.3:
            spool.have[i >> 3] |= 1 << (i & 7)
    for _ in range(2):
        assert spool.ack("x") == wire.make_ack("x", 3, spool.held(), count)
        spool.have[prefix >> 3 if prefix < count else 0] |= 1 << (prefix & 7 if prefix < count else 0)
