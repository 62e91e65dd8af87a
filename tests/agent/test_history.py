"""history.txt: one plain-text line per install attempt, `<stamp> <app> <version> <result>[ <reason>]`,
for failed, refused and rolled-back attempts too, each written once."""

from __future__ import annotations

import os
import re

from .pkgtools import build_package, deliver


def lines(harness) -> list[str]:
    with open(os.path.join(harness.config.data_dir, "history.txt")) as f:
        return f.read().splitlines()


def test_every_attempt_is_one_line_with_its_result(harness, publisher):
    key, _ = publisher
    deliver(harness, *build_package(key, version="1.0.0"))
    deliver(harness, *build_package(key, version="1.1.0", scripts={"install": "#!/bin/sh\necho no >&2\nexit 1\n"}))
    deliver(harness, *build_package(key, version="1.2.0", models=("m9",)))
    deliver(harness, *build_package(key, version="1.3.0"))
    got = lines(harness)
    assert [ln.split()[1:4] for ln in got] == [["demo", "1.0.0", "SUCCEEDED"], ["demo", "1.1.0", "ROLLED_BACK"],
                                               ["demo", "1.2.0", "REJECTED"], ["demo", "1.3.0", "SUCCEEDED"]]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", ln) for ln in got)
    assert "install script exited with status 1" in got[1] and "m9" in got[2]
    assert all(len(ln) < 300 for ln in got)


def test_a_restart_while_reporting_writes_the_line_once(harness, publisher):
    key, _ = publisher
    harness.transport.connected = False  # the outcome cannot be reported: REPORTING waits (persisted)
    deliver(harness, *build_package(key, version="1.0.0", models=("m9",)))
    harness.restart()
    harness.transport.connected = True
    harness.idle(0.1)
    assert [ln.split()[1:4] for ln in lines(harness)] == [["demo", "1.0.0", "REJECTED"]]
