"""The simulated device's protocol logic (bench/fleetsim/device.py), driven with hand-made frames: no broker."""

from __future__ import annotations

import hashlib
import json
import os
import random

import pytest

from bench.fleetsim.device import Device
from otaformat import messages, wire

BLOCK = 256


def job(data: bytes, *, epn: str = "dev-1", stream: int = 7, window: int = 4, group: dict | None = None,
        execution_id: str = "ex-1") -> bytes:
    doc = messages.JobDocument("job-1", execution_id, epn, stream, "block",
                               {"manifest": {"app": "demo", "version": "1.1.0"}, "signatures": []},
                               len(data), hashlib.sha256(data).hexdigest(), BLOCK,
                               wire.block_count(len(data), BLOCK), window)
    body = doc.to_dict()
    if group is not None:
        body["group"] = group
    return json.dumps(body).encode()


def frames(data: bytes, stream: int = 7) -> list[bytes]:
    total = wire.block_count(len(data), BLOCK)
    return [wire.encode_frame(stream, i, total, data[i * BLOCK:(i + 1) * BLOCK]) for i in range(total)]


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []

    def of(self, leaf: str) -> list[dict]:
        return [json.loads(p) for lf, p in self.sent if lf == leaf]


def device(epn: str = "dev-1") -> tuple[Device, Wire]:
    w = Wire()
    return Device(epn, "m1", lambda leaf, p: w.sent.append((leaf, p)), subscribe=w.subscribed.append,
                  unsubscribe=w.unsubscribed.append), w


def final(w: Wire) -> dict:
    return [s for s in w.of("status") if s.get("type") == "status"][-1]


@pytest.mark.parametrize("order", ["in-order", "reversed", "shuffled-with-duplicates"])
def test_any_arrival_order_gives_the_right_hash_and_success(order):
    data = os.urandom(BLOCK * 9 + 17)
    d, w = device()
    d.on_message("ota/dev-1/job", job(data), 0.0)
    fs = frames(data)
    if order == "reversed":
        fs.reverse()
    elif order == "shuffled-with-duplicates":
        fs = fs + fs[:4]
        random.Random(3).shuffle(fs)
    for f in fs:
        d.on_message("ota/dev-1/blk", f, 0.01)
    assert final(w)["state"] == "SUCCEEDED"
    assert d.outcomes["ex-1"]["hash_ok"] is True
    assert d.apps == {"demo": "1.1.0"}
    assert w.of("status")[-1]["type"] == "inventory"
    assert [s.get("step") for s in w.of("status") if s.get("state") == "IN_PROGRESS"] == ["DOWNLOADING", "VERIFYING"]
    assert w.of("ack")[-1]["n"] == 10  # the last ack covers everything


def test_wrong_bytes_fail_the_hash():
    data = os.urandom(BLOCK * 3)
    d, w = device()
    d.on_message("ota/dev-1/job", job(data), 0.0)
    other = bytes(BLOCK) + data[BLOCK:]
    for f in frames(other):
        d.on_message("ota/dev-1/blk", f, 0.0)
    assert final(w)["state"] == "FAILED" and final(w)["reason"].startswith("hash")


@pytest.mark.parametrize(("name", "mangle"), [
    ("other stream", lambda f: wire.encode_frame(8, 0, 3, f[13:])),
    ("other total", lambda f: wire.encode_frame(7, 0, 4, f[13:])),
    ("bad crc", lambda f: f[:-1] + bytes([f[-1] ^ 1])),
    ("short block", lambda f: wire.encode_frame(7, 0, 3, f[13:-1])),
    ("too long", lambda f: f + b"x"),
])
def test_frames_failing_a_check_are_dropped(name, mangle):
    data = os.urandom(BLOCK * 3)
    d, _ = device()
    d.on_message("ota/dev-1/job", job(data), 0.0)
    d.on_message("ota/dev-1/blk", mangle(frames(data)[0]), 0.0)
    assert d.counters.dropped == 1 and d.active is not None and d.active.count == 0, name


