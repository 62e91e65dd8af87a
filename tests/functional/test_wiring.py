"""app.py registers every blueprint: routes, the two SQS consumers on the configured queues, the schedule."""

from __future__ import annotations

import app as application
from chalicelib.triggers import device_messages, fanout, schedules, staging


def test_event_sources_are_registered():
    sources = {type(s).__name__: s for s in application.app.event_sources}
    queues = sorted(s.queue for s in application.app.event_sources if type(s).__name__ == "SQSEventConfig")
    assert queues == sorted([staging.QUEUE, device_messages.QUEUE, fanout.QUEUE])
    assert "ScheduledEventConfig" in sources


def test_triggers_are_plain_callables_taking_event_and_context():
    for handler in (staging.on_staging_object, device_messages.on_device_message, fanout.on_fanout, schedules.sweep):
        assert callable(handler)
        assert handler.__call__.__code__.co_varnames[1:3] == ("event", "context")


def test_routes_cover_the_api_contract():
    routes = {(method, path) for path, methods in application.app.routes.items() for method in methods}
    assert len(routes) == 26
    assert ("POST", "/devices/{epn}/register") in routes and ("POST", "/jobs/{job_id}/cancel") in routes
    assert ("POST", "/commands") in routes and ("POST", "/releases") in routes
    assert ("GET", "/commands/{command_id}/runs") in routes  # a command's runs, paged (issue 13)


def test_a_trigger_imported_alone_still_runs_inside_the_middleware():
    """As in Lambda: the handler module is imported first, app.py is not imported by anyone else."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import chalicelib.triggers.device_messages as m, sys; "
            "assert 'app' in sys.modules; assert m.on_device_message.middleware_handlers; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
