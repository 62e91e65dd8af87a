"""The operator web console's files: which request path is which file, the toolkit's install, the export.

- `resolve(path)` maps a request path under `/console/` to a file: `web/` holds the console (HTML, CSS,
  JS modules), `/console/vendor/<package>/...` is the pinned toolkit in `web/node_modules/<package>/`.
  Only known file types, no dot-files, nothing outside those two trees, only the toolkit's packages.
- `python -m local.console install` runs `npm ci` in `web/` when the toolkit is missing or older than
  `web/package-lock.json` (exact versions, integrity hashes checked by npm, `--ignore-scripts`).
- `python -m local.console export OUT [--api-url URL]` copies exactly the files to host (S3) and writes
  OUT/config.json naming the API (infra/README.md, "The web console").

Does not: serve HTTP (local/apiserver.py does), hold or hand out any credential, build or bundle code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "/console"
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
VENDOR = "vendor"  # /console/vendor/<package>/... is web/node_modules/<package>/...
PACKAGES = ("preact", "htm", "chart.js", "@kurkle/color")  # what index.html's import map names
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
APP_SKIP = {"package.json", "package-lock.json"}


def wants(path: str) -> bool:
    """Whether a request path (query included) is the console's, not the API's."""
    bare = path.partition("?")[0]
    return bare == PREFIX or bare.startswith(PREFIX + "/")


def _inside(root: Path, parts: list[str]) -> Path | None:
    if not parts or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        return None
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate if candidate.suffix in TYPES else None


def resolve(path: str, web_dir: Path = WEB_DIR) -> Path | None:
    """The file for a console request path (`/console/...`), or None (then 404)."""
    bare = path.partition("?")[0].partition("#")[0]
    if not wants(bare):
        return None
    rest = bare[len(PREFIX):].lstrip("/") or "index.html"
    parts = rest.split("/")
    if parts[0] == VENDOR:
        scoped = len(parts) > 2 and parts[1].startswith("@")
        name = "/".join(parts[1:3]) if scoped else "/".join(parts[1:2])
        if name not in PACKAGES:
            return None
        return _inside(web_dir / "node_modules", parts[1:])
    if parts[0] == "node_modules" or parts[-1] in APP_SKIP:
        return None
    return _inside(web_dir, parts)


def content_type(file: Path) -> str:
    return TYPES[file.suffix]


def installed(web_dir: Path = WEB_DIR) -> bool:
    """The toolkit is in web/node_modules and not older than the lockfile."""
    marker = web_dir / "node_modules" / ".package-lock.json"  # npm writes it on every install
    lock = web_dir / "package-lock.json"
    return marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime and all(
        (web_dir / "node_modules" / p / "package.json").is_file() for p in PACKAGES)


def install(web_dir: Path = WEB_DIR) -> int:
    """`npm ci` in web/ if needed; 0 when the toolkit is there, 1 with one line saying what is missing."""
    if installed(web_dir):
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print("error: the web console needs npm to install its toolkit: 'sudo apt-get install npm' "
              "(or 'python -m local.osdeps' as root), then 'python -m local.console install'", file=sys.stderr)
        return 1
    print(f"installing the web console's toolkit: npm ci in {web_dir}", file=sys.stderr)
    done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=web_dir, capture_output=True, text=True)
    if done.returncode != 0 or not installed(web_dir):
        print(f"error: npm ci in {web_dir} failed: {(done.stderr or done.stdout).strip()[-400:]}", file=sys.stderr)
        return 1
    return 0


def export(out: Path, api_url: str, web_dir: Path = WEB_DIR) -> list[Path]:
    """Copy the console and its toolkit (as served under /console/) to OUT; return the files written."""
    written: list[Path] = []
    for file in sorted(web_dir.rglob("*")):
        rel = file.relative_to(web_dir)
        url = f"{PREFIX}/{rel.as_posix()}"
        if rel.parts[0] == "node_modules":
            url = f"{PREFIX}/{VENDOR}/{'/'.join(rel.parts[1:])}"
        if file.is_file() and resolve(url, web_dir) is not None and rel.name != "config.json":
            target = out / url[len(PREFIX) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            if rel.as_posix() == "index.html":  # the page's CSP must let it call the API's origin
                origin = "{0.scheme}://{0.netloc}".format(urlsplit(api_url))
                target.write_text(file.read_text().replace("connect-src 'self'", f"connect-src 'self' {origin}", 1))
            written.append(target)
    config = out / "config.json"
    config.write_text(json.dumps({"api_url": api_url.rstrip("/"), "auth": "sigv4"}, indent=2) + "\n")
    return [*written, config]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.console", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="npm ci in web/ when the toolkit is missing or stale")
    p = sub.add_parser("export", help="copy the files to host (for S3) with a config.json naming the API")
    p.add_argument("out", type=Path)
    p.add_argument("--api-url", required=True, help="the API's base URL, e.g. https://ID.execute-api.REGION.amazonaws.com/api")
    args = parser.parse_args(argv)
    if args.command == "install":
        return install()
    if install() != 0:
        return 1
    files = export(args.out, args.api_url)
    print(f"{len(files)} files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
