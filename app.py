"""The Chalice app: powertools middleware (structured logs with correlation ids, metrics, tracing) and
the blueprints. Nothing else lives here: routes are in chalicelib/api, triggers in chalicelib/triggers.

Tracing: every function has X-Ray active tracing (.chalice/config.json "xray"); Powertools' Tracer patches
boto3 and each middleware below runs the handler inside its own subsegment (`## observe_http`, ...)
annotated with the handler kind, so the DynamoDB, S3, SQS and IoT calls of a request, a
batch or a sweep hang under it. The token authorizer has no middleware and is traced by Lambda alone.
Tracing switches itself off outside Lambda (and with POWERTOOLS_TRACE_DISABLED=true).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from chalice import Chalice

from chalicelib import observability
from chalicelib.api import auth, commands, devices, jobs, keys, packages, releases
from chalicelib.api.cors import console_cors
from chalicelib.api.errors import in_house_shape
from chalicelib.triggers import device_messages, fanout, schedules, staging

app = Chalice(app_name="ota-control-plane")
logger = Logger(service="ota")
tracer = Tracer(service="ota")  # patches boto3/botocore in Lambda; disabled locally
logging.getLogger("chalicelib")  # register the package logger so it gets the structured JSON handler
copy_config_to_registered_loggers(source_logger=logger, include={"chalicelib"})

app.api.cors = console_cors() or False  # the web console on another origin (OTA_CONSOLE_ORIGIN); before the routes
for blueprint in (auth.bp, devices.bp, keys.bp, packages.bp, jobs.bp, commands.bp, releases.bp, staging.bp,
                  device_messages.bp, fanout.bp, schedules.bp):
    app.register_blueprint(blueprint)


def _count(name: str, value: int) -> None:
    observability.count(name, value)
    observability.flush()  # with what the triggers added during the event


@app.middleware("http")
@tracer.capture_method(capture_response=False)
def observe_http(event: Any, get_response: Any) -> Any:
    tracer.put_annotation(key="Handler", value="http")
    headers = event.headers or {}
    context = (event.context or {}) if isinstance(event.context, dict) else {}
    logger.set_correlation_id(headers.get("x-correlation-id") or context.get("requestId") or uuid.uuid4().hex)
    response = in_house_shape(get_response(event))
    logger.info("request", extra={"method": event.method, "path": event.path, "status": response.status_code})
    response.headers.setdefault("x-correlation-id", logger.get_correlation_id() or "")
    _count("HttpRequests", 1)
    return response


@app.middleware("sqs")
@tracer.capture_method(capture_response=False)
def observe_sqs(event: Any, get_response: Any) -> Any:
    tracer.put_annotation(key="Handler", value="sqs")
    records = event.to_dict().get("Records") or [{}]
    logger.set_correlation_id(records[0].get("messageId") or uuid.uuid4().hex)
    result = get_response(event)
    logger.info("sqs batch", extra={"records": len(records), "result": result})
    _count("SqsRecords", len(records))
    return result


@app.middleware("scheduled")
@tracer.capture_method(capture_response=False)
def observe_schedule(event: Any, get_response: Any) -> Any:
    tracer.put_annotation(key="Handler", value="scheduled")
    logger.set_correlation_id(event.to_dict().get("id") or uuid.uuid4().hex)
    result = get_response(event)
    logger.info("sweep", extra={"result": result})
    _count("Sweeps", 1)
    return result
