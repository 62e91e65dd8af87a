"""Core contract: canonical JSON, versions, ids, signed envelopes, container checks, wire codecs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import zstandard

from otaformat import wire
from otaformat.canonical import canonical_json, parse_json
from otaformat.container import pack_container, verify_package
from otaformat.errors import MalformedError, UnsafeArchiveError, VerificationError
from otaformat.ids import check_epn
from otaformat.manifest import Manifest, check_relative_path
from otaformat.signing import check_policy, encode_envelope, generate_key, key_id, sign_manifest
from otaformat.versions import Version

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _manifest_dict(content: bytes, payload: bytes, **over: object) -> dict:
    d = {
        "format": 1, "package_id": "demo-1.0.0", "app": "demo", "version": "1.0.0", "kind": "app",
        "models": ["m1"], "created": "2026-01-01T00:00:00Z", "expires": "2030-01-01T00:00:00Z",
        "payload": {"compression": "zstd", "length": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                    "raw_length": len(content), "raw_sha256": hashlib.sha256(content).hexdigest()},
        "files": [{"path": "bin/app", "mode": 0o100755, "length": len(content),
                   "sha256": hashlib.sha256(content).hexdigest()}],
        "scripts": {}, "min_agent_version": "1.0.0", "delta": None, "labels": {},
    }
    d.update(over)
    return d


@pytest.fixture
def signed():
    key = generate_key()
    content = b"hello world" * 100
    payload = zstandard.ZstdCompressor().compress(content)
    manifest = Manifest.from_dict(_manifest_dict(content, payload))
    env = sign_manifest(manifest, key)
    return key, env, payload, {key_id(key.public_key()): key.public_key()}


def test_round_trip_verifies(signed):
    _, env, payload, trusted = signed
    pkg = verify_package(pack_container(encode_envelope(env), payload), trusted)
    assert pkg.manifest.version == "1.0.0"
    assert pkg.content == b"hello world" * 100


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda env, p: (dict(env, signatures=[]), p), "unsigned"),
        (lambda env, p: (dict(env, signatures=[dict(env["signatures"][0], keyid="ffff")]), p), "untrusted-key"),
        (lambda env, p: (dict(env, signatures=[dict(env["signatures"][0], alg="none")]), p), None),
        (lambda env, p: ({**env, "manifest": {**env["manifest"], "version": "9.9.9"}}, p), "bad-signature"),
        (lambda env, p: (env, p[:-1] + bytes([p[-1] ^ 1])), "hash"),
        (lambda env, p: (env, p + b"x"), "length"),
    ],
)
def test_tampering_is_rejected(signed, mutate, code):
    _, env, payload, trusted = signed
    env2, payload2 = mutate(env, payload)
    with pytest.raises(VerificationError) as info:
        verify_package(pack_container(encode_envelope(env2), payload2), trusted)
    if code:
        assert info.value.code == code


def test_policy_checks(signed):
    _, env, payload, trusted = signed
    manifest = verify_package(pack_container(encode_envelope(env), payload), trusted).manifest
    check_policy(manifest, now=NOW, model="m1", version_floor="1.0.0")
    for kwargs, code in [
        ({"now": datetime(2031, 1, 1, tzinfo=UTC)}, "expired"),
        ({"now": NOW, "model": "other"}, "wrong-model"),
        ({"now": NOW, "version_floor": "1.0.1"}, "downgrade"),
    ]:
        with pytest.raises(VerificationError) as info:
            check_policy(manifest, **kwargs)
        assert info.value.code == code


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", "a/./b", "", "x\x00"])
def test_unsafe_paths(path):
    with pytest.raises((UnsafeArchiveError, MalformedError)):
        check_relative_path(path)


def test_symlink_mode_rejected():
    content = b"x"
    d = _manifest_dict(content, content)
    d["files"][0]["mode"] = 0o120777
    with pytest.raises(UnsafeArchiveError):
        Manifest.from_dict(d)


@pytest.mark.parametrize("text", ["1.2", "01.2.3", "1.2.3-rc1", "1000000.0.0", 1, None])
def test_bad_versions(text):
    with pytest.raises(MalformedError):
        Version.parse(text)


@pytest.mark.parametrize("epn", ["a/b", "a+", "#", "$SYS", "..", "a\x00", "é", "x" * 65, ""])
def test_bad_epn(epn):
    with pytest.raises(MalformedError):
        check_epn(epn)


@pytest.mark.parametrize("doc", [b'{"a":NaN}', b'{"a":1,"a":2}', b"[" * 40 + b"]" * 40, b"\xff"])
def test_strict_json(doc):
    with pytest.raises(MalformedError):
        parse_json(doc)


def test_canonical_json_is_sorted_and_compact():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_frame_round_trip_and_corruption():
    frame = wire.encode_frame(5, 2, 3, b"abc")
    assert wire.decode_frame(frame) == wire.BlockFrame(5, 2, 3, b"abc")
    for bad in (frame[:-1] + b"x", frame[:10], wire.encode_frame(5, 3, 3, b"abc")):
        with pytest.raises(MalformedError):
            wire.decode_frame(bad)
