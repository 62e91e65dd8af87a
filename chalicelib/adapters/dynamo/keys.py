"""The table's key layout (package docstring): each entity's primary key root, its index keys, and the
record <-> item codec. Private to this package. Does not: talk to DynamoDB."""

from __future__ import annotations

import json
import zlib
from typing import Any

from ...domain.commands import ACTIVE as COMMAND_ACTIVE
from ...domain.executions import ACTIVE
from ...domain.models import (
    CommandRun,
    Device,
    E,
    Execution,
    Group,
    Job,
    Package,
    PublisherKey,
    Release,
    RemoteCommand,
    from_record,
)
from ..paging import model_shard

MEMBER_SPAN = 100  # EPNs per wave-member item (a fan-out item's page or chunk; longer lists are split)
# executions per create_executions transaction: DynamoDB takes 100 items at most, and the rest are the job's
# counters, the job's ACTIVE check and the counters of at most two waves
TRANSACTION_PUTS = 96
ACTIVE_SHARDS = 8  # spreads the writes of many live executions over several index partitions
# TTL (the table's TimeToLiveSpecification on `expires_at`, infra/template.yaml): a REJECTED package's
# record goes 90 days after its upload, with its quarantined object (the staging bucket's lifecycle rule).
REJECTED_TTL_SECONDS = 90 * 24 * 3600
ROOT = {Device: "DEV", PublisherKey: "KEY", Package: "PKG", Job: "JOB", Execution: "EXEC", RemoteCommand: "CMD",
        CommandRun: "CMDRUN", Release: "REL", Group: "GROUP"}


def entity_id(entity: Any) -> str:
    if isinstance(entity, Device):
        return entity.epn
    if isinstance(entity, PublisherKey):
        return entity.key_id
    if isinstance(entity, Package):
        return entity.upload_id
    if isinstance(entity, Job):
        return entity.job_id
    if isinstance(entity, RemoteCommand):
        return entity.command_id
    if isinstance(entity, CommandRun):
        return f"{entity.command_id}#{entity.epn}"
    if isinstance(entity, Release):
        return entity.release_id
    if isinstance(entity, Group):
        return entity.group_id
    return entity.execution_id


def indexes(entity: Any) -> dict[str, str]:
    if isinstance(entity, Group):
        return {}  # read by key only (services/groups.py)
    if isinstance(entity, Device):
        return {"gsi1pk": "DEVICES", "gsi1sk": entity.epn,
                "gsi2pk": f"MODEL#{entity.model}#{model_shard(entity.epn)}", "gsi2sk": entity.epn}
    if isinstance(entity, PublisherKey):
        return {"gsi1pk": "KEYS", "gsi1sk": entity.key_id}
    if isinstance(entity, Package):
        keys = {"gsi1pk": "PACKAGES", "gsi1sk": f"{entity.created_at:020.6f}#{entity.upload_id}"}
        if entity.sha256:
            keys.update(gsi2pk=f"PKGSHA#{entity.sha256}", gsi2sk=entity.upload_id)
        return keys
    if isinstance(entity, Job):
        keys = {"gsi1pk": "JOBS", "gsi1sk": f"{entity.created_at:020.6f}#{entity.job_id}"}
        if entity.state == "ACTIVE":
            keys.update(gsi3pk="ACTIVEJOB", gsi3sk=entity.job_id)
            if entity.continuous and "model" in entity.target_spec:
                keys.update(gsi2pk=f"CONTJOB#{entity.target_spec['model']}", gsi2sk=entity.job_id)
        return keys
    if isinstance(entity, Release):
        return {"gsi1pk": "RELEASES", "gsi1sk": f"{entity.created_at:020.6f}#{entity.release_id}"}
    if isinstance(entity, RemoteCommand):
        return {"gsi1pk": "COMMANDS", "gsi1sk": f"{entity.created_at:020.6f}#{entity.command_id}"}
    if isinstance(entity, CommandRun):
        keys = {"gsi1pk": f"CMDRUNS#{entity.command_id}", "gsi1sk": entity.epn,
                "gsi2pk": f"DEVCMD#{entity.epn}", "gsi2sk": f"{entity.created_at:020.6f}#{entity.command_id}"}
        if entity.state in COMMAND_ACTIVE:
            shard = zlib.crc32(entity.command_id.encode() + entity.epn.encode()) % ACTIVE_SHARDS
            keys.update(gsi3pk=f"ACTIVECMD#{shard}", gsi3sk=f"{entity.command_id}#{entity.epn}")
        return keys
    keys = {
        "gsi1pk": f"JOBEXEC#{entity.job_id}", "gsi1sk": entity.epn,
        "gsi2pk": f"DEVEXEC#{entity.epn}", "gsi2sk": f"{entity.created_at:020.6f}#{entity.execution_id}",
    }
    if entity.state in ACTIVE:
        shard = zlib.crc32(entity.execution_id.encode()) % ACTIVE_SHARDS
        keys.update(gsi3pk=f"ACTIVEEXEC#{shard}", gsi3sk=entity.execution_id)
    return keys


def load(cls: type[E], item: dict[str, Any]) -> E:
    record = json.loads(item["doc"]["S"])
    record["version"] = int(item["ver"]["N"])
    return from_record(cls, record)
