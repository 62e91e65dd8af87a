"""The bridge: a real process (`python -m local.bridge`) playing what AWS wires around the Lambdas.

- the S3 -> SQS -> scan Lambda path: a pump on the staging queue calls the staging handler (moto sends
  the notifications, for `uploads/` and `incoming/`; the bridge adds the `userIdentity` moto leaves out,
  `local:<access key id>`, as S3 names the requester, see with_requester);
- the IoT topic rule: device topics are forwarded to the device-message queue (local.forwarder);
- the device-message Lambda: a pump on the device queue calls the device-message handler;
- the EventBridge schedule: the sweep handler every `--sweep-every` seconds;
- certificate revocation: when crl.pem in OTA_LOCAL_CA_DIR changes, the mosquitto running now with the
  config in `--broker-dir` gets SIGHUP and reloads it (its PID is read from its pid file at each change,
  so a restarted broker is the one signalled); likewise when the device roles file (device-models.json,
  {epn: model}) changes, the broker's ACL is rewritten with each device's group-topic entry and reloaded.
Each runs in its own thread; SIGTERM/SIGINT stop them all. Handlers are named "module:attribute" and
imported lazily, so the same bridge can run with the real chalicelib handlers or with none
(`--forward-only`). local.stack runs the topic rule as a process of its own (`--forward-only`, named
"rule") and the rest here with `--no-forward`: on AWS the rules engine stamps `received_at` when IoT Core
receives a message, and a forwarder sharing a busy interpreter with the handlers would stamp it late
(seconds, at 1,000 devices), which the protocol's clock rules (docs/protocol.md section 7) must not see.
Configuration comes from the same environment as the API (see local.stack).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local import mosquitto
from local.forwarder import Forwarder, MqttEndpoint
from local.sqspump import Handler, LambdaContext, SqsPump

STAGING_HANDLER = "chalicelib.triggers.staging:on_staging_object"
DEVICE_HANDLER = "chalicelib.triggers.device_messages:on_device_message"
FANOUT_HANDLER = "chalicelib.triggers.fanout:on_fanout"
SWEEP_HANDLER = "chalicelib.triggers.schedules:sweep"
log = logging.getLogger("local.bridge")


def load_handler(spec: str) -> Handler:
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"handler {spec!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module_name), attribute)


def with_requester(handler: Handler, principal: str) -> Handler:
    """The staging handler, fed S3 notifications that name their requester as S3's do
    (`userIdentity.principalId`): moto's carry none, so records without one get `principal`."""

    def fill(event: dict[str, Any], context: Any) -> Any:
        for message in event.get("Records", []):
            try:
                notification = json.loads(message.get("body", ""))
            except ValueError:
                continue
            records = notification.get("Records") if isinstance(notification, dict) else None
            if not isinstance(records, list):
                continue
            for record in records:
                if isinstance(record, dict) and "userIdentity" not in record:
                    record["userIdentity"] = {"principalId": principal}
            message["body"] = json.dumps(notification)
        return handler(event, context)

    return fill


