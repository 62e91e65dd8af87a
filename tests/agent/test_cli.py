"""`ota-agent --config`: every configuration problem is one line on stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, pub_pem: bytes, body: str | None = None, **over: str) -> Path:
    (tmp_path / "publisher.pub").write_bytes(pub_pem)
    values = {"epn": '"dev-1"', "model": '"m1"', "data_dir": '"data"', "install_root": '"root"'}
    values.update(over)
    top = "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)
    default = '[broker]\nplaintext = true\n[trust]\npublisher_keys = ["publisher.pub"]\n'
    text = top + (body if body is not None else default)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_valid_config_loads(tmp_path, publisher):
    body = ('[broker]\nhost = "localhost"\nport = 1884\n[trust]\npublisher_keys = ["publisher.pub"]\n'
            '[apps]\ninstalled = { demo = "1.2.3" }\nmanaged = ["demo", "tool"]\n'
            '[limits]\nscript_timeout = 10\nstall_budget = 5\n[ack]\nidle_ms = 20\n')
    cfg = load_config(str(write_config(tmp_path, publisher[1], body)))
    assert (cfg.broker_port, cfg.installed_apps, cfg.managed_apps) == (1884, {"demo": "1.2.3"}, ("demo", "tool"))
    assert cfg.data_dir == str(tmp_path / "data") and cfg.ack_idle == 0.02 and len(cfg.trusted_keys) == 1


TRUST = '[trust]\npublisher_keys = ["publisher.pub"]\n'


@pytest.mark.parametrize(
    ("over", "body", "needle"),
    [
        ({"epn": '"a/b"'}, None, "EPN ID"),
        ({"epn": None}, None, "EPN ID"),
        ({"model": '"m 1"'}, None, "model"),
        ({"data_dir": None}, None, "data_dir is required"),
        ({}, "", "trust.publisher_keys"),
        ({}, '[trust]\npublisher_keys = ["missing.pem"]\n', "does not exist"),
        ({}, '[trust]\npublisher_keys = ["agent.toml"]\n', "not a PEM public key"),
        ({}, TRUST + "[apps]\nmanaged = " + str([f"a{i}" for i in range(9)]).replace("'", '"') + "\n",
         "at most 8"),
        ({}, TRUST + '[apps]\ninstalled = { demo = "1.2" }\n', "apps.installed"),
        ({}, TRUST + '[broker]\nport = 70000\n', "broker.port"),
        ({}, TRUST + '[tls]\ncert = "agent.toml"\n', "tls.cert and tls.key"),
        ({}, TRUST + '[registration]\napi_url = "ftp://x"\ntoken = "t"\n', "http(s) URL"),
        ({}, TRUST + '[limits]\nscript_timeout = -1\n', "limits.script_timeout"),
        ({"colour": '"blue"'}, TRUST, "unknown config key"),
        ({}, TRUST + "[broker\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, publisher, over, body, needle):
    path = write_config(tmp_path, publisher[1], body, **over)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert needle in str(info.value)


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--config", "nope.toml"], 2, "does not exist"),
    (["--config", "{cfg}", "--check"], 0, "is valid"),
    (["--config", "{bad}"], 2, "at most 8"),
    (["--config", "{plain}", "--check"], 2, "set [broker] plaintext = true"),
])
def test_cli_exit_codes_one_line(tmp_path, publisher, args, code, needle):
    good = write_config(tmp_path, publisher[1])
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = write_config(bad_dir, publisher[1], TRUST + "[apps]\nmanaged = " +
                       str([f"a{i}" for i in range(9)]).replace("'", '"') + "\n")
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    plain = write_config(plain_dir, publisher[1], TRUST)  # neither [tls] nor [registration], plaintext not asked
    argv = [a.format(cfg=good, bad=bad, plain=plain) for a in args]
    done = subprocess.run([sys.executable, "-m", "agent", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == code
    assert needle in out and len(out.splitlines()) == 1 and "Traceback" not in out


def test_crash_env_must_name_a_checkpoint(tmp_path, publisher):
    good = write_config(tmp_path, publisher[1])
    done = subprocess.run([sys.executable, "-m", "agent", "--config", str(good)], capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(REPO), "OTA_AGENT_CRASH_AT": "whenever"})
    assert done.returncode == 2 and "OTA_AGENT_CRASH_AT" in done.stderr
