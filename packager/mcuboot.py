"""MCUboot firmware packages for the MCU library (`ota-pack build --firmware IMAGE --mcuboot`).

The payload of such a package is the signed MCUboot image byte for byte (file `image.bin`, kind
`firmware`, compression `none`): the device writes it straight into MCUboot's secondary slot and
hands it to the bootloader unchanged. This module checks the image (header magic, sizes, TLV area,
not padded to a slot, version = the package version, optionally its signature against the image
public key) and aligns the payload: the package's header + envelope length is padded, through the
signed label `mcuboot-pad`, to a multiple of `PAYLOAD_ALIGN` bytes so that every block maps to whole
flash program units in the slot (docs/mcu.md). Not here: signing the image (imgtool does that).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

IMAGE_MAGIC = 0x96F3B83D
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908
TLV_KEYHASH = 0x01
TLV_SHA256 = 0x10
TLV_ECDSA_SIG = 0x22
HEADER = struct.Struct("<IIHHII4s4x")  # magic, load_addr, hdr_size, protect_tlv_size, img_size, flags, version
PAYLOAD_ALIGN = 256  # package offset of the payload, a multiple of any MCU flash program unit
PAD_LABEL = "mcuboot-pad"
FORMAT_LABEL = ("image-format", "mcuboot")
MAX_PAD = 256


class ImageError(ValueError):
    """The file is not an MCUboot image this tool can package."""


@dataclass(frozen=True)
class Image:
    """What the packager needs to know about a signed MCUboot image."""

    hdr_size: int
    img_size: int
    protect_tlv_size: int
    version: str  # MAJOR.MINOR.REVISION (the build number is not part of the package version)
    tlvs: dict[int, bytes]


def _tlv_area(data: bytes, off: int, magic: int) -> tuple[dict[int, bytes], int]:
    if off + 4 > len(data):
        raise ImageError("the image ends before its TLV area")
    found, total = struct.unpack_from("<HH", data, off)
    if found != magic or total < 4 or off + total > len(data):
        raise ImageError(f"bad TLV info at offset {off} (is this an imgtool-signed image?)")
    tlvs: dict[int, bytes] = {}
    pos = off + 4
    while pos < off + total:
        if pos + 4 > off + total:
            raise ImageError("truncated TLV entry")
        kind, length = struct.unpack_from("<HH", data, pos)
        if pos + 4 + length > off + total:
            raise ImageError("TLV entry runs past the TLV area")
        tlvs[kind] = data[pos + 4 : pos + 4 + length]
        pos += 4 + length
    return tlvs, off + total


def parse_image(data: bytes) -> Image:
    """Check the header and TLV layout; the image must end exactly where its TLV area ends."""
    if len(data) < HEADER.size:
        raise ImageError("file too short for an MCUboot image header")
    magic, _load, hdr_size, prot, img_size, _flags, ver = HEADER.unpack_from(data)
    if magic != IMAGE_MAGIC:
        raise ImageError("not an MCUboot image (bad header magic); sign it with imgtool first")
    if hdr_size < HEADER.size or hdr_size + img_size > len(data):
        raise ImageError("header sizes do not fit the file")
    off = hdr_size + img_size
    if prot:
        _, end = _tlv_area(data, off, TLV_PROT_INFO_MAGIC)
        if end - off != prot:
            raise ImageError("protected TLV size does not match the header")
        off = end
    tlvs, end = _tlv_area(data, off, TLV_INFO_MAGIC)
    if end != len(data):
        raise ImageError(f"{len(data) - end} bytes follow the TLV area: give the unpadded image (no imgtool --pad)")
    if TLV_SHA256 not in tlvs:
        raise ImageError("the image has no SHA256 TLV")
    major, minor, revision = struct.unpack("<BBH", ver)
    return Image(hdr_size, img_size, prot, f"{major}.{minor}.{revision}", tlvs)


def check_signature(data: bytes, image: Image, key_pem: bytes) -> None:
    """Verify the image's SHA256 and ECDSA-P256 TLVs with a public (or private) PEM key."""
    digest = hashlib.sha256(data[: image.hdr_size + image.img_size + image.protect_tlv_size]).digest()
    if image.tlvs[TLV_SHA256] != digest:
        raise ImageError("the image does not match its SHA256 TLV (modified after signing?)")
    try:
        key = serialization.load_pem_public_key(key_pem)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None).public_key()
        except (ValueError, TypeError) as err:
            raise ImageError("--mcuboot-key is not a PEM key") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ImageError("--mcuboot-key must be an ECDSA P-256 key (imgtool keygen -t ecdsa-p256)")
    sig = image.tlvs.get(TLV_ECDSA_SIG)
    if sig is None:
        raise ImageError("the image has no ECDSA signature TLV")
    try:
        key.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # over the hash TLV's value
    except InvalidSignature as err:
        raise ImageError("the image signature does not verify with --mcuboot-key") from err


def build_aligned(build: Callable[[tuple[tuple[str, str], ...]], bytes], labels: tuple[tuple[str, str], ...]) -> bytes:
    """Build with growing `mcuboot-pad` labels until the payload starts at a PAYLOAD_ALIGN multiple.

    `build(labels)` returns the package bytes. Each pad character adds one byte to the envelope (the
    signature's base64 length may move by 4 when its DER length changes, hence the loop)."""
    if any(key in (PAD_LABEL, FORMAT_LABEL[0]) for key, _ in labels):
        raise ImageError(f"labels {PAD_LABEL!r} and {FORMAT_LABEL[0]!r} are set by --mcuboot")
    pad = 0
    for _ in range(8):
        package = build(tuple(sorted((*labels, FORMAT_LABEL, (PAD_LABEL, "0" * pad)))))
        (envelope_len,) = struct.unpack_from(">I", package, 8)
        short = -(12 + envelope_len) % PAYLOAD_ALIGN
        if short == 0:
            return package
        pad = (pad + short) % PAYLOAD_ALIGN
    raise ImageError("could not align the payload (unexpected envelope growth)")
