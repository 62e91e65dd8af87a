"""The cost of a rollout before it starts: request counts from the protocol's rules, then dollars. Pure.

`count(spec, assume)` turns a rollout (package size, block size, window, targets, expected loss, mode)
into what AWS meters: IoT Core messages in 5 KB units (the HTTP publish of the Lambda, the delivery to
the device and the device's PUBACK for every cloud-to-device message; every device publish), rules and
actions, SQS requests, Lambda invocations and GB-seconds, DynamoDB write and read units, S3 requests
and transfer, API Gateway requests and connection minutes. `price(counts, prices)` multiplies them by
one price table (chalicelib/prices/). `iot_jobs_streams` prices the same rollout done with AWS IoT Jobs
and MQTT-based file delivery (streams), for docs/operations.md.

The rules (docs/protocol.md and docs/operations.md "Cost of a rollout"): one job document per device;
every block once, plus the blocks loss makes the cloud resend (fast repair, once per lost copy, a resent
copy being lost as often: B * p / (1 - p)); one ack per half window of new blocks (the agent's policy; a
repaired copy is a new block); one `get`, the start signal (losses are repaired from the acks); four
statuses and one inventory. Every
number that is not the protocol's but the platform's (messages per Lambda batch, handler time, item
sizes, concurrent containers) is an `Assumptions` field with its default and why. No I/O here: the
service (services/estimate.py) reads the package and the targets, the table is loaded by
chalicelib/prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

IOT_UNIT = 5120  # IoT Core meters messages in 5 KB increments (taken as 5 x 1024 bytes)
FRAME_HEADER = 13  # otaformat.wire.FRAME_HEADER.size
S3_CACHE_LIMIT = 16 * 1024 * 1024  # adapters/s3.py: whole objects up to this size are read once per container
URL_RANGE = 1024 * 1024  # the agent's Range requests in URL mode (docs/protocol.md section 9)
ACTIVE_SHARDS = 8  # adapters/dynamo/: the sweeper queries this many index shards
ACK_MESSAGE = 64  # {"b":"..","n":..,"s":..,"x":"ex-..."}: a few dozen bytes (under one 5 KB unit anyway)
STATUS_MESSAGE = 128
INVENTORY_MESSAGE = 128
GET_MESSAGE = 64


@dataclass(frozen=True)
class Prices:
    """One price table (USD), as loaded from chalicelib/prices/<name>.json."""

    name: str
    region: str
    date: str
    iot_message_unit_bytes: int
    iot_messages_per_million: float
    iot_connection_minutes_per_million: float
    iot_rules_per_million: float
    iot_actions_per_million: float
    iot_jobs_per_remote_action: float
    lambda_requests_per_million: float
    lambda_gb_second: float
    dynamodb_write_units_per_million: float
    dynamodb_read_units_per_million: float
    sqs_requests_per_million: float
    s3_get_per_thousand: float
    s3_transfer_out_per_gb: float
    api_gateway_requests_per_million: float


@dataclass(frozen=True)
class RolloutSpec:
    """What is known before the rollout: the job's settings and the package and targets it names."""

    package_size: int
    block_size: int
    window: int
    targets: int
    mode: str = "block"
    loss: float = 0.0  # share of cloud-to-device frames lost on their first arrival (0 .. 0.5)
    epn_length: int = 16  # mean EPN length (topics are metered with the payload)
    job_document_bytes: int = 2048  # the job document (mostly the signed envelope)


@dataclass(frozen=True)
class Assumptions:
    """What the platform decides, not the protocol: defaults from infra/template.yaml, .chalice/config.json
    and the benchmarks; each can be changed per estimate."""

    messages_per_invocation: float = 1.0  # SQS -> Lambda without a batching window: an upper bound of 1
    lambda_memory_mb: int = 1024  # .chalice/config.json lambda_memory_size
    handler_ms: float = 40.0  # one device-message invocation without publishes (decode, DynamoDB round trips)
    publish_ms: float = 6.0  # one iot-data Publish call from the Lambda
    api_ms: float = 150.0  # the API handler creating the job (plus publish_ms per job document)
    containers: int = 5  # MaximumConcurrency of the device-message mapping (warm containers reading S3)
    sweep_seconds: float = 60.0  # EventBridge rate(1 minute)
    device_bytes_per_second: float = 491520.0  # OTA_DEVICE_BYTE_RATE: the pace of one device's blocks
    setup_seconds: float = 5.0  # before and after the transfer: job document, verify, install, report
    writes_per_message: float = 1.0  # one conditional PutItem per execution message (batches rarely merge)
    execution_item_bytes: int = 1500  # an execution item (timeline, transfer bitmaps) before its bitmaps
    device_item_bytes: int = 600
    job_item_bytes: int = 1200
    inventory_reads: int = 4  # get device, its executions, its pending commands, its releases
    statuses: int = 4  # IN_PROGRESS DOWNLOADING, VERIFYING, INSTALLING, then SUCCEEDED
    url_progress_seconds: float = 3.0  # URL mode: a progress status this often while downloading
    api_requests: int = 1  # POST /jobs (add the polls of `ota jobs watch` if you watch it)


