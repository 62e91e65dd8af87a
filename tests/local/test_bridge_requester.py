"""The bridge names the requester of S3 notifications as S3 does (moto's carry no userIdentity), and
leaves every other body, and a requester S3 already named, as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.bridge import with_requester


def event(*bodies: str) -> dict[str, Any]:
    return {"Records": [{"messageId": str(n), "body": body} for n, body in enumerate(bodies)]}


def moto_body(key: str, identity: dict[str, str] | None = None) -> str:
    record: dict[str, Any] = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": key}}}
    if identity is not None:
        record["userIdentity"] = identity
    return json.dumps({"Records": [record]})


def test_records_without_a_requester_get_the_local_one_and_named_ones_keep_theirs():
    seen: list[dict[str, Any]] = []
    handler = with_requester(lambda e, _c: seen.append(e) or "done", "local:testing")
    answer = handler(event(moto_body("incoming/a"), moto_body("incoming/b", {"principalId": "AWS:AIDAX"})), None)
    assert answer == "done"
    principals = [json.loads(r["body"])["Records"][0]["userIdentity"]["principalId"] for r in seen[0]["Records"]]
    assert principals == ["local:testing", "AWS:AIDAX"]


@pytest.mark.parametrize("body", ["not json", json.dumps({"Event": "s3:TestEvent"}), json.dumps([1, 2])])
def test_other_bodies_pass_unchanged(body):
    seen: list[dict[str, Any]] = []
    with_requester(lambda e, _c: seen.append(e), "local:testing")(event(body), None)
    assert seen[0]["Records"][0]["body"] == body
