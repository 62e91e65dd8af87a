"""`python -m local.provisioner --out FILE`: create the stack's AWS resources on moto, then write their URLs.

Runs chalicelib.adapters.provision.ensure_resources with Settings.from_env, in a process of its own
so boto3 reads the stack's environment (AWS_ENDPOINT_URL...) without touching the caller's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.provisioner")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from chalicelib.adapters.provision import ensure_resources
    from chalicelib.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    urls = ensure_resources(settings)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(urls, indent=2, sort_keys=True))
    tmp.replace(args.out)
    print(json.dumps(urls, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