@dataclass(frozen=True)
class Counts:
    """What one rollout makes AWS count (whole rollout, every target)."""

    job_documents: int = 0
    blocks: int = 0
    resends: int = 0
    acks: int = 0
    gets: int = 0
    statuses: int = 0  # statuses and inventories
    down_messages: int = 0  # cloud -> device publishes
    up_messages: int = 0  # device -> cloud publishes
    iot_units: int = 0  # metered 5 KB messages: HTTP publish + delivery + PUBACK down, publish up
    rules: int = 0  # rule triggered (and one SQS action) per device publish
    sqs_requests: int = 0
    invocations: int = 0  # Lambda: device messages + API + sweeps
    gb_seconds: float = 0.0
    write_requests: int = 0
    write_units: int = 0
    read_requests: int = 0
    read_units: float = 0.0
    s3_gets: int = 0
    s3_bytes_out: int = 0
    connection_minutes: int = 0
    api_requests: int = 0
    seconds: float = 0.0  # how long the rollout is expected to last (one device's transfer + setup)


@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float  # USD per `unit`
    cost: float


@dataclass(frozen=True)
class Estimate:
    spec: RolloutSpec
    counts: Counts
    lines: tuple[Line, ...]
    prices: str  # the table's name
    total: float


def units(size: int, unit_bytes: int) -> int:
    """5 KB units metered for one message of `size` bytes (at least one)."""
    return max(1, math.ceil(size / unit_bytes))


def down_units(payload: int, topic: int, unit_bytes: int) -> int:
    """One cloud-to-device message from a Lambda: the HTTP publish (body), the delivery to the device
    (payload and topic) and the device's PUBACK (QoS 1: one unit)."""
    return units(payload, unit_bytes) + units(payload + topic, unit_bytes) + 1


