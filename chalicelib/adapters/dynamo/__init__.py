"""DynamoDB repository (single-table design): the key layout lives here and nowhere else.

Items: pk/sk primary key, three sparse indexes (gsi1 lists by collection or by job, gsi2 lists a
device's executions, gsi3 holds only what is active: ACTIVE jobs under one key and QUEUED/IN_PROGRESS
executions spread over ACTIVE_SHARDS keys; a put without gsi3 keys drops the item from it), `ver`
(optimistic concurrency, checked by condition expressions), `doc` (the entity as JSON, see
domain.models.to_record) and, on REJECTED packages and groups of ended jobs only, `expires_at` (DynamoDB
TTL, epoch seconds).
Remote commands and releases follow the same layout: a command (CMD#) listed under gsi1 COMMANDS, its
runs per state counted ADD-only in (CMD#<id>, COUNTS) like a job's, one run per device
(CMDRUN#<command>#<epn>) listed per command (gsi1), per device (gsi2 DEVCMD#) and, while
QUEUED/DELIVERED/RUNNING, in gsi3 ACTIVECMD#<shard>; a release (REL#) under gsi1 RELEASES.
Fleet scale (issue 13): devices are also in gsi2 under MODEL#<model>#<shard> (MODEL_SHARDS partitions,
so a model's listing is a query, not a scan and a filter); an AVAILABLE-or-not package with a verified
sha256 under gsi2 PKGSHA#<sha256>; an ACTIVE continuous model job under gsi2 CONTJOB#<model>. A job's
counters are one item (JOB#<id>, COUNTS) of numbers changed with ADD only (c_<name>); an explicit target
list is chunk items (JOB#<id>, TARGETS#<n>); each delivery group of a job is listed by a marker item
(JOB#<id>, GROUP#<group id>). An execution is created only while its job item is ACTIVE (a transaction
condition). A group whose job ended carries `expires_at` (TTL), and so does its marker. Staged jobs
(domain/waves.py): the eligible targets of a fan-out item as (JOB#<id>, WMEM#<first ordinal, 13 digits>)
holding at most MEMBER_SPAN EPNs, so a wave's members are one key-range query; a late member of a
continuous job (JOB#<id>, WLATE#<epn>); per-wave counters (JOB#<id>, WAVE#<wave, 4 digits>), ADD only,
moved with the job's counters. Listings page with Limit and an opaque cursor made of the last returned
item's key attributes (adapters/paging.py).
Modules: keys.py (this layout and the item codec), store.py (generic requests and counter updates), and one
mixin each for catalog (devices, keys, packages, releases), jobs, executions, commands and groups, joined
by DynamoRepository here (the only public name, with the sizes below).
Does not: business rules; those are in services.
"""

from __future__ import annotations

from .catalog import Catalog
from .commands import Commands
from .executions import Executions
from .groups import Groups
from .jobs import Jobs
from .keys import ACTIVE_SHARDS, MEMBER_SPAN, REJECTED_TTL_SECONDS, TRANSACTION_PUTS

__all__ = ["ACTIVE_SHARDS", "MEMBER_SPAN", "REJECTED_TTL_SECONDS", "TRANSACTION_PUTS", "DynamoRepository"]


class DynamoRepository(Catalog, Jobs, Executions, Commands, Groups):
    """The Repository port (domain/ports.py) on one DynamoDB table: `client` a boto3 DynamoDB client."""
