"""The web console's files as the local API serves them (local/console.py), without a browser: which
request path is which file, what is never served, the pinned toolkit, the page's CSP, the export for
hosting, and the `ota-local console` sign-in link."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from local import console
from local.cli import main as local_main
from local.stack import console_url, summary

WEB = console.WEB_DIR


@pytest.fixture
def web(tmp_path: Path) -> Path:
    """A small web/ tree with a toolkit package and things that must never be served."""
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "main.js").write_text("export {};\n")
    (tmp_path / "index.html").write_text("<!doctype html>\n")
    (tmp_path / "package.json").write_text("{}")
    (tmp_path / ".secret.js").write_text("no")
    (tmp_path / "notes.txt").write_text("no")
    for package in ("preact/dist/preact.mjs", "@kurkle/color/dist/color.esm.js", "left-pad/index.js"):
        (tmp_path / "node_modules" / package).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "node_modules" / package).write_text("export {};\n")
    (tmp_path.parent / "outside.js").write_text("no")
    return tmp_path


@pytest.mark.parametrize(("path", "file"), [
    ("/console/", "index.html"), ("/console/index.html?x=1", "index.html"), ("/console/js/main.js", "js/main.js"),
    ("/console/vendor/preact/dist/preact.mjs", "node_modules/preact/dist/preact.mjs"),
    ("/console/vendor/@kurkle/color/dist/color.esm.js", "node_modules/@kurkle/color/dist/color.esm.js"),
])
def test_console_paths_map_to_their_files(web: Path, path: str, file: str) -> None:
    assert console.resolve(path, web) == (web / file).resolve()


@pytest.mark.parametrize("path", [
    "/console/package.json", "/console/.secret.js", "/console/notes.txt",
    "/console/node_modules/preact/dist/preact.mjs",
    "/console/vendor/left-pad/index.js", "/console/../outside.js", "/console/js/../../outside.js",
    "/console/vendor/preact/../../../outside.js", "/console/missing.js", "/console/js", "/consolex/index.html",
    "/devices", "/console/vendor/@kurkle", "/console/js%2fmain.js",
])
def test_nothing_else_is_served(web: Path, path: str) -> None:
    assert console.resolve(path, web) is None


def test_only_console_paths_are_the_consoles() -> None:
    assert console.wants("/console") and console.wants("/console/jobs.js?x") and not console.wants("/consoles")
    assert not console.wants("/jobs/console")


def test_the_import_map_is_the_one_inline_script_the_csp_allows_and_names_only_served_files() -> None:
    page = (WEB / "index.html").read_text()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, re.S)
    assert csp is not None and len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp.group(1)
    assert "'unsafe-inline'" not in csp.group(1) and "'unsafe-eval'" not in csp.group(1)
    imports = json.loads(inline[0])["imports"]
    assert set(console.PACKAGES) <= {name.split("/")[0] if not name.startswith("@") else name for name in imports}
    if console.installed():
        for target in imports.values():
            assert console.resolve("/console/" + target.removeprefix("./")) is not None, target


def test_the_toolkit_is_pinned_exactly_with_integrity_hashes() -> None:
    wanted = json.loads((WEB / "package.json").read_text())["dependencies"]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in wanted.values()), wanted
    locked = json.loads((WEB / "package-lock.json").read_text())["packages"]
    for name, entry in locked.items():
        if name:
            assert entry["integrity"].startswith("sha512-"), name
    for name, version in wanted.items():
        assert locked[f"node_modules/{name}"]["version"] == version


def test_export_writes_the_served_files_and_the_api_address(web: Path, tmp_path: Path) -> None:
    (web / "config.json").write_text('{"api_url": "", "auth": "bearer"}')
    (web / "index.html").write_text('<meta content="default-src \'self\'; connect-src \'self\'; img-src data:">')
    out = tmp_path / "out"
    written = {p.relative_to(out).as_posix() for p in console.export(out, "https://api.example/api/", web)}
    assert written == {"index.html", "js/main.js", "vendor/preact/dist/preact.mjs",
                       "vendor/@kurkle/color/dist/color.esm.js", "config.json"}
    assert json.loads((out / "config.json").read_text())["api_url"] == "https://api.example/api"
    assert "connect-src 'self' https://api.example;" in (out / "index.html").read_text()  # the CSP lets it call the API


def test_the_stack_names_the_console_and_signs_in_by_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = {"directory": str(tmp_path), "api_url": "http://127.0.0.1:8001", "token": "t/k+n", "processes": []}
    assert console_url(state) == "http://127.0.0.1:8001/console/"
    assert "console    http://127.0.0.1:8001/console/" in summary(state)
    (tmp_path / "stack.json").write_text(json.dumps(state))
    assert local_main(["console", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "http://127.0.0.1:8001/console/#token=t%2Fk%2Bn" and "treat it as the token" in out.err
