"""Checks a package file locally before a byte is uploaded: container magic and bounds, the envelope,
the manifest schema, the file's exact length, and the signature against the publisher keys the
service has registered. The scan decides for real; this only saves uploading what it would refuse.

Reads the 12-byte header and the envelope (at most 1 MiB), never the payload. Pure apart from reading
the file it is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cli.client import CliError
from otaformat.container import HEADER, envelope_length
from otaformat.errors import FormatError
from otaformat.manifest import Manifest
from otaformat.signing import parse_envelope, verify_envelope
from otaformat.verdict import trusted_keys


class RefusedLocally(CliError):
    """The file would be REJECTED by the scan; nothing was uploaded."""

    code = 1


def check_package_file(path: Path, public_keys: Iterable[str]) -> Manifest:
    """The package's manifest, or RefusedLocally naming the first problem."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEADER.size)
            length = envelope_length(head)
            raw = handle.read(length)
        if len(raw) != length:
            raise RefusedLocally(f"{path} is truncated inside its envelope; nothing uploaded")
        trusted = trusted_keys(public_keys)
        if trusted:
            manifest = verify_envelope(raw, trusted).manifest
        else:
            manifest = Manifest.from_dict(parse_envelope(raw)["manifest"])
    except FormatError as err:
        raise RefusedLocally(f"{path} would be refused by the scan ({err.code}: {err.reason}); "
                             "nothing uploaded") from err
    expected = HEADER.size + length + manifest.payload.length
    size = path.stat().st_size
    if size != expected:
        raise RefusedLocally(f"{path} is {size} bytes but its manifest makes it {expected}; nothing uploaded")
    if not trusted:
        raise RefusedLocally("no publisher key is registered, so the scan would refuse every package; "
                             "register one with 'ota keys add PUBKEY.pem --name NAME'")
    return manifest
