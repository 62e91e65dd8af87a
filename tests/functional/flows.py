"""Multi-step helpers for functional tests: register a device, publish a package through staging,
deliver SQS messages from the moto queues to the real trigger handlers."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.device_messages import on_device_message
from chalicelib.triggers.staging import on_staging_object

from .fakes import device_event, make_csr, make_package, public_pem, sqs_record


def register_device(api: Any, epn: str, model: str = "model-a", apps: dict[str, str] | None = None) -> dict[str, Any]:
    made = api.call("POST", "/devices", {"epn": epn, "model": model})
    assert made.status_code == 201, made.json
    answer = api.call("POST", f"/devices/{epn}/register", {
        "token": made.json["registration_token"], "csr": make_csr(epn), "agent_version": "1.0.0",
        "apps": apps or {},
    }, token=None)
    assert answer.status_code == 200, answer.json
    return answer.json


def trust(api: Any, key: ec.EllipticCurvePrivateKey) -> str:
    answer = api.call("POST", "/keys", {"public_key": public_pem(key), "name": "publisher"})
    assert answer.status_code in (200, 201), answer.json
    return answer.json["key_id"]


def drain_staging(world: Any) -> list[dict[str, Any]]:
    """Deliver every message waiting on the staging queue to the staging handler, as Lambda would."""
    sqs = world.session.client("sqs")
    results = []
    while True:
        got = sqs.receive_message(QueueUrl=world.queues["staging_queue_url"], MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        if not messages:
            return results
        results.append(on_staging_object({"Records": [sqs_record(m["Body"]) for m in messages]}, None))
        for m in messages:
            sqs.delete_message(QueueUrl=world.queues["staging_queue_url"], ReceiptHandle=m["ReceiptHandle"])


def upload(api: Any, world: Any, data: bytes) -> str:
    slot = api.call("POST", "/packages", {"size": len(data)})
    assert slot.status_code == 201, slot.json
    upload_id = slot.json["upload_id"]
    world.session.client("s3").put_object(Bucket=world.settings.staging_bucket, Key=f"uploads/{upload_id}", Body=data)
    drain_staging(world)
    return upload_id


def publish(api: Any, world: Any, key: ec.EllipticCurvePrivateKey, **package: Any) -> str:
    trust(api, key)
    upload_id = upload(api, world, make_package(key, **package))
    shown = api.call("GET", f"/packages/{upload_id}")
    assert shown.json["state"] == "AVAILABLE", shown.json
    return upload_id


def send(*items: tuple[str, str, bytes], received_ms: int | None = None) -> dict[str, Any]:
    return on_device_message(device_event(items, received_ms), None)
