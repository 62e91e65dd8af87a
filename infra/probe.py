"""Runs inside the unzipped Lambda bundle, alone: `python -I -S infra/probe.py BUNDLE EVENTS FIXTURES HANDLERS_JSON`.

Does: put only BUNDLE (plus the standard library) on sys.path, as the Lambda runtime would; provision
the stage's resources on the AWS endpoint named by AWS_ENDPOINT_URL (a moto server) with the bundle's
chalicelib.adapters.provision; call each handler named in HANDLERS_JSON (the Handler lines of
out/sam.yaml) with the recorded AWS events in EVENTS, filled in; check what they answer; print one line per check
(`probe-check {json}`) and exit 1 on the first failure.
With a fifth argument `trace` (and Lambda's tracing environment) it checks instead that Powertools'
Tracer sends the handlers' X-Ray subsegments to the daemon address (a UDP socket of its own).
Does not: import anything from the checkout (no project path, no site-packages), or start processes.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib
import json
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREFIX = "probe-check "  # the handlers log JSON to stdout too (Powertools)
TOKEN = "probe-operator-token"  # OTA_OPERATOR_TOKEN_SHA256 is its hash (set by infra/package.py)


class Context:
    """The attributes of Lambda's context object the handlers and Powertools read."""

    function_name = "ota-dev-probe"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:ota-dev-probe"
    memory_limit_in_mb = 1024
    aws_request_id = "probe-request"
    log_group_name = "/aws/lambda/ota-dev-probe"
    log_stream_name = "probe"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def check(name: str, condition: bool, detail: Any) -> None:
    print(PREFIX + json.dumps({"check": name, "ok": bool(condition), "detail": detail}, default=str), flush=True)
    if not condition:
        sys.exit(1)


def handler(spec: str) -> Callable[[dict[str, Any], Any], Any]:
    module, _, name = spec.rpartition(".")
    return getattr(importlib.import_module(module), name)


