"""Automatic updates on the agent: the inventory says the channel and the automatic apps (managed minus
pinned and opted out); it is sent again on the jittered check interval, only while IDLE and connected."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.config import ConfigError, parse_config
from otaformat import messages

from .conftest import Harness
from .pkgtools import new_key


def inventories(h: Harness) -> list[messages.Inventory]:
    decoded = [messages.decode(p) for p in h.transport.leaf("status")]
    return [d for d in decoded if isinstance(d, messages.Inventory)]


@pytest.fixture
def auto(config):
    return replace(config, managed_apps=("demo", "tool", "old"), channel="stable", pins={"old": "1.0.0"},
                   opt_out=("tool",), check_interval=100.0, check_jitter=0.1)


def test_the_inventory_names_the_channel_and_the_automatic_apps(auto):
    h = Harness(auto)
    h.agent.on_connected()
    [inv] = inventories(h)
    assert inv.channel == "stable" and inv.auto == ("demo",)


def test_without_a_channel_nothing_is_automatic(config):
    h = Harness(replace(config, managed_apps=("demo",)))
    h.agent.on_connected()
    [inv] = inventories(h)
    assert inv.channel is None and inv.auto == ()
    h.idle(10_000)
    assert len(inventories(h)) == 1


def test_the_check_repeats_on_the_jittered_interval_only_when_idle_and_connected(auto):
    h = Harness(auto)
    h.idle(0.1)  # schedules the first check
    h.idle(89)
    assert inventories(h) == []
    h.idle(22)  # past interval + jitter
    assert len(inventories(h)) == 1
    h.transport.connected = False
    h.idle(200)
    assert len(inventories(h)) == 1
    h.transport.connected = True
    h.idle(0.1)
    assert len(inventories(h)) == 2


def test_pins_and_opt_outs_must_be_managed_apps(tmp_path):
    pub = tmp_path / "p.pem"
    pub.write_bytes(new_key()[1])
    raw = {"epn": "d", "model": "m", "data_dir": "d", "install_root": "r", "trust": {"publisher_keys": [str(pub)]},
           "apps": {"managed": ["demo"]}, "auto": {"channel": "stable", "pin": {"tool": "1.0.0"}}}
    with pytest.raises(ConfigError, match=r"not in apps\.managed"):
        parse_config(raw, str(tmp_path))
    raw["auto"] = {"channel": "stable", "pin": {"demo": "1.0.0"}, "check_interval": 60}
    config = parse_config(raw, str(tmp_path))
    assert config.channel == "stable" and config.pins == {"demo": "1.0.0"} and config.check_interval == 60
    raw["auto"] = {"channel": "Not OK"}
    with pytest.raises(ConfigError, match=r"auto\.channel"):
        parse_config(raw, str(tmp_path))
