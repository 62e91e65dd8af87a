"""`python -m local.demo` (make demo): the whole service on one machine, end to end, with real processes.

The scenario (`run_scenario`, also run by tests/e2e): a publisher key and signed packages 1.0.0 and
1.1.0 plus a delta 1.0.0 -> 1.1.0 made with ota-pack; the key registered and the packages uploaded
with `ota` (scan verdicts shown); one agent process per device (each registers with its one-time
token and gets its own certificate), N of one model and M of another; a delta job refused while the
devices lack its base; 1.0.0 to the first model by one job in block mode, then the delta, with live
progress; an unsigned package REJECTED at the scan; a downgrade job refused with a 4xx; the other
model untouched; then a signed run-script command to every device of the first model with each
device's output, and a release of 1.2.0 published for the model's `stable` channel that every device
installs by itself (a delta from 1.1.0); and an MCU device of its own model (mcu/'s host build, a
libmosquitto device provisioned as a factory would) that takes a signed MCUboot image by a block-mode
job, swaps, reboots, confirms and reports SUCCEEDED. `observe` collects what happened, `judge` turns it into the
checklist (in one place); main prints it and exits 0 only if every item holds. Every process is
stopped by PID at the end, also on errors and Ctrl-C/SIGTERM, unless --keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from local import mcudevice, procs, stack
from local.outcomes import APP, MCU_APP, MCU_MODEL, MODEL, OTHER_MODEL, V1, V2, V3, Facts, Outcomes, judge
from local.scenario import Agent, ScenarioError, Session, strip_signatures

# every agent updates `demo` automatically on channel stable, and runs signed scripts and log requests
AGENT_EXTRAS = ('[apps]\nmanaged = ["demo", "ota-agent"]\n[auto]\nchannel = "stable"\ncheck_interval = 30\n'
                'opt_out = ["ota-agent"]\n[commands]\nallow = ["run-script", "collect-logs"]\n'
                '[self_update]\napp = "ota-agent"\ntrial_seconds = 60\n')
NEW_AGENT = '#!/bin/sh\nexec "$OTA_PYTHON" -m agent "$@"\n'  # the new agent's entry point (same code here)
AGENT_APP, AGENT_V = "ota-agent", "1.1.0"
CHECK_SCRIPT = 'echo "$OTA_EPN runs demo $(readlink "$OTA_DATA_DIR/../root/demo/current")"; uptime\n'


@dataclass(frozen=True)
class Options:
    devices: int = 5
    others: int = 1
    size: int = 1 << 20
    block_size: int = 16384
    window: int = 32
    timeout: float = 120.0
    mcu: bool = False  # also the MCU device (needs cc and libmosquitto-dev; `make setup`)


# steps ---------------------------------------------------------------------------------------------

def make_packages(s: Session, size: int) -> dict[str, Path]:
    s.say("\n== publisher key and packages (ota-pack)")
    keys = s.work / "keys"
    s.pack("keygen", "--out", str(keys), "--force")
    base = os.urandom(size)
    made = {"key": keys / "publisher.key", "pub": keys / "publisher.pub"}
    for name, version in (("v1", V1), ("v2", V2), ("v3", V3)):
        src = s.work / f"src-{version}"
        (src / "bin").mkdir(parents=True, exist_ok=True)
        data = base if version == V1 else base[: size // 2] + os.urandom(16384) + base[size // 2 + 16384:]
        base = data if version == V2 else base
        (src / "bin" / "data").write_bytes(data)
        (src / "VERSION").write_text(version + "\n")
        made[name] = s.work / f"{APP}-{version}.otapkg"
        s.pack("build", str(src), "--app", APP, "--version", version, "--model", MODEL, "--key", str(made["key"]),
               "--compression", "none", "--out", str(made[name]))
    made["m2"] = s.work / f"{APP}-{V1}-{OTHER_MODEL}.otapkg"
    s.pack("build", str(s.work / f"src-{V1}"), "--app", APP, "--version", V1, "--model", OTHER_MODEL, "--key",
           str(made["key"]), "--compression", "none", "--out", str(made["m2"]))
    made["delta"] = s.work / f"{APP}-{V1}-{V2}.delta.otapkg"
    s.pack("delta", "--from", str(made["v1"]), "--to", str(made["v2"]), "--key", str(made["key"]),
           "--out", str(made["delta"]))
    made["delta3"] = s.work / f"{APP}-{V2}-{V3}.delta.otapkg"
    s.pack("delta", "--from", str(made["v2"]), "--to", str(made["v3"]), "--key", str(made["key"]),
           "--out", str(made["delta3"]))
    agent_src = s.work / f"src-agent-{AGENT_V}"
    (agent_src / "bin").mkdir(parents=True, exist_ok=True)
    (agent_src / "bin" / "ota-agent").write_text(NEW_AGENT)
    (agent_src / "bin" / "ota-agent").chmod(0o755)
    made["agent"] = s.work / f"{AGENT_APP}-{AGENT_V}.otapkg"
    s.pack("build", str(agent_src), "--app", AGENT_APP, "--version", AGENT_V, "--kind", "agent", "--model", MODEL,
           "--key", str(made["key"]), "--compression", "none", "--out", str(made["agent"]))
    made["unsigned"] = strip_signatures(made["v1"], s.work / f"{APP}-{V1}.unsigned.otapkg")
    s.say(f"(made {made['unsigned'].name}: {made['v1'].name} with its signatures removed)")
    return made


def upload(s: Session, f: Facts, files: dict[str, Path]) -> dict[str, str]:
    s.say("\n== register the key, upload the packages (the scan decides)")
    if s.ota("keys", "add", str(files["pub"]), "--name", "demo-publisher").code != 0:
        raise ScenarioError("the publisher key was not registered")
    ids = {}
    for name in ("v1", "v2", "delta", "m2", "unsigned", "v3", "delta3", "agent"):
        # `ota` refuses an unsigned file before uploading it; --no-local-check sends it to show the scan's verdict
        check = ["--no-local-check"] if name == "unsigned" else []
        done = s.ota("packages", "upload", str(files[name]), "--timeout", "120", *check)
        found = re.search(r" as (up-[0-9a-f]+)", done.out)
        if found is None:
            raise ScenarioError(f"upload of {files[name].name} failed: {done.err.strip()}")
        package = s.api.get(f"/packages/{found.group(1)}")
        ids[name] = package["upload_id"]
        f.verdicts[name] = package["state"]
        if name == "unsigned":
            f.unsigned_reasons = list(package.get("reasons") or [])
    return ids


def start_fleet(s: Session, f: Facts, model_epns: list[str], other_epns: list[str], pub: Path,
                timeout: float) -> None:
    s.say("\n== devices: pre-authorise, then one agent process each (it registers with its token)")
    for epn in model_epns:
        s.start_agent(epn, MODEL, pub, extra_config=AGENT_EXTRAS)
    for epn in other_epns:
        s.start_agent(epn, OTHER_MODEL, pub, extra_config=AGENT_EXTRAS)
    everyone = set(model_epns + other_epns)

    def registered() -> bool:
        devices = s.api.get_all("/devices", "devices")["devices"]
        f.devices = sum(d.get("state") == "REGISTERED" and d.get("epn") in everyone for d in devices)
        return f.devices == len(everyone)

    s.wait_for("registration", registered, timeout)
    s.ota("devices", "list")


def refuse(s: Session, what: str, upload_id: str) -> tuple[int, str]:
    s.say(f"\n== {what}")
    shown = s.ota("jobs", "create", "--package", upload_id, "--model", MODEL, "--all-or-nothing")
    status, message = s.refusal("POST", "/jobs", {"package_id": upload_id, "targets": {"model": MODEL},
                                                  "all_or_nothing": True})
    s.say(f"(ota exit status {shown.code}; the API answered HTTP {status})")
    return status, message


def rollout(s: Session, f: Facts, name: str, upload_id: str, o: Options, model: str = MODEL) -> None:
    what = {"v1": V1, "delta": f"the delta {V1} -> {V2}", "m2": f"{V1} built for {OTHER_MODEL}",
            "mcu": f"the MCUboot image {MCU_APP} {V2}"}.get(name, name)
    s.say(f"\n== roll out {what}: one job for every {model} device, block mode, live progress")
    made = s.ota("jobs", "create", "--package", upload_id, "--model", model, "--mode", "block",
                 "--block-size", str(o.block_size), "--window", str(o.window))
    found = re.search(r"job (job-[0-9a-f]+)", made.out)
    if made.code != 0 or found is None:
        raise ScenarioError(f"job for {name} not created: {made.err.strip()}")
    job_id = found.group(1)
    began = time.monotonic()
    f.watch_codes[name] = s.ota("jobs", "watch", job_id, "--interval", "0.5", "--timeout", str(o.timeout)).code
    s.say(f"({time.monotonic() - began:.1f}s)")
    f.jobs[name] = s.api.get(f"/jobs/{job_id}")


def wait_inventory(s: Session, epns: list[str], version: str, timeout: float) -> None:
    s.wait_for(f"inventories reporting {version}",
               lambda: all(s.device(e).get("apps", {}).get(APP) == version for e in epns), timeout)


def other_model_untouched(s: Session, f: Facts, other_epns: list[str]) -> None:
    s.say(f"\n== the {OTHER_MODEL} device(s) after the {MODEL} jobs (expected: nothing happened)")
    for agent in [a for a in s.agents if a.epn in other_epns]:
        executions = len(s.api.get(f"/devices/{agent.epn}/executions").get("executions", []))
        f.other_before[agent.epn] = (executions, len(agent.history_lines()), agent.current(APP),
                                     s.device(agent.epn).get("apps", {}).get(APP))
        s.ota("devices", "show", agent.epn)
        s.say(f"{agent.history}: {len(agent.history_lines())} line(s)")


def report(s: Session, f: Facts, model_epns: list[str], other_epns: list[str]) -> None:
    s.say("\n== what each device installed (<data_dir>/history.txt)")
    for agent in s.agents:
        f.histories[agent.epn] = agent.history_lines()
        f.current[agent.epn] = agent.current(APP)
        f.inventory[agent.epn] = s.device(agent.epn).get("apps", {}).get(APP)
        lines = f.histories[agent.epn] or ["(empty)"]
        s.say(f"{agent.epn} ({agent.model}) {agent.history}:\n" + "\n".join(f"    {ln}" for ln in lines))
    s.say("\n== job summaries")
    for job in f.jobs.values():
        s.ota("jobs", "show", job["job_id"])


def command_to_group(s: Session, f: Facts, key: Path, timeout: float) -> None:
    s.say(f"\n== a signed command to every {MODEL} device: run a script, collect each device's output")
    script = s.work / "check.sh"
    script.write_text(CHECK_SCRIPT)
    done = s.ota("commands", "send", "run-script", "--script", str(script), "--model", MODEL, "--key", str(key),
                 "--wait", "--wait-timeout", str(timeout))
    f.command_code = done.code
    found = re.search(r"command (cmd-[0-9a-f]+)", done.out)
    if found is not None:
        runs = s.api.get_all(f"/commands/{found.group(1)}/runs", "runs")["runs"]
        f.command = {**s.api.get(f"/commands/{found.group(1)}"), "runs": runs}


def automatic_update(s: Session, f: Facts, model_epns: list[str], timeout: float) -> None:
    s.say(f"\n== publish {APP} {V3} for {MODEL} on channel stable: the devices update themselves")
    s.ota("releases", "publish", APP, V3, "--model", MODEL, "--channel", "stable")
    wait_inventory(s, model_epns, V3, timeout)
    for agent in [a for a in s.agents if a.epn in model_epns]:
        auto = [e for e in s.api.get(f"/devices/{agent.epn}/executions").get("executions", [])
                if e.get("job_id") not in {j["job_id"] for j in f.jobs.values()}]
        state = auto[0].get("state") if len(auto) == 1 else f"{len(auto)} automatic executions"
        f.auto[agent.epn] = (agent.current(APP), s.device(agent.epn).get("apps", {}).get(APP), state)
    s.ota("devices", "show", model_epns[0])
    s.ota("jobs", "list")


def self_update(s: Session, f: Facts, upload_id: str, model_epns: list[str], timeout: float) -> None:
    s.say(f"\n== the agents update themselves: {AGENT_APP} {AGENT_V} (kind agent) to every {MODEL} device; each "
          "installs it, exits 75, is started again (here by the demo, as systemd would) and confirms")
    made = s.ota("jobs", "create", "--package", upload_id, "--model", MODEL)
    found = re.search(r"job (job-[0-9a-f]+)", made.out)
    if made.code != 0 or found is None:
        raise ScenarioError(f"self-update job not created: {made.err.strip()}")
    job_id, deadline, restarts = found.group(1), time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        job = s.api.get(f"/jobs/{job_id}")
        live = sum(job["counts"].get(k, 0) for k in ("QUEUED", "IN_PROGRESS"))
        if job.get("state") != "ACTIVE" or (job.get("fanout_done") and live == 0):  # executions come from the fan-out
            break
        for agent in list(s.agents):
            if not procs.is_alive(agent.process.pid):
                s.restart_agent(agent)
                restarts += 1
        time.sleep(0.3)
    s.say(f"({restarts} agent restart(s) by the service manager)")
    s.ota("jobs", "show", job_id)
    for agent in [a for a in s.agents if a.epn in model_epns]:
        view = s.api.get(f"/jobs/{job_id}/executions/{agent.epn}")
        f.self_update[agent.epn] = (view.get("state"), agent.current(AGENT_APP), procs.is_alive(agent.process.pid))


def mcu_update(s: Session, f: Facts, files: dict[str, Path], o: Options) -> list[str]:
    """One MCU device (mcu/'s host build) takes a signed MCUboot image by a block-mode job; returns its EPN."""
    epn, home, keys = "demo-mcu-1", s.work / "demo-mcu-1", s.work / "keys"
    s.say(f"\n== an MCU device of model {MCU_MODEL}: the C library's host build (libmosquitto, files as flash)")
    mcudevice.run(s, ["make", "-s", "-C", "mcu", "host"], "building the MCU host device")
    imgtool = shutil.which("imgtool") or str(Path(sys.executable).parent / "imgtool")
    (keys / "image.pem").unlink(missing_ok=True)
    mcudevice.run(s, [imgtool, "keygen", "-k", str(keys / "image.pem"), "-t", "ecdsa-p256"], "imgtool keygen")
    images = {}
    for version, size in ((V1, 48_000), (V2, 64_000)):
        body, images[version] = s.work / f"{MCU_APP}-{version}.bin", s.work / f"{MCU_APP}-{version}.signed.bin"
        body.write_bytes(os.urandom(size))
        mcudevice.run(s, [imgtool, "sign", "--key", str(keys / "image.pem"), "--header-size", "0x200", "--pad-header",
                          "--align", "8", "--version", version, "--slot-size", hex(mcudevice.SLOT), str(body),
                          str(images[version])], "imgtool sign")
    package = s.work / f"{MCU_APP}-{V2}.otapkg"
    s.pack("build", "--firmware", str(images[V2]), "--mcuboot", "--mcuboot-key", str(keys / "image.pem"), "--app",
           MCU_APP, "--version", V2, "--model", MCU_MODEL, "--key", str(files["key"]), "--out", str(package))
    done = s.ota("packages", "upload", str(package), "--timeout", "120")
    found = re.search(r" as (up-[0-9a-f]+)", done.out)
    if found is None:
        raise ScenarioError(f"upload of {package.name} failed: {done.err.strip()}")
    s.say(f"\n== the factory: pre-authorise {epn}, register its key, flash {MCU_APP} {V1} into its primary slot")
    running = images[V1].read_bytes()
    mqtt = mcudevice.factory(s, epn, MCU_MODEL, MCU_APP, V1, home, running, show=True)
    started = mcudevice.start(s, epn, MCU_MODEL, MCU_APP, home, mqtt, files["pub"], keys / "image.pem", show=True)
    s.agents.append(Agent(epn, MCU_MODEL, home, started))  # stopped with the agents
    if not s.wait_for(f"{epn} online", lambda: mcudevice.online(s, epn, MCU_APP, V1), o.timeout):
        raise ScenarioError(f"{epn} did not come online; log {home / 'device.log'}")
    small = dataclasses.replace(o, block_size=min(o.block_size, mcudevice.MAX_BLOCK), window=min(o.window, 8))
    rollout(s, f, "mcu", found.group(1), small, MCU_MODEL)
    s.wait_for(f"{epn} reporting {V2}", lambda: mcudevice.online(s, epn, MCU_APP, V2), o.timeout)
    log = (home / "device.log").read_text(errors="replace")
    s.say(f"{home / 'device.log'}:\n" + "\n".join(f"    {ln}" for ln in log.splitlines()[-8:]))
    s.ota("devices", "show", epn)
    f.mcu[epn] = (mcudevice.confirmed(home, images[V2].read_bytes()), s.device(epn).get("apps", {}).get(MCU_APP),
                  "swapped in the new image (trial)" in log and "reboot" in log)
    return [epn]


def run_scenario(s: Session, o: Options) -> Outcomes:
    """The whole scenario on a running stack; returns the judged outcomes (agents are left to the caller)."""
    f = Facts()
    model_epns = [f"demo-dev-{n}" for n in range(1, o.devices + 1)]
    other_epns = [f"demo-other-{n}" for n in range(1, o.others + 1)]
    files = make_packages(s, o.size)
    ids = upload(s, f, files)
    start_fleet(s, f, model_epns, other_epns, files["pub"], o.timeout)
    f.delta_before_base = refuse(s, "a delta job while the devices lack 1.0.0 (must be refused)", ids["delta"])
    rollout(s, f, "v1", ids["v1"], o)
    wait_inventory(s, model_epns, V1, o.timeout)
    rollout(s, f, "delta", ids["delta"], o)
    wait_inventory(s, model_epns, V2, o.timeout)
    s.say("\n== the unsigned upload, as the scan judged it")
    s.ota("packages", "show", ids["unsigned"])
    f.downgrade = refuse(s, "a downgrade: 1.0.0 to devices on 1.1.0 (must be refused)", ids["v1"])
    other_model_untouched(s, f, other_epns)
    if other_epns:
        rollout(s, f, "m2", ids["m2"], o, OTHER_MODEL)
    report(s, f, model_epns, other_epns)
    command_to_group(s, f, files["key"], o.timeout)
    automatic_update(s, f, model_epns, o.timeout)
    self_update(s, f, ids["agent"], model_epns, o.timeout)
    last = next(a for a in s.agents if a.epn == model_epns[0])
    s.say(f"\n== {last.history} now (one line per attempt, with its result)\n"
          + "\n".join(f"    {ln}" for ln in last.history_lines()))
    mcu_epns = mcu_update(s, f, files, o) if o.mcu else None
    return judge(f, model_epns, other_epns, mcu_epns)


# main ----------------------------------------------------------------------------------------------

def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(".demo"))
    parser.add_argument("--devices", type=int, default=5, help=f"agents of model {MODEL}")
    parser.add_argument("--others", type=int, default=1, help=f"agents of model {OTHER_MODEL}")
    parser.add_argument("--size-mb", type=float, default=1.0, help="payload size of the packages")
    parser.add_argument("--block-size", type=int, default=16384)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--no-mcu", action="store_true", help=f"leave out the MCU device ({MCU_MODEL})")
    parser.add_argument("--keep", action="store_true", help="leave the stack and agents running")
    args = parser.parse_args(argv)
    options = Options(args.devices, args.others, int(args.size_mb * (1 << 20)), args.block_size, args.window,
                      mcu=not args.no_mcu)
    work = args.dir.resolve()
    stack_dir = work / "stack"
    signal.signal(signal.SIGTERM, _terminate)
    session: Session | None = None
    began = time.monotonic()
    try:
        stack.stop_all(stack_dir)  # leftovers of an interrupted earlier run, by their recorded PIDs
        for old in work.glob("demo-*"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)  # credentials of an earlier run belong to another stack
        state = stack.up(stack.StackOptions(stack_dir, sweep_every=2.0))
        print(stack.summary(state), flush=True)
        session = Session(state, work)
        outcomes = run_scenario(session, options)
        print(f"\n== checklist ({time.monotonic() - began:.0f}s)\n{outcomes.checklist()}", flush=True)
        if args.keep:
            print(f"left running; stop with: ota-local down --dir {stack_dir} and kill "
                  + " ".join(str(a.process.pid) for a in session.agents))
            session.agents = []
            print(f"web console: {stack.console_url(state)} (sign-in link: ota-local console --dir {stack_dir})")
        else:
            print(f"(the web console was at {stack.console_url(state)} while the demo ran; "
                  "`python -m local.demo --keep` leaves it up)")
        print("demo: every expected outcome happened" if outcomes.ok else "demo: some outcome did NOT happen")
        return 0 if outcomes.ok else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (stack.StackError, procs.ProcessError, ScenarioError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the cleanup short
        if session is not None:
            session.stop_agents()
        if not args.keep:
            stopped = stack.stop_all(stack_dir)
            if stopped:
                print("stopped: " + ", ".join(stopped))


if __name__ == "__main__":
    sys.exit(main())
