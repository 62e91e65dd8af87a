"""Idempotent creation of the AWS resources the control plane needs (moto server locally, tests on moto).

Does: the single DynamoDB table (with its three indexes and its TTL attribute `expires_at`), both
buckets, both queues with their dead-letter queues and redrive policy (maxReceiveCount 3), and the
staging bucket -> staging queue ObjectCreated notifications (`uploads/` and `incoming/`). Calling it
again changes nothing.
Does not: IoT policies or topic rules (infra/template.yaml does that on AWS; the local stack plays
the rule), or anything with credentials.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ..settings import Settings

MAX_RECEIVE_COUNT = 3
TABLE_KEYS = (("pk", "sk"), ("gsi1pk", "gsi1sk"), ("gsi2pk", "gsi2sk"), ("gsi3pk", "gsi3sk"))
INDEXES = ("gsi1", "gsi2", "gsi3")
TTL_ATTRIBUTE = "expires_at"
STAGING_PREFIXES = ("uploads/", "incoming/")  # upload slots; a pipeline's own `aws s3 cp` (services/incoming.py)


def ensure_resources(settings: Settings, session: boto3.session.Session | None = None) -> dict[str, str]:
    """Create whatever is missing; return {"staging_queue_url", "device_queue_url", ...dlq urls}."""
    session = session or boto3.session.Session()
    ensure_table(session.client("dynamodb"), settings.table_name)
    s3 = session.client("s3")
    for bucket in (settings.staging_bucket, settings.repository_bucket):
        ensure_bucket(s3, bucket, session.region_name)
    sqs = session.client("sqs")
    urls = {}
    queues = [(settings.staging_queue, "staging"), (settings.device_queue, "device")]
    if settings.fanout_queue:
        queues.append((settings.fanout_queue, "fanout"))
    for name, key in queues:
        url, dlq_url = ensure_queue_with_dlq(sqs, name)
        urls[f"{key}_queue_url"] = url
        urls[f"{key}_dlq_url"] = dlq_url
    ensure_staging_notification(s3, sqs, settings.staging_bucket, urls["staging_queue_url"])
    return urls


def ensure_table(dynamodb: Any, name: str) -> None:
    try:
        described = dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    else:
        _add_missing_indexes(dynamodb, name, described)
        ensure_ttl(dynamodb, name)
        return
    attributes = [{"AttributeName": a, "AttributeType": "S"} for pair in TABLE_KEYS for a in pair]
    indexes = [
        {
            "IndexName": index,
            "KeySchema": [{"AttributeName": h, "KeyType": "HASH"}, {"AttributeName": r, "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }
        for index, (h, r) in zip(INDEXES, TABLE_KEYS[1:], strict=True)
    ]
    try:
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=attributes,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=indexes,
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ensure_ttl(dynamodb, name)


def ensure_ttl(dynamodb: Any, name: str) -> None:
    """Items carrying TTL_ATTRIBUTE (epoch seconds) expire, as infra/template.yaml's
    TimeToLiveSpecification says on AWS (REJECTED packages, groups of ended jobs: adapters/dynamo/)."""
    ttl = dynamodb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == TTL_ATTRIBUTE:
        return
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True,
                                                                          "AttributeName": TTL_ATTRIBUTE})


def _add_missing_indexes(dynamodb: Any, name: str, described: dict[str, Any]) -> None:
    """A table made by an older version gains the indexes added since (e.g. gsi3, the active work list)."""
    present = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
    for index, (h, r) in zip(INDEXES, TABLE_KEYS[1:], strict=True):
        if index in present:
            continue
        dynamodb.update_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in (h, r)],
            GlobalSecondaryIndexUpdates=[{"Create": {
                "IndexName": index, "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": h, "KeyType": "HASH"}, {"AttributeName": r, "KeyType": "RANGE"}],
            }}],
        )


def ensure_bucket(s3: Any, name: str, region: str | None) -> None:
    try:
        s3.head_bucket(Bucket=name)
        return
    except ClientError:
        pass
    kwargs: dict[str, Any] = {"Bucket": name}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def ensure_queue_with_dlq(sqs: Any, name: str) -> tuple[str, str]:
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
    try:
        url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive,
                                                            "VisibilityTimeout": "60"})["QueueUrl"]
    except ClientError as err:  # exists with other attributes: converge them
        if "QueueAlreadyExists" not in err.response["Error"]["Code"]:
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive})
    return url, dlq_url


def ensure_staging_notification(s3: Any, sqs: Any, bucket: str, queue_url: str) -> None:
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "staging-bucket-notifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
        }],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{
                "Id": f"staging-{prefix.rstrip('/')}",
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            } for prefix in STAGING_PREFIXES]
        },
    )
