"""otaformat.build: deterministic full and delta packages that verify, with normalised files."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from otaformat.build import MODE_EXEC, MODE_FILE, BuildSpec, SourceFile, build_delta, build_full, compress
from otaformat.container import decompress, verify_package
from otaformat.delta import apply_verified_delta
from otaformat.errors import MalformedError, UnsafeArchiveError
from otaformat.signing import generate_key, key_id, private_key_pem

SPEC = BuildSpec(app="demo", version="1.0.0", models=("model-a", "model-b"), created="2026-01-01T00:00:00Z",
                 expires="2030-01-01T00:00:00Z", scripts=(("install", b"#!/bin/sh\ntrue\n"),))
FILES = [SourceFile("etc/conf", b"a = 1\n"), SourceFile("bin/app", b"\x7fELF" + bytes(3000), executable=True)]


@pytest.fixture(scope="module")
def key():
    return generate_key()


@pytest.fixture(scope="module")
def trusted(key):
    return {key_id(key.public_key()): key.public_key()}


@pytest.mark.parametrize("compression", ["zstd", "xz", "none"])
def test_full_package_round_trips(key, trusted, compression):
    pkg = verify_package(build_full(dataclasses.replace(SPEC, compression=compression), FILES, key), trusted)
    m = pkg.manifest
    assert m.package_id == "demo-1.0.0" and m.payload.compression == compression
    assert [f.path for f in m.files] == ["bin/app", "etc/conf", "scripts/install"]
    assert [f.mode for f in m.files] == [MODE_EXEC, MODE_FILE, MODE_EXEC]
    assert m.script_path("install") == "scripts/install"
    assert pkg.content == b"\x7fELF" + bytes(3000) + b"a = 1\n" + b"#!/bin/sh\ntrue\n"


def test_builds_are_byte_identical_whatever_the_input_order(key):
    one = build_full(SPEC, FILES, key)
    two = build_full(SPEC, list(reversed(FILES)), key)
    assert one == two
    assert build_full(dataclasses.replace(SPEC, created="2026-01-02T00:00:00Z"), FILES, key) != one


def test_private_key_never_enters_the_package(key):
    package = build_full(SPEC, FILES, key)
    pem = private_key_pem(key)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    assert pem not in package and scalar not in package and b"PRIVATE" not in package


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"app": "Bad App"}, MalformedError),
        ({"version": "1.0"}, MalformedError),
        ({"models": ()}, MalformedError),
        ({"expires": "2025-01-01T00:00:00Z"}, MalformedError),
        ({"compression": "gzip"}, MalformedError),
        ({"scripts": (("launch", b"x"),)}, MalformedError),
    ],
)
def test_builder_refuses_what_a_verifier_would_refuse(key, change, error):
    with pytest.raises(error):
        build_full(dataclasses.replace(SPEC, **change), FILES, key)


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ([SourceFile("../x", b"")], UnsafeArchiveError),
        ([SourceFile("/abs", b"")], UnsafeArchiveError),
        ([SourceFile("a", b"1"), SourceFile("a", b"2")], MalformedError),
        ([SourceFile("scripts/install", b"")], MalformedError),
    ],
)
def test_builder_refuses_bad_files(key, files, error):
    with pytest.raises(error):
        build_full(SPEC, files, key)


@pytest.mark.parametrize("compression", ["zstd", "xz", "none"])
def test_compression_is_deterministic_and_reversible(compression):
    data = bytes(range(256)) * 300
    assert compress(compression, data) == compress(compression, data)
    assert decompress(compression, compress(compression, data), len(data)) == data


def _pair(key, trusted, app_two="demo"):
    one = verify_package(build_full(SPEC, FILES, key), trusted)
    files_two = [SourceFile("etc/conf", b"a = 2\n"), SourceFile("bin/app", b"\x7fELF" + bytes(2000) + b"new" * 400,
                                                                  executable=True)]
    spec_two = dataclasses.replace(SPEC, version="1.1.0", app=app_two)
    return one, verify_package(build_full(spec_two, files_two, key), trusted)


def test_delta_round_trip_and_fields(key, trusted):
    old, new = _pair(key, trusted)
    data = build_delta(old, new, key, created="2026-02-01T00:00:00Z")
    assert data == build_delta(old, new, key, created="2026-02-01T00:00:00Z")
    pkg = verify_package(data, trusted)
    m, d = pkg.manifest, pkg.manifest.delta
    assert m.package_id == "demo-1.0.0-to-1.1.0" and m.version == "1.1.0" and m.files == new.manifest.files
    assert (d.base_version, d.base_sha256) == ("1.0.0", old.manifest.payload.raw_sha256)
    assert (d.target_sha256, d.target_length) == (new.manifest.payload.raw_sha256, len(new.content))
    assert m.payload.compression == "none" and m.expires == new.manifest.expires
    assert m.scripts == new.manifest.scripts
    assert apply_verified_delta(m, old.content, pkg.content) == new.content
    assert hashlib.sha256(apply_verified_delta(m, old.content, pkg.content)).hexdigest() == d.target_sha256


@pytest.mark.parametrize("encoding", ["bsdiff4", "bsdiff4-zstd", "bsdiff4-xz", "zstd-dict", "covers-xz"])
def test_delta_with_each_encoding(key, trusted, encoding):
    old, new = _pair(key, trusted)
    pkg = verify_package(build_delta(old, new, key, created="2026-02-01T00:00:00Z", encodings=(encoding,)), trusted)
    assert pkg.manifest.delta.encoding == encoding
    assert apply_verified_delta(pkg.manifest, old.content, pkg.content) == new.content


def test_delta_refuses_other_app_same_version_and_delta_inputs(key, trusted):
    old, other_app = _pair(key, trusted, app_two="other")
    with pytest.raises(MalformedError, match="different apps"):
        build_delta(old, other_app, key, created="2026-02-01T00:00:00Z")
    with pytest.raises(MalformedError, match="both packages have version"):
        build_delta(old, old, key, created="2026-02-01T00:00:00Z")
    _, new = _pair(key, trusted)
    delta = verify_package(build_delta(old, new, key, created="2026-02-01T00:00:00Z"), trusted)
    with pytest.raises(MalformedError, match="full packages"):
        build_delta(old, delta, key, created="2026-02-01T00:00:00Z")
