"""Every command-line tool answers --version with its name and version, and exits 0."""

from __future__ import annotations

import pytest

from agent.cli import main as agent_main
from cli.main import main as ota_main
from local.cli import main as local_main
from packager.cli import main as pack_main


def test_ota_pack_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert pack_main(["--version"]) == 0 and capsys.readouterr().out.startswith("ota-pack ")


def test_ota_agent_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="0"):
        agent_main(["--version"])
    assert capsys.readouterr().out.startswith("ota-agent ")


def test_ota_local_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="0"):
        local_main(["--version"])
    assert capsys.readouterr().out.startswith("ota-local ")


def test_ota_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="0"):
        ota_main(["--version"])
    assert capsys.readouterr().out.startswith("ota ")
