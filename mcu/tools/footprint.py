#!/usr/bin/env python3
"""Footprint of the OTA MCU library per component, from a linked Cortex-M image (stdlib only).

Reads BUILD/footprint.map (GNU ld map of the --gc-sections link, so only code the firmware keeps
counts) and the -fcallgraph-info=su files (BUILD/**/*.ci: per-function stack frames and call edges).
Flash = .text + .rodata + .data of each component; RAM = .data + .bss; "stack" = the deepest stack
of a call into the component (its callees included). The total RAM adds the worst-case stack of the
library's entry points, computed over the call graph (calls through function pointers are the
port's, outside the library; Mbed TLS has no recursion on this path). Prints a table, or JSON with
--json (used by bench/mcu_footprint.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

COMPONENTS = [  # (component, object-path regex), first match wins
    ("protocol (json, frames, bitmap, acks, job)", r"src/ota_(json|codec|frame|bitmap|job)\.o"),
    ("agent state machine", r"src/ota_agent\.o"),
    ("verify + MCUboot (slot, TLVs, trailer)", r"src/ota_(verify|mcuboot|crypto)\.o"),
    ("mbedtls SHA-256", r"mbedtls/sha256\.o"),
    ("mbedtls ECDSA P-256 (bignum, ecp, asn1)",
     r"mbedtls/(bignum|ecp|ecp_curves|ecdsa|asn1parse|asn1write|constant_time)\.o"),
    ("mbedtls platform + static arena alloc", r"mbedtls/(platform|platform_util|memory_buffer_alloc)\.o"),
    ("libc (memcpy, memset, strlen...)", r"(libc|libc_nano|libgcc)\.a"),
]
EXCLUDED = r"port/|crt|libnosys"  # the stub port, startup and semihosting are the integrator's
ENTRY_POINTS = ["ota_init", "ota_connected", "ota_on_message", "ota_tick", "ota_disconnected"]


def component(obj: str) -> str | None:
    if re.search(EXCLUDED, obj):
        return None
    for name, pattern in COMPONENTS:
        if re.search(pattern, obj):
            return name
    return "other"


def parse_map(path: Path) -> dict[str, dict[str, int]]:
    text = path.read_text()
    text = text[text.index("Linker script and memory map"):]
    sizes: dict[str, dict[str, int]] = {}
    pending: str | None = None
    for line in text.splitlines():
        m = re.match(r"^ (\.[\w.$]+)\s*$", line)
        if m:
            pending = m.group(1)
            continue
        m = re.match(r"^ (\.[\w.$]+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$", line)
        if not m:
            pending = None
            continue
        section = m.group(1) or pending
        pending = None
        if section is None or int(m.group(2), 16) == 0:
            continue
        kind = next((k for k in ("text", "rodata", "data", "bss") if section.startswith("." + k)), None)
        if kind is None and section.startswith("COMMON"):
            kind = "bss"
        name = component(m.group(4))
        if kind and name:
            sizes.setdefault(name, {"text": 0, "rodata": 0, "data": 0, "bss": 0})[kind] += int(m.group(3), 16)
    return sizes


def parse_callgraph(build: Path) -> tuple[dict[str, int], dict[str, set[str]], dict[str, str]]:
    frames: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    owner: dict[str, str] = {}
    for ci in build.rglob("*.ci"):
        obj = str(ci.with_suffix(".o"))
        for m in re.finditer(r'node: \{ title: "([^"]+)" label: "([^"]*)"', ci.read_text()):
            title, label = m.group(1), m.group(2)
            size = re.search(r"(\d+) bytes \((static|dynamic|bounded)", label.replace("\\n", "\n"))
            if size:
                frames[title] = int(size.group(1))
                owner[title] = obj
            else:
                frames.setdefault(title, 0)
        for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', ci.read_text()):
            edges.setdefault(m.group(1), set()).add(m.group(2))
    return frames, edges, owner


def _resolve(name: str, frames: dict[str, int]) -> str:
    if frames.get(name):
        return name
    for key in frames:  # static functions are titled "file.c:name"
        if key.endswith(":" + name) and frames[key]:
            return key
    return name


def worst_stack(entry: str, frames: dict[str, int], edges: dict[str, set[str]]) -> tuple[int, list[str]]:
    memo: dict[str, tuple[int, list[str]]] = {}

    def walk(fn: str, seen: frozenset[str]) -> tuple[int, list[str]]:
        fn = _resolve(fn, frames)
        if fn in memo:
            return memo[fn]
        best = (0, [])
        for callee in edges.get(fn, ()):  # edge names may be unresolved
            if callee in seen:
                continue
            best = max(best, walk(callee, seen | {fn}), key=lambda t: t[0])
        result = (frames.get(fn, 0) + best[0], [fn.split(":")[-1], *best[1]])
        memo[fn] = result
        return result

    return walk(entry, frozenset())


def measure(build: Path) -> dict[str, object]:
    sizes = parse_map(build / "footprint.map")
    frames, edges, owner = parse_callgraph(build)
    stacks = {e: worst_stack(e, frames, edges) for e in ENTRY_POINTS}
    deepest: dict[str, int] = {}  # per component: the deepest stack of a call into one of its functions
    for fn, obj in owner.items():
        name = component(obj)
        if name:
            deepest[name] = max(deepest.get(name, 0), worst_stack(fn, frames, edges)[0])
    rows = []
    for name, _ in [*COMPONENTS, ("other", "")]:
        s = sizes.get(name)
        if s:
            rows.append({"component": name, "flash": s["text"] + s["rodata"] + s["data"], "ram": s["data"] + s["bss"],
                         "stack": deepest.get(name, 0), **s})
    worst = max(stacks.items(), key=lambda kv: kv[1][0])
    return {
        "rows": rows,
        "flash": sum(int(r["flash"]) for r in rows),
        "static_ram": sum(int(r["ram"]) for r in rows),
        "stack": worst[1][0],
        "stack_entry": worst[0],
        "stack_path": worst[1][1],
        "stacks": {k: v[0] for k, v in stacks.items()},
    }


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    build = Path(args[0] if args else "build/cm4")
    result = measure(build)
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"OTA MCU library footprint, Cortex-M4, arm-none-eabi-gcc -Os, --gc-sections ({build}/footprint.elf)")
    print(f"{'component':46} {'flash':>7} {'RAM':>6} {'stack':>6}   (text / rodata / data / bss)")
    for r in result["rows"]:  # type: ignore[union-attr]
        parts = f"({r['text']} / {r['rodata']} / {r['data']} / {r['bss']})"
        print(f"{r['component']:46} {r['flash']:7} {r['ram']:6} {r['stack']:6}   {parts}")
    print(f"{'total':46} {result['flash']:7} {result['static_ram']:6}")
    path = " > ".join(result["stack_path"][:8])  # type: ignore[index]
    print(f"worst-case stack: {result['stack']} bytes from {result['stack_entry']} ({path} ...)")
    ram = int(result["static_ram"]) + int(result["stack"])  # type: ignore[call-overload]
    print(f"RAM total (data + bss + worst-case stack): {ram} bytes; the MQTT client's receive buffer (one block "
          f"frame) is the integrator's")
    goal_ok = int(result["flash"]) <= 32 * 1024 and ram <= 8 * 1024  # type: ignore[call-overload]
    print(f"goals flash <= 32768 and RAM <= 8192 (+ one block buffer): {'met' if goal_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