def test_first_get_asks_for_everything_and_repairs_follow_the_idle_rule():
    data = os.urandom(BLOCK * 20)
    d, w = device()
    d.on_message("ota/dev-1/job", job(data), 0.0)
    first = wire.decode_request(json.dumps(w.of("get")[0]).encode())
    assert first.wanted(20) == list(range(20))
    for f in frames(data)[:5]:
        d.on_message("ota/dev-1/blk", f, 0.1)
    d.tick(0.5)
    assert len(w.of("get")) == 1
    d.tick(1.2)
    repair = wire.decode_request(json.dumps(w.of("get")[1]).encode())
    assert repair.wanted(20) == list(range(5, 20))


def test_other_device_document_is_rejected_and_finished_execution_repeats_its_status():
    data = os.urandom(BLOCK)
    d, w = device()
    d.on_message("ota/dev-1/job", job(data, epn="dev-2"), 0.0)
    assert final(w)["state"] == "REJECTED"
    d.on_message("ota/dev-1/job", job(data, execution_id="ex-2"), 0.0)
    d.on_message("ota/dev-1/blk", frames(data)[0], 0.0)
    seq = final(w)["seq"]
    d.on_message("ota/dev-1/job", job(data, execution_id="ex-2"), 1.0)
    assert final(w)["state"] == "SUCCEEDED" and final(w)["seq"] > seq


GROUP = {"topic": "ota/g/m1/job-1/blk", "stream": 99}


def test_group_member_subscribes_first_marks_its_messages_and_takes_group_frames():
    data = os.urandom(BLOCK * 4)
    d, w = device()
    d.on_message("ota/dev-1/job", job(data, group=GROUP), 0.0)
    assert w.subscribed == ["ota/g/m1/job-1/blk"]
    downloading = w.of("status")[0]
    assert (downloading["step"], downloading["g"]) == ("DOWNLOADING", 99) and w.of("get")[0]["g"] == 99
    group_frames, own_frames = frames(data, stream=99), frames(data, stream=7)
    d.on_message("ota/g/m1/job-1/blk", own_frames[0], 0.0)  # the execution's stream on the group topic
    d.on_message("ota/g/m1/job-2/blk", group_frames[0], 0.0)  # a group topic this download does not follow
    assert d.counters.dropped == 2
    for f in group_frames[:3]:
        d.on_message("ota/g/m1/job-1/blk", f, 0.0)
    d.on_message("ota/dev-1/blk", own_frames[3], 0.0)  # a unicast repair
    assert (d.counters.frames_group, d.counters.frames_own) == (3, 1)
    assert final(w)["state"] == "SUCCEEDED" and all(a["g"] == 99 for a in w.of("ack"))
    assert w.unsubscribed == ["ota/g/m1/job-1/blk"]


def test_document_again_without_group_moves_the_download_to_unicast():
    data = os.urandom(BLOCK * 4)
    d, w = device()
    d.on_message("ota/dev-1/job", job(data, group=GROUP), 0.0)
    d.on_message("ota/dev-1/job", job(data), 2.0)
    assert w.unsubscribed == ["ota/g/m1/job-1/blk"] and "g" not in w.of("get")[-1]
    d.on_message("ota/g/m1/job-1/blk", frames(data, stream=99)[0], 2.1)
    assert d.counters.dropped == 1


def test_group_of_another_model_is_rejected():
    d, w = device()
    d.on_message("ota/dev-1/job", job(os.urandom(BLOCK), group={"topic": "ota/g/m2/job-1/blk", "stream": 99}), 0.0)
    assert final(w)["state"] == "REJECTED" and final(w)["reason"].startswith("malformed")
    assert w.subscribed == [] and d.active is None


@pytest.mark.parametrize("group", [{"topic": "ota/model/m1/blk", "stream": 99}, {"topic": "ota/g/m1/j/blk"}])
def test_a_document_with_a_malformed_group_is_dropped_like_any_malformed_message(group):
    d, w = device()  # as the agent does (docs/protocol.md: a malformed message is dropped and counted)
    d.on_message("ota/dev-1/job", job(os.urandom(BLOCK), group=group), 0.0)
    assert w.of("status") == [] and w.subscribed == [] and d.active is None


def test_stall_budget_fails_the_download():
    data = os.urandom(BLOCK * 2)
    d, w = device()
    body = json.loads(job(data))
    body["stall_timeout"] = 10
    d.on_message("ota/dev-1/job", json.dumps(body).encode(), 0.0)
    d.tick(10.5)
    assert final(w)["state"] == "FAILED" and "stalled" in final(w)["reason"]
