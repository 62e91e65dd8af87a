"""`ota jobs watch JOB`: live progress per device until every execution is terminal.

On a terminal the bars are redrawn in place (cursor up + clear line); otherwise a line is printed
for each device whose state, step or percent changed; with --json one JSON object per change.
Exit 0 only if every execution SUCCEEDED.
"""

from __future__ import annotations

import json
from typing import Any

from cli import render
from cli.client import ApiClient, CliError
from cli.commands import Output, seg


def _key(execution: dict[str, Any]) -> tuple[Any, ...]:
    return (execution.get("state"), execution.get("step"), round(render.percent_of(execution), 1))


def watch(api: ApiClient, out: Output, job_id: str, interval: float, timeout: float | None) -> int:
    deadline = None if timeout is None else out.clock() + timeout
    seen: dict[str, tuple[Any, ...]] = {}
    drawn = 0
    executions: list[dict[str, Any]] = []
    job = api.get(f"/jobs/{seg(job_id)}")
    started = out.clock()
    first = (started, int(job.get("bytes_done") or 0))
    if not out.json:
        out.stream.write(f"job {job_id}: {job.get('app', '?')} {job.get('version', '?')} "
                         f"(package {job.get('package_id', '?')}), mode {job.get('mode', '?')}\n")
    while True:
        executions = sorted(api.get_all(f"/jobs/{seg(job_id)}/executions", "executions")["executions"],
                            key=lambda e: str(e.get("epn")))
        job = api.get(f"/jobs/{seg(job_id)}")
        status = render.rate_line(out.clock() - started, first, (out.clock(), int(job.get("bytes_done") or 0)),
                                  int(job.get("bytes_total") or 0))
        width = max([16, *(len(str(e.get("epn", ""))) for e in executions)])
        if out.json:
            for e in executions:
                if seen.get(str(e.get("epn"))) != _key(e):
                    seen[str(e.get("epn"))] = _key(e)
                    out.stream.write(json.dumps({"job_id": job_id, "execution": e}, sort_keys=True) + "\n")
        elif out.tty:
            lines = [render.progress_line(e, width) for e in executions] or ["(no executions yet)"]
            lines.append(status)
            if drawn:
                out.stream.write(f"\x1b[{drawn}F")
            out.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
            drawn = len(lines)
        else:
            for e in executions:
                if seen.get(str(e.get("epn"))) != _key(e):
                    seen[str(e.get("epn"))] = _key(e)
                    out.stream.write(render.progress_line(e, width) + "\n")
        out.stream.flush()
        fanned_out = job.get("fanout_done", True)  # the job's executions are still being created while False
        if (fanned_out and render.all_terminal(executions)) or (not executions and job_finished(api, job_id)):
            break
        if deadline is not None and out.clock() > deadline:
            raise CliError(f"job {job_id} not finished after {timeout:.0f}s "
                           f"({render.watch_summary(executions) or 'no executions'})")
        out.sleep(interval)
    sent = [e for e in executions if e.get("state") != "SKIPPED"]  # SKIPPED: never sent, not a failure
    ok = bool(sent) and all(e.get("state") == "SUCCEEDED" for e in sent)
    if not out.json:
        out.stream.write(f"job {job_id}: {render.watch_summary(executions) or 'no executions'}; "
                         f"{render.duration(out.clock() - started)} elapsed\n")
        out.stream.flush()
    return 0 if ok else 1


def job_finished(api: ApiClient, job_id: str) -> bool:
    """A job without executions is finished when the API no longer calls it active."""
    state = str(api.get(f"/jobs/{seg(job_id)}").get("state", ""))
    return state not in ("", "QUEUED", "IN_PROGRESS", "CREATED", "SCHEDULED", "PENDING", "ACTIVE")
