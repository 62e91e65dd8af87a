"""`python -m local.demo` (make demo): the whole service on one machine, end to end, with real processes.

It starts the local stack, makes a publisher key and two signed packages with ota-pack, registers the
key and uploads the packages with `ota` (plus a tampered copy, which the scan rejects), pre-authorises
devices, starts one `ota-agent` per device (each registers with its token and gets its certificate),
rolls the first package out to every device of the model in block mode, then the second one, watching
progress; finally it stops every process it started (also on errors and Ctrl-C) unless --keep.
Each command is printed before it runs, so the demo doubles as a tutorial. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from local import procs, stack

MODEL = "demo-m1"


def _run(argv: list[str], env: dict[str, str], *, check: bool = True, quiet: bool = False) -> str:
    shown = " ".join(shlex.quote(a) for a in argv).replace(f"{sys.executable} -m cli.main", "ota")
    shown = shown.replace(f"{sys.executable} -m packager", "ota-pack")
    print(f"$ {shown}", flush=True)
    done = subprocess.run(argv, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not quiet and done.stdout:
        print(done.stdout.rstrip(), flush=True)
    if check and done.returncode != 0:
        raise SystemExit(f"error: step failed ({done.returncode}): {shown}")
    return done.stdout


def _payload(directory: Path, size: int, version: str) -> Path:
    (directory / "bin").mkdir(parents=True, exist_ok=True)
    (directory / "bin" / "data").write_bytes(os.urandom(size))
    (directory / "VERSION").write_text(version + "\n")
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(".demo"))
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--size-mb", type=float, default=4.0, help="payload size of the packages")
    parser.add_argument("--block-size", type=int, default=16384)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--mode", choices=("block", "url"), default="block")
    parser.add_argument("--device-workers", type=int, default=1, help="bridge pollers of the device queue")
    parser.add_argument("--keep", action="store_true", help="leave the stack and agents running")
    args = parser.parse_args(argv)
    work = args.dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    stack_dir = work / "stack"
    agents: list[procs.Started] = []
    py = sys.executable
    try:
        state = stack.up(stack.StackOptions(stack_dir, sweep_every=2.0, device_workers=args.device_workers))
        print(stack.summary(state), flush=True)
        env = dict(os.environ, OTA_API_URL=state["api_url"], OTA_TOKEN=state["token"],
                   PYTHONPATH=os.pathsep.join([str(stack.PROJECT_DIR), os.environ.get("PYTHONPATH", "")]))
        ota = [py, "-m", "cli.main"]
        pack = [py, "-m", "packager"]
        size = int(args.size_mb * 1024 * 1024)
        _run([*pack, "keygen", "--out", str(work / "keys"), "--force"], env)
        packages = []
        for version in ("1.0.0", "1.1.0"):
            source = _payload(work / f"src-{version}", size, version)
            out = work / f"demo-{version}.otapkg"
            _run([*pack, "build", str(source), "--app", "demo", "--version", version, "--model", MODEL,
                  "--key", str(work / "keys" / "publisher.key"), "--compression", "none", "--out", str(out)], env)
            packages.append(out)
        _run([*ota, "keys", "add", str(work / "keys" / "publisher.pub"), "--name", "demo-publisher"], env)
        upload_ids = []
        for package in packages:
            answer = json.loads(_run([*ota, "--json", "packages", "upload", str(package)], env, quiet=True))
            print(f"  {answer['state']}: {answer['upload_id']}", flush=True)
            upload_ids.append(answer["upload_id"])
        tampered = work / "tampered.otapkg"
        data = bytearray(packages[0].read_bytes())
        data[len(data) // 2] ^= 0xFF
        tampered.write_bytes(bytes(data))
        _run([*ota, "packages", "upload", str(tampered)], env, check=False)
        for n in range(1, args.devices + 1):
            epn = f"demo-dev-{n}"
            made = json.loads(_run([*ota, "--json", "devices", "add", epn, "--model", MODEL], env, quiet=True))
            home = work / epn
            shutil.rmtree(home, ignore_errors=True)  # credentials of an earlier run belong to another stack
            home.mkdir()
            config = home / "agent.toml"
            config.write_text(
                f'epn = "{epn}"\nmodel = "{MODEL}"\ndata_dir = "data"\ninstall_root = "root"\n'
                f'[registration]\napi_url = "{state["api_url"]}"\ntoken = "{made["registration_token"]}"\n'
                f'[trust]\npublisher_keys = ["{work / "keys" / "publisher.pub"}"]\n')
            agents.append(procs.start(f"agent {epn}", [py, "-m", "agent", "--config", str(config)],
                                      home / "agent.log", env=env))
            print(f"started ota-agent for {epn} (pid {agents[-1].pid}, log {home / 'agent.log'})", flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            devices = json.loads(_run([*ota, "--json", "devices", "list"], env, quiet=True))["devices"]
            if sum(d.get("state") == "REGISTERED" for d in devices) >= args.devices:
                break
            time.sleep(0.5)
        _run([*ota, "devices", "list"], env)
        for upload_id in upload_ids:
            job = json.loads(_run([*ota, "--json", "jobs", "create", "--package", upload_id, "--model", MODEL,
                                   "--mode", args.mode, "--block-size", str(args.block_size), "--window",
                                   str(args.window)], env, quiet=True))
            began = time.monotonic()
            _run([*ota, "jobs", "watch", job["job_id"], "--interval", "0.5", "--timeout", "600"], env, check=False)
            took = time.monotonic() - began
            print(f"  {args.devices} x {size / 1e6:.1f} MB in {took:.1f}s "
                  f"({args.devices * size / 1e6 / took:.1f} MB/s in total, watch polling included)", flush=True)
        _run([*ota, "devices", "show", "demo-dev-1"], env)
        if args.keep:
            print(f"left running; stop with: ota-local down --dir {stack_dir} and kill "
                  + " ".join(str(a.pid) for a in agents))
            agents = []
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (stack.StackError, procs.ProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        for agent in agents:
            procs.stop(agent)
        if not args.keep:
            stopped = stack.stop_all(stack_dir)
            if stopped:
                print("stopped: " + ", ".join(stopped))


if __name__ == "__main__":
    sys.exit(main())