def half_window(window: int) -> int:
    return max(1, window // 2)


def transfer(spec: RolloutSpec) -> tuple[int, int, int, int]:
    """Per device in block mode: (blocks, resends, acks, gets) from the protocol's rules."""
    blocks = max(1, math.ceil(spec.package_size / spec.block_size))
    loss = min(max(spec.loss, 0.0), 0.5)
    resends = math.ceil(blocks * loss / (1 - loss)) if loss else 0
    acks = math.ceil(blocks / half_window(spec.window))  # new blocks per ack; a repaired copy is a new block
    gets = 1  # the start signal; losses are repaired by the cloud's fast repair, not by the device asking
    return blocks, resends, acks, gets


def _ru(size: int, strong: bool = True) -> float:
    """DynamoDB read units of one item read of `size` bytes (4 KB units; half for eventually consistent)."""
    return math.ceil(max(size, 1) / 4096) * (1.0 if strong else 0.5)


def _wu(size: int) -> int:
    return math.ceil(max(size, 1) / 1024)


def count(spec: RolloutSpec, assume: Assumptions = Assumptions(), unit: int = IOT_UNIT) -> Counts:
    """Every metered request of the rollout (all targets), from the protocol's rules and `assume`;
    IoT messages metered in units of `unit` bytes."""
    t = spec.targets
    blk_topic = doc_topic = up_topic = len("ota//blk") + spec.epn_length
    block_mode = spec.mode == "block"
    seconds = spec.package_size / assume.device_bytes_per_second + assume.setup_seconds
    if block_mode:
        blocks, resends, acks, gets = transfer(spec)
        last = spec.package_size - (blocks - 1) * spec.block_size
        frame_units = ((blocks - 1) * down_units(FRAME_HEADER + spec.block_size, blk_topic, unit)
                       + down_units(FRAME_HEADER + max(last, 1), blk_topic, unit)
                       + resends * down_units(FRAME_HEADER + spec.block_size, blk_topic, unit))
        statuses = assume.statuses + 1
    else:
        blocks = resends = acks = gets = frame_units = 0
        progress = math.floor(spec.package_size / assume.device_bytes_per_second / assume.url_progress_seconds)
        statuses = assume.statuses + 1 + progress
    up_per_device = acks + gets + statuses
    down_per_device = 1 + blocks + resends
    iot_units = t * (down_units(spec.job_document_bytes, doc_topic, unit) + frame_units
                     + acks * units(ACK_MESSAGE + up_topic, unit) + gets * units(GET_MESSAGE + up_topic, unit)
                     + assume.statuses * units(STATUS_MESSAGE + up_topic, unit)
                     + (statuses - assume.statuses) * units(INVENTORY_MESSAGE + up_topic, unit))
    up = t * up_per_device
    device_invocations = math.ceil(up / max(assume.messages_per_invocation, 1e-9))
    sweeps = math.ceil(seconds / assume.sweep_seconds)
    memory = assume.lambda_memory_mb / 1024
    gb_seconds = memory * (device_invocations * assume.handler_ms + t * (blocks + resends) * assume.publish_ms
                           + assume.api_ms + t * assume.publish_ms + sweeps * assume.handler_ms) / 1000
    bitmaps = math.ceil(blocks / 8) * 2 * 4 // 3  # sent and acknowledged bitmaps, base64
    execution_bytes = assume.execution_item_bytes + bitmaps
    execution_messages = t * (acks + gets + assume.statuses + (statuses - assume.statuses - 1))
    writes = (1 + t  # the job and its executions
              + math.ceil(execution_messages * assume.writes_per_message)
              + t  # the inventory after each execution: the device record
              + 1)  # the sweeper completes the job
    write_units = (_wu(assume.job_item_bytes) + t * _wu(assume.execution_item_bytes)
                   + math.ceil(execution_messages * assume.writes_per_message) * _wu(execution_bytes)
                   + t * _wu(assume.device_item_bytes) + _wu(assume.job_item_bytes))
    per_message = max(up_per_device - 1, 1)  # an execution's messages, spread over the containers
    seen = assume.containers * (1 - (1 - 1 / assume.containers) ** per_message)
    reads_create = 1 + t  # the package, the targets
    reads_messages = math.ceil(t * seen) + assume.containers  # cold cache: executions, then the job once
    reads_inventory = t * assume.inventory_reads
    reads_sweeps = sweeps * (2 * ACTIVE_SHARDS + 2 + t)  # active executions and commands, jobs; each execution
    read_requests = reads_create + reads_messages + reads_inventory + reads_sweeps
    read_units = (1 + t * _ru(assume.device_item_bytes) + math.ceil(t * seen) * _ru(execution_bytes)
                  + assume.containers * _ru(assume.job_item_bytes) + reads_inventory * _ru(execution_bytes)
                  + sweeps * (2 * ACTIVE_SHARDS * 0.5 + math.ceil(t * execution_bytes / 4096) * 0.5 + 1.5
                              + t * _ru(execution_bytes)))
    if not block_mode:
        s3_gets, s3_out = t * math.ceil(spec.package_size / URL_RANGE), t * spec.package_size
    elif spec.package_size <= S3_CACHE_LIMIT:
        s3_gets, s3_out = 2 * assume.containers, 0  # HEAD + GET of the whole object per container
    else:
        s3_gets, s3_out = assume.containers + t * (acks + gets), 0  # one ranged GET per send
    return Counts(
        job_documents=t, blocks=t * blocks, resends=t * resends, acks=t * acks, gets=t * gets,
        statuses=t * statuses, down_messages=t * down_per_device, up_messages=up, iot_units=iot_units,
        rules=up, sqs_requests=up + 2 * device_invocations, invocations=device_invocations + 1 + sweeps,
        gb_seconds=gb_seconds, write_requests=writes, write_units=write_units, read_requests=read_requests,
        read_units=read_units, s3_gets=s3_gets, s3_bytes_out=s3_out,
        connection_minutes=t * math.ceil(seconds / 60), api_requests=assume.api_requests, seconds=seconds,
    )


def _line(service: str, item: str, quantity: float, unit: str, per: float, price: float) -> Line:
    unit_price = price / per
    return Line(service, item, quantity, unit, unit_price, quantity * unit_price)


def price(spec: RolloutSpec, counts: Counts, prices: Prices) -> Estimate:
    """The estimate: one line per metered item, priced from `prices`."""
    m = 1_000_000
    lines = (
        _line("IoT Core", "messages (5 KB units)", counts.iot_units, "message", m, prices.iot_messages_per_million),
        _line("IoT Core", "rules triggered", counts.rules, "rule", m, prices.iot_rules_per_million),
        _line("IoT Core", "rule actions (SQS)", counts.rules, "action", m, prices.iot_actions_per_million),
        _line("IoT Core", "connection minutes", counts.connection_minutes, "minute", m,
              prices.iot_connection_minutes_per_million),
        _line("SQS", "requests", counts.sqs_requests, "request", m, prices.sqs_requests_per_million),
        _line("Lambda", "invocations", counts.invocations, "request", m, prices.lambda_requests_per_million),
        _line("Lambda", "compute", counts.gb_seconds, "GB-s", 1, prices.lambda_gb_second),
        _line("DynamoDB", "write units", counts.write_units, "WRU", m, prices.dynamodb_write_units_per_million),
        _line("DynamoDB", "read units", counts.read_units, "RRU", m, prices.dynamodb_read_units_per_million),
        _line("S3", "GET/HEAD requests", counts.s3_gets, "request", 1000, prices.s3_get_per_thousand),
        _line("S3", "transfer out", counts.s3_bytes_out / 2**30, "GB", 1, prices.s3_transfer_out_per_gb),
        _line("API Gateway", "requests", counts.api_requests, "request", m, prices.api_gateway_requests_per_million),
    )
    return Estimate(spec, counts, lines, prices.name, sum(line.cost for line in lines))


def estimate(spec: RolloutSpec, prices: Prices, assume: Assumptions = Assumptions()) -> Estimate:
    return price(spec, count(spec, assume, prices.iot_message_unit_bytes), prices)


STREAM_BLOCK = 4096  # AWS IoT MQTT-based file delivery: the block size FreeRTOS OTA asks for
STREAM_OVERHEAD = 64  # CBOR data message fields around a block (file id, block id, size, payload)
STREAM_TOPIC = 80  # $aws/things/<thing>/streams/<stream>/data/cbor
JOB_MESSAGES = 7  # notify-next, start-next request + accepted, two UpdateJobExecution + accepted


def iot_jobs_streams(spec: RolloutSpec, prices: Prices) -> Estimate:
    """The same rollout with AWS IoT Jobs + MQTT-based file delivery: one GetStream request per 4 KB block,
    one data message back (QoS 0), seven job messages per device and one remote action (Jobs) per device.
    No Lambda, DynamoDB or SQS of ours; IoT reads the file from S3 (not counted)."""
    unit, t = prices.iot_message_unit_bytes, spec.targets
    blocks = max(1, math.ceil(spec.package_size / STREAM_BLOCK))
    per_block = units(128, unit) + units(STREAM_BLOCK + STREAM_OVERHEAD + STREAM_TOPIC, unit)
    messages = t * (blocks * per_block + JOB_MESSAGES + units(spec.job_document_bytes, unit))
    counts = Counts(blocks=t * blocks, down_messages=t * (blocks + 4), up_messages=t * (blocks + 3),
                    iot_units=messages)
    lines = (
        _line("IoT Core", "messages (5 KB units)", messages, "message", 1_000_000, prices.iot_messages_per_million),
        _line("IoT Device Management", "Jobs remote actions", t, "action", 1, prices.iot_jobs_per_remote_action),
    )
    return Estimate(spec, counts, lines, prices.name, sum(line.cost for line in lines))


def combined(first: Estimate, second: Estimate) -> Estimate:
    """Two rollouts of one job priced together (a delta job's devices and its fallback's): counts and
    lines added, the spec's targets too (its package size stays the first's); the rollout lasts as
    long as the longer. What one job costs once is counted twice: an upper bound by a few requests."""
    counts = Counts(**{f.name: getattr(first.counts, f.name) + getattr(second.counts, f.name)
                       for f in fields(Counts) if f.name != "seconds"},
                    seconds=max(first.counts.seconds, second.counts.seconds))
    lines = tuple(Line(a.service, a.item, a.quantity + b.quantity, a.unit, a.unit_price, a.cost + b.cost)
                  for a, b in zip(first.lines, second.lines, strict=True))
    spec = replace(first.spec, targets=first.spec.targets + second.spec.targets)
    return Estimate(spec, counts, lines, first.prices, first.total + second.total)


def counts_dict(counts: Counts) -> dict[str, float]:
    return {f.name: getattr(counts, f.name) for f in fields(counts)}