class Probe:
    def __init__(self, events: Path, fixtures: Path, handlers: dict[str, str]) -> None:
        self.events, self.fixtures, self.handlers = events, fixtures, handlers

    def event(self, name: str) -> dict[str, Any]:
        return json.loads((self.events / name).read_text())

    def api(self, method: str, resource: str, path: str, body: Any = None,
            params: dict[str, str] | None = None) -> tuple[int, Any]:
        """One API Gateway proxy event through the API handler (app.app); returns (status, JSON body)."""
        event = copy.deepcopy(self.event("apigateway-proxy.json"))
        event.update(resource=resource, path=path, httpMethod=method, pathParameters=params,
                     body=None if body is None else json.dumps(body))
        event["requestContext"].update(resourcePath=resource, httpMethod=method, path=f"/api{path}")
        answer = handler(self.handlers["api"])(event, Context())
        return answer["statusCode"], json.loads(answer["body"] or "null")

    def authorizer(self) -> None:
        call = handler(self.handlers["authorizer"])
        event = self.event("apigateway-token-authorizer.json")
        allowed = call({**event, "authorizationToken": f"Bearer {TOKEN}"}, Context())
        denied = call(event, Context())
        effect = [s["Effect"] for s in allowed["policyDocument"]["Statement"]]
        check("authorizer allows the operator token", effect == ["Allow"], allowed["policyDocument"])
        check("authorizer denies another token", all(s["Effect"] == "Deny" or not s.get("Resource")
                                                      for s in denied["policyDocument"]["Statement"]),
              denied["policyDocument"])

    def publish_package(self) -> str:
        """Register the fixtures' publisher key, upload a signed package, let the staging handler scan it."""
        status, key = self.api("POST", "/keys", "/keys", {"public_key": (self.fixtures / "publisher.pub").read_text(),
                                                          "name": "probe"})
        check("API registers a publisher key", status == 201 and key.get("key_id"), key)
        data = (self.fixtures / "good-full-1.0.0.otapkg").read_bytes()
        status, slot = self.api("POST", "/packages", "/packages", {"size": len(data)})
        check("API opens an upload slot", status == 201 and slot.get("url"), {"status": status})
        request = urllib.request.Request(slot["url"], data=data, method="PUT",
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            etag = reply.headers.get("ETag", "").strip('"')
        check("the presigned URL takes the upload", bool(etag), etag)
        event = self.event("sqs-s3-notification.json")
        notification = json.loads(event["Records"][0]["body"])
        s3 = notification["Records"][0]["s3"]
        bucket = self.environ("OTA_STAGING_BUCKET")
        s3["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
        s3["object"].update(key=f"uploads/{slot['upload_id']}", size=len(data), eTag=etag)
        event["Records"][0]["body"] = json.dumps(notification)
        result = handler(self.handlers["staging"])(event, Context())
        check("staging handler scans the upload: AVAILABLE", result.get("scanned") ==
              [{"upload_id": slot["upload_id"], "state": "AVAILABLE"}], result)
        status, package = self.api("GET", "/packages/{upload_id}", f"/packages/{slot['upload_id']}",
                                   params={"upload_id": slot["upload_id"]})
        check("API shows the package AVAILABLE", status == 200 and package["state"] == "AVAILABLE",
              {k: package.get(k) for k in ("state", "reasons")})
        return str(slot["upload_id"])

    def incoming_package(self, upload_id: str) -> None:
        """A pipeline's `aws s3 cp` of the same bytes into incoming/: the recorded notification (its
        uploader, a multipart eTag) answers the package that already holds them."""
        import boto3

        data = (self.fixtures / "good-full-1.0.0.otapkg").read_bytes()
        bucket, key = self.environ("OTA_STAGING_BUCKET"), "incoming/probe-1.0.0.otapkg"
        etag = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
        event = self.event("sqs-s3-incoming.json")
        notification = json.loads(event["Records"][0]["body"])
        s3 = notification["Records"][0]["s3"]
        s3["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
        s3["object"].update(key=key, size=len(data), eTag=etag)
        event["Records"][0]["body"] = json.dumps(notification)
        result = handler(self.handlers["staging"])(event, Context())
        check("staging handler takes an incoming/ upload: the same bytes are the same package",
              result.get("scanned") == [{"upload_id": upload_id, "state": "AVAILABLE"}], result)

    def register_device(self, epn: str) -> None:
        """Pre-authorise a device and register it with a CSR: IoT signs, the answer carries the bundled CA."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        status, device = self.api("POST", "/devices", "/devices", {"epn": epn, "model": "m1"})
        check("API pre-authorises a device", status == 201 and device.get("registration_token"), {"status": status})
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, epn)])).sign(key, hashes.SHA256()))
        body = {"token": device["registration_token"], "agent_version": "1.0.0", "apps": {},
                "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}
        status, answer = self.api("POST", "/devices/{epn}/register", f"/devices/{epn}/register", body, {"epn": epn})
        bundled_ca = (Path(sys.path[0]) / "AmazonRootCA1.pem").read_text()
        check("registration answers a certificate and the bundled Amazon root CA",
              status == 200 and "BEGIN CERTIFICATE" in answer.get("certificate", "") and answer.get("ca") == bundled_ca,
              {"status": status, "ca_is_bundled": answer.get("ca") == bundled_ca})

    def device_status(self, epn: str) -> None:
        event = self.event("sqs-iot-rule.json")
        body = json.loads(event["Records"][0]["body"])
        body.update(topic=f"ota/{epn}/status", received_at=int(time.time() * 1000))
        event["Records"][0]["body"] = json.dumps(body)
        inventory = json.loads(base64.b64decode(body["payload_b64"]))
        result = handler(self.handlers["device"])(event, Context())
        check("device-message handler applies the inventory", result.get("applied") == 1 and
              result.get("batchItemFailures") == [] and result.get("malformed") == 0, result)
        status, device = self.api("GET", "/devices/{epn}", f"/devices/{epn}", params={"epn": epn})
        check("API shows the reported apps", status == 200 and device.get("apps") == inventory["apps"],
              {"apps": device.get("apps")})

    def sweep(self) -> None:
        result = handler(self.handlers["sweep"])(self.event("eventbridge-scheduled.json"), Context())
        keys = {"timed_out", "resent_blocks", "completed_jobs", "retried", "aborted_jobs"}
        check("sweep answers the scheduled event", keys <= set(result) and
              all(isinstance(result[k], int) for k in keys), result)

    @staticmethod
    def environ(name: str) -> str:
        import os

        return os.environ[name]


def traced(probe: Probe, daemon: Any) -> None:
    """With Lambda's tracing environment (set by infra/package.py), one API request and one SQS batch
    send X-Ray subsegments to the daemon address: the middleware's, with the AWS calls inside."""
    probe.api("GET", "/keys", "/keys")
    handler(probe.handlers["device"])(probe.event("sqs-iot-rule.json"), Context())
    documents = []
    daemon.settimeout(2.0)
    try:
        while True:
            _header, _, body = daemon.recv(65536).decode().partition("\n")
            documents.append(json.loads(body))
    except TimeoutError:
        pass
    names = sorted(str(d.get("name")) for d in documents)
    http = [d for d in documents if str(d.get("name")).endswith("observe_http")]
    check("X-Ray: the HTTP middleware's subsegment, with the request's DynamoDB calls inside it",
          len(http) == 1 and any(d.get("name") == "dynamodb" and d.get("parent_id") == http[0].get("id")
                                 for d in documents), names)
    check("X-Ray: the SQS middleware's subsegment", any(n.endswith("observe_sqs") for n in names), names)


def main(argv: list[str]) -> int:
    bundle, events, fixtures, handlers_json, *mode = argv
    sys.path.insert(0, bundle)
    sys.path[:] = [p for p in sys.path if "site-packages" not in p and "dist-packages" not in p]
    if mode == ["trace"]:
        import os
        import socket

        daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        daemon.bind(("127.0.0.1", 0))
        os.environ["AWS_XRAY_DAEMON_ADDRESS"] = f"127.0.0.1:{daemon.getsockname()[1]}"
        import app  # Tracer patches botocore when it is created

        traced(Probe(Path(events), Path(fixtures), json.loads(handlers_json)), daemon)
        return 0
    import boto3

    check("boto3 and the app come from the bundle", Path(boto3.__file__).is_relative_to(bundle), boto3.__file__)
    from chalicelib.adapters.provision import ensure_resources
    from chalicelib.settings import Settings

    ensure_resources(Settings.from_env())
    probe = Probe(Path(events), Path(fixtures), json.loads(handlers_json))
    import app

    check("app imports from the bundle", Path(app.__file__).is_relative_to(bundle), app.__file__)
    check("the operator token hash is the probe's", hashlib.sha256(TOKEN.encode()).hexdigest() ==
          Probe.environ("OTA_OPERATOR_TOKEN_SHA256"), "OTA_OPERATOR_TOKEN_SHA256")
    probe.authorizer()
    probe.incoming_package(probe.publish_package())
    probe.register_device("probe-device-1")
    probe.device_status("probe-device-1")
    probe.sweep()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