def scheduled_event(region: str, rule: str = "ota-sweep") -> dict[str, Any]:
    """The event EventBridge gives a scheduled Lambda."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
        "resources": [f"arn:aws:events:{region}:123456789012:rule/{rule}"], "detail": {},
    }


class Scheduler:
    """Calls one handler every `every` seconds until stopped; an exception is logged and the next tick comes."""

    def __init__(self, handler: Handler, every: float, region: str) -> None:
        self._handler, self._every, self._region = handler, every, region
        self._stop = threading.Event()
        self.runs = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._handler(scheduled_event(self._region), LambdaContext("sweep", region=self._region))
                self.runs += 1
            except Exception:
                log.exception("sweep failed")


class CrlWatcher:
    """SIGHUP the broker when the CRL file changes, so a revoked certificate cannot reconnect.

    The broker is whichever mosquitto runs now with the config in `broker_dir` (local.mosquitto.reload
    reads its pid file each time): never the PID it had when the bridge started, which a restart replaces.
    """

    def __init__(self, crl: Path, broker_dir: Path, every: float = 1.0,
                 reload: Callable[[Path], int | None] = mosquitto.reload, what: str = "CRL") -> None:
        self._what = what
        self._crl, self._broker_dir, self._every, self._reload = crl, broker_dir, every, reload
        self._stop = threading.Event()
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self._crl.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> int | None:
        """One look at the CRL: if it changed, SIGHUP the current broker; the PID signalled, or None."""
        stamp = self._stamp()
        if stamp == self._seen or stamp is None:
            return None
        self._seen = stamp
        pid = self._reload(self._broker_dir)
        if pid is None:  # none runs now: the next one reads the CRL as it starts
            log.warning("%s changed but no broker runs with %s", self._what, self._broker_dir)
            return None
        log.info("%s changed: broker (pid %d) asked to reload it", self._what, pid)
        return pid

    def run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.check()
            except Exception:
                log.exception("CRL reload failed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m local.bridge", description=__doc__.splitlines()[0])
    p.add_argument("--staging-handler", default=STAGING_HANDLER)
    p.add_argument("--device-handler", default=DEVICE_HANDLER)
    p.add_argument("--fanout-handler", default=FANOUT_HANDLER)
    p.add_argument("--sweep-handler", default=SWEEP_HANDLER)
    p.add_argument("--app-module", default="app", help="module of the Chalice app to import first ('' for none)")
    p.add_argument("--sweep-every", type=float, default=5.0, help="seconds between sweeps (default 5)")
    p.add_argument("--device-workers", type=int, default=1,
                   help="concurrent pollers of the device queue (default 1)")
    p.add_argument("--retry-delay", type=int, default=5, help="seconds before a failed message is retried")
    p.add_argument("--forward-only", action="store_true", help="only forward MQTT to SQS; call no handler")
    p.add_argument("--no-forward", action="store_true",
                   help="run the handlers only: another process (--forward-only) is the topic rule")
    p.add_argument("--mqtt-cert", default=env.get("OTA_BRIDGE_MQTT_CERT") or env.get("OTA_MQTT_CLIENT_CERT"))
    p.add_argument("--mqtt-key", default=env.get("OTA_BRIDGE_MQTT_KEY") or env.get("OTA_MQTT_CLIENT_KEY"))
    p.add_argument("--mqtt-ca", default=env.get("OTA_MQTT_CA"))
    p.add_argument("--broker-dir", type=Path, default=None,
                   help="mosquitto's directory (config and pid file), to make the running broker reload the CRL")
    p.add_argument("--ready-file", type=Path, default=None, help="written once everything is running")
    return p.parse_args(argv)


def _need(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"error: environment variable {name} is missing")
    return value


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    import boto3  # the bridge is an adapter of the local stack: boto3 only here

    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    sqs = boto3.session.Session().client("sqs", region_name=region)
    for name, value in (("--mqtt-cert", args.mqtt_cert), ("--mqtt-key", args.mqtt_key), ("--mqtt-ca", args.mqtt_ca)):
        if not value:
            raise SystemExit(f"error: {name} is missing (or OTA_MQTT_CLIENT_CERT/KEY/CA in the environment)")
    endpoint = MqttEndpoint(_need("OTA_MQTT_HOST"), int(_need("OTA_MQTT_PORT")), args.mqtt_ca, args.mqtt_cert,
                            args.mqtt_key)
    device_queue = _need("OTA_DEVICE_QUEUE")
    workers: list[Any] = []
    if args.forward_only and args.no_forward:
        raise SystemExit("error: --forward-only and --no-forward exclude each other")
    forwarder = None if args.no_forward else Forwarder(sqs, device_queue, endpoint, client_id=f"ota-rule-{os.getpid()}")
    if forwarder is not None:
        forwarder.start()
    if not args.forward_only:
        if args.app_module:  # registers the blueprints, so handlers run through the app's middleware as in Lambda
            importlib.import_module(args.app_module)
        # one client per thread: boto3 clients are thread-safe, but separate ones keep pools apart
        workers.append(SqsPump(boto3.session.Session().client("sqs", region_name=region),
                               _need("OTA_STAGING_QUEUE"),
                               with_requester(load_handler(args.staging_handler),
                                              f"local:{os.environ.get('AWS_ACCESS_KEY_ID', 'unknown')}"),
                               function_name="on_staging_object", retry_delay=args.retry_delay, region=region))
        device_handler = load_handler(args.device_handler)
        for _ in range(args.device_workers):  # like Lambda's concurrent pollers on one queue
            workers.append(SqsPump(boto3.session.Session().client("sqs", region_name=region), device_queue,
                                   device_handler, function_name="on_device_message",
                                   retry_delay=args.retry_delay, region=region))
        if os.environ.get("OTA_FANOUT_QUEUE"):  # job fan-out work items (chalicelib/triggers/fanout.py)
            workers.append(SqsPump(boto3.session.Session().client("sqs", region_name=region),
                                   os.environ["OTA_FANOUT_QUEUE"], load_handler(args.fanout_handler),
                                   function_name="on_fanout", retry_delay=args.retry_delay, region=region))
        workers.append(Scheduler(load_handler(args.sweep_handler), args.sweep_every, region))
    ca_dir = os.environ.get("OTA_LOCAL_CA_DIR")
    if args.broker_dir and ca_dir:
        workers.append(CrlWatcher(Path(ca_dir) / "crl.pem", args.broker_dir))
        roles = Path(ca_dir) / mosquitto.ROLES_FILE  # group-topic ACL entries (docs/protocol.md 15.5)
        workers.append(CrlWatcher(roles, args.broker_dir, what="device roles",
                                  reload=lambda broker: mosquitto.refresh_acl(broker, roles)))
    threads = [threading.Thread(target=w.run, name=type(w).__name__, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    if args.ready_file:
        args.ready_file.write_text(str(os.getpid()))
    log.info("bridge running: %d worker(s), forwarding device topics to %s", len(workers), device_queue)
    last = ""
    while not stop.wait(30.0):
        line = "; ".join([w.stats() for w in workers if isinstance(w, SqsPump)]
                         + ([f"forwarded {forwarder.forwarded}"] if forwarder is not None else []))
        if line != last:
            log.info("stats: %s", line)
            last = line
    for worker in workers:
        worker.stop()
    if forwarder is not None:
        forwarder.stop()
    for thread in threads:
        thread.join(timeout=15)
    log.info("bridge stopped: forwarded %d, dropped %d; %s", forwarder.forwarded if forwarder else 0,
             forwarder.dropped if forwarder else 0, "; ".join(w.stats() for w in workers if isinstance(w, SqsPump)))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    try:
        return run(args, stop)
    except SystemExit:
        raise
    except Exception as err:
        log.exception("bridge failed after %.1fs", time.monotonic() - started)
        print(f"error: bridge failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
