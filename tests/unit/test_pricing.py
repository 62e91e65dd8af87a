"""The rollout cost model (chalicelib/domain/pricing.py) against hand-computed cases, and the price tables."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from chalicelib import prices
from chalicelib.domain import pricing as p
from chalicelib.domain.errors import InvalidInput

KiB, MiB = 1024, 1024 * 1024

# (spec, expected counts): worked by hand from the rules in docs/operations.md "Cost of a rollout"
CASES = [
    # 10 blocks of 1 KiB (last 784 B), window 4 -> ack every 2 blocks: 5 acks, 1 get, 4 statuses + inventory.
    # every message < 5 KB: job doc and each frame 3 units (HTTP publish, delivery, PUBACK); 11 up: 1 unit each
    (p.RolloutSpec(10_000, 1024, 4, 1, epn_length=5, job_document_bytes=2000),
     {"blocks": 10, "resends": 0, "acks": 5, "gets": 1, "statuses": 5, "down_messages": 11, "up_messages": 11,
      "iot_units": 3 + 10 * 3 + 11}),
    # 100,000 B in 32 KiB blocks: 3 full + 1696 B; 10 % loss -> ceil(4 * 0.1 / 0.9) = 1 resend (fast repair:
    # no more gets, the repaired copy counts toward the next ack); a full frame (32781 B + 24 B topic) is
    # 7 + 7 + 1 units, the last 3; per device 45 + 3 + 15 (resend) + 3 (job doc) + 7 up (1 ack, 1 get, 5) = 73
    (p.RolloutSpec(100_000, 32 * KiB, 64, 10, loss=0.1, epn_length=16, job_document_bytes=2048),
     {"blocks": 40, "resends": 10, "acks": 10, "gets": 10, "statuses": 50, "down_messages": 10 * 6,
      "up_messages": 10 * 7, "iot_units": 730}),
    # docs/protocol.md section 7 measured 0.032 acks per block at window 64 and 0.126 at window 16 (1001 blocks)
    (p.RolloutSpec(1001 * KiB, KiB, 64, 1), {"blocks": 1001, "acks": 32}),
    (p.RolloutSpec(1001 * KiB, KiB, 16, 1), {"blocks": 1001, "acks": 126}),
    # URL mode: no blocks; 3 MiB at 480 KiB/s = 6.4 s -> 2 progress statuses; 3 ranged GETs of 1 MiB per device
    (p.RolloutSpec(3 * MiB, 32 * KiB, 64, 2, mode="url"),
     {"blocks": 0, "acks": 0, "statuses": 2 * 7, "down_messages": 2, "s3_gets": 6, "s3_bytes_out": 6 * MiB}),
    # block mode under the S3 cache limit: HEAD + GET of the whole object once per container (5)
    (p.RolloutSpec(MiB, 32 * KiB, 64, 100), {"s3_gets": 10, "s3_bytes_out": 0}),
]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_counts_follow_the_protocol(spec: p.RolloutSpec, expected: dict[str, int]) -> None:
    counts = p.count(spec)
    assert {k: getattr(counts, k) for k in expected} == expected


@pytest.mark.parametrize(("size", "units"), [(0, 1), (1, 1), (5120, 1), (5121, 2), (32 * KiB + 13 + 24, 7)])
def test_message_units_are_5_kb_increments(size: int, units: int) -> None:
    assert p.units(size, p.IOT_UNIT) == units


def test_prices_multiply_the_counts() -> None:
    table = prices.load()
    counts = p.Counts(iot_units=2_000_000, rules=1_000_000, invocations=1_000_000, gb_seconds=60_000.0,
                      write_units=4_000_000, read_units=8_000_000.0, s3_gets=10_000, s3_bytes_out=2 * 2**30,
                      sqs_requests=1_000_000, api_requests=1_000_000, connection_minutes=1_000_000)
    estimate = p.price(p.RolloutSpec(1, 256, 1, 1), counts, table)
    cost = {line.item: round(line.cost, 6) for line in estimate.lines}
    assert cost == {"messages (5 KB units)": 2.0, "rules triggered": 0.15, "rule actions (SQS)": 0.15,
                    "connection minutes": 0.08, "requests": 3.5, "invocations": 0.2, "compute": 1.000002,
                    "write units": 2.5, "read units": 1.0, "GET/HEAD requests": 0.004, "transfer out": 0.18}
    assert estimate.total == pytest.approx(sum(line.cost for line in estimate.lines))
    assert estimate.prices == prices.DEFAULT


def test_loss_and_targets_only_add_cost() -> None:
    table = prices.load()
    base = p.estimate(p.RolloutSpec(10 * MiB, 32 * KiB, 64, 100), table).total
    assert p.estimate(p.RolloutSpec(10 * MiB, 32 * KiB, 64, 100, loss=0.05), table).total > base
    assert p.estimate(p.RolloutSpec(10 * MiB, 32 * KiB, 64, 200), table).total == pytest.approx(2 * base, rel=0.02)


def test_iot_jobs_with_streams_worked_example() -> None:
    # 10 MiB = 2560 blocks of 4 KiB; per block a GetStream request (1 unit) and a CBOR data message (4240 B:
    # 1 unit); 7 job messages and the job document (1 unit) per device; one remote action per device
    estimate = p.iot_jobs_streams(p.RolloutSpec(10 * MiB, 32 * KiB, 64, 1000), prices.load())
    assert estimate.counts.iot_units == 1000 * (2560 * 2 + 7 + 1)
    assert estimate.total == pytest.approx(5.128 + 1000 * 0.003)


def test_every_table_is_complete_and_names_its_sources() -> None:
    folder = Path(prices.__file__).parent
    for name in prices.names():
        data = json.loads((folder / f"{name}.json").read_text())
        assert data["name"] == name and re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["date"])
        assert all(url.startswith("https://aws.amazon.com/") for url in data["sources"].values())
        loaded = prices.load(name)
        assert all(getattr(loaded, f.name) for f in fields(loaded))
    assert prices.DEFAULT in prices.names()


@pytest.mark.parametrize("name", ["nope", "../aws-us-east-1-2026-11", "AWS-US-EAST-1-2026-11", ""])
def test_unknown_tables_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="prices"):
        prices.load(name)
