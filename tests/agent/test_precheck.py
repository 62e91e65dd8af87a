"""Everything the signed envelope in the job document allows is checked before the download: the job is
refused with zero blocks asked for (block mode) and zero requests made (URL mode)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import Any

import pytest

from otaformat import wire

from .conftest import Harness
from .httpfakes import CountingSession
from .pkgtools import build_package, deliver, job_for, new_key


def delta_to(base_version: str, base_sha256: str) -> dict[str, Any]:
    return {"delta": {"base_version": base_version, "base_sha256": base_sha256, "encoding": "bsdiff4",
                      "target_sha256": hashlib.sha256(b"t").hexdigest(), "target_length": 1},
            "patch": b"junk", "files": {"bin/app": b"t"}, "version": "1.1.0"}


# name -> (build_package arguments, job arguments, what to do to the device first, state, reason part)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str, str, str]] = {
    "app not managed": ({"app": "other"}, {}, "", "REJECTED", "app other is not managed"),
    "delta for another base version": (delta_to("0.9.0", "0" * 64), {}, "", "REJECTED",
                                       "delta is for base demo 0.9.0, installed is 1.0.0"),
    "delta for another build of the installed version": (delta_to("1.0.0", "0" * 64), {}, "", "REJECTED",
                                                         "delta is for another build of demo 1.0.0"),
    "delta whose base is not kept": (delta_to("1.0.0", "0" * 64), {}, "drop-base", "FAILED",
                                     "base content of demo 1.0.0 is not kept"),
    "another device": ({}, {"epn": "dev-2"}, "", "REJECTED", "names device dev-2"),
    "other model": ({"models": ("m2",)}, {}, "", "REJECTED", "wrong-model"),
    "expired": ({"expires": "2026-01-02T00:00:00Z"}, {}, "", "REJECTED", "expired"),
    "downgrade": ({"version": "0.9.0"}, {}, "", "REJECTED", "downgrade"),
    "untrusted signature": ({"key": "other"}, {}, "", "REJECTED", "untrusted-key"),
}


@pytest.mark.parametrize("mode", ["block", "url"])
@pytest.mark.parametrize("name", list(CASES))
def test_refused_before_the_first_block(config, publisher, name, mode):
    build, job_kw, prepare, state, reason = CASES[name]
    session = CountingSession()
    h = Harness(replace(config, managed_apps=("demo",)), http=session)
    deliver(h, *build_package(publisher[0], version="1.0.0", files={"bin/app": os.urandom(2000)}))
    if prepare == "drop-base":
        os.unlink(os.path.join(config.data_dir, "base", "demo", "1.0.0.bin"))
    build = dict(build)
    key = new_key()[0] if build.pop("key", None) else publisher[0]
    package, envelope = build_package(key, **build)
    gets_before = len(h.transport.leaf("get"))
    job = job_for(package, envelope, mode=mode, url="http://127.0.0.1:9/pkg" if mode == "url" else None, **job_kw)
    h.job(job)
    final = h.transport.terminal()[-1]
    assert (final.execution_id, final.state) == (job.execution_id, state)
    assert reason in (final.reason or ""), final.reason
    assert len(h.transport.leaf("get")) == gets_before  # no block asked for, no URL refresh
    assert session.requests == 0  # no byte fetched
    steps = [s.step for s in h.transport.statuses() if s.execution_id == job.execution_id]
    assert steps == [None] and h.agent.state == "IDLE"  # never entered DOWNLOADING


def test_a_delta_for_the_installed_build_is_accepted(config, publisher):
    h = Harness(replace(config, managed_apps=("demo",)))
    base = os.urandom(2000)
    deliver(h, *build_package(publisher[0], version="1.0.0", files={"bin/app": base}))
    package, envelope = build_package(publisher[0], **delta_to("1.0.0", hashlib.sha256(base).hexdigest()))
    job = job_for(package, envelope)
    h.job(job)
    assert h.agent.state == "DOWNLOADING"
    assert wire.decode_request(h.transport.leaf("get")[-1]).execution_id == job.execution_id
