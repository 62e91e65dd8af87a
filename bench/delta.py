"""Delta benchmark: our `make_delta` against `zstd --patch-from`, `xdelta3 -9` and detools on real binaries.

    .venv/bin/python -m bench.delta          (or: make bench-delta)

Downloads consecutive releases of compiled wheels from PyPI with `pip download` into `.bench-cache/`
(git-ignored), extracts the native `.so` of each, and measures in one run, per pair: our patch size
and the chosen encoding, the other tools' patch sizes, the full compressed package, our size divided
by each other tool's and by the best of them, and the build cost against bsdiff4's on the same pair,
each in a child process: CPU (user + system) and peak memory (VmHWM, reset once the inputs are
loaded, minus the RSS at that moment) over the image size. Then the issue-12 goals per pair: size <=
the best other tool, CPU <= 2x bsdiff4, memory <= 4x the image from 1 MB. A second table compares
payload compressors on the same libraries (the measurement behind the default `--compression zstd`).
Not a test: prints figures, asserts nothing.
"""

from __future__ import annotations

import json
import lzma
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-cache"
WHEEL_TAGS = ["--python-version", "3.11", "--platform", "manylinux_2_17_x86_64"]
PAIRS = [
    ("orjson", "3.10.0", "3.10.1"),
    ("orjson", "3.10.1", "3.10.2"),
    ("msgpack", "1.0.7", "1.0.8"),
    ("pydantic-core", "2.18.1", "2.18.2"),
    ("tokenizers", "0.15.1", "0.15.2"),  # 12 MB
]

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import bsdiff4
from otaformat import hdiffmatch
from otaformat.delta import apply_delta, make_delta

hdiffmatch.available()  # load the matcher's library before the baseline, like bsdiff4's

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

base, target = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes()
loaded = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
t0, c0 = time.perf_counter(), cpu()
if sys.argv[3] == "make":
    encoding, patch = make_delta(base, target)
    Path(sys.argv[4]).write_bytes(patch)
    Path(sys.argv[4] + ".enc").write_text(encoding)
elif sys.argv[3] == "bsdiff4":
    patch = bsdiff4.diff(base, target)
else:
    patch = Path(sys.argv[4]).read_bytes()
    assert apply_delta(Path(sys.argv[4] + ".enc").read_text(), base, patch, len(target)) == target
seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu_s, "loaded_kb": loaded, "peak_kb": status("VmHWM")}))
"""


def fetch(project: str, version: str) -> bytes:
    """The native library of one wheel, downloaded once into .bench-cache/."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    stem = project.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    if not found:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            *WHEEL_TAGS, "-d", str(wheels), f"{project}=={version}"], check=True)
        except subprocess.CalledProcessError as err:
            raise SystemExit(f"bench.delta: cannot download {project}=={version} from the package index") from err
        found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    with zipfile.ZipFile(found[0]) as wheel:
        libs = sorted((i for i in wheel.infolist() if i.filename.endswith(".so")), key=lambda i: -i.file_size)
        return wheel.read(libs[0])


def _child(base: Path, target: Path, mode: str, patch: Path) -> dict:
    env_path = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(base), str(target), mode, str(patch)],
                          capture_output=True, text=True, check=True, cwd=env_path,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    return json.loads(proc.stdout)


def _tool_sizes(base: Path, target: Path, work: Path) -> dict[str, int | None]:
    sizes: dict[str, int | None] = {}
    window = max(10, min(31, (base.stat().st_size + target.stat().st_size).bit_length()))
    if shutil.which("zstd"):
        out = work / "p.zst"
        subprocess.run(["zstd", "-q", "-f", "-19", f"--long={window}", f"--patch-from={base}", str(target),
                        "-o", str(out)], check=True, capture_output=True)
        sizes["zstd --patch-from -19 --long"] = out.stat().st_size
    if shutil.which("xdelta3"):
        out = work / "p.xd3"
        subprocess.run(["xdelta3", "-f", "-e", "-9", "-s", str(base), str(target), str(out)], check=True)
        sizes["xdelta3 -9"] = out.stat().st_size
    try:
        import detools  # type: ignore[import-not-found]

        out = work / "p.detools"
        with base.open("rb") as fb, target.open("rb") as ft, out.open("wb") as fp:
            detools.create_patch(fb, ft, fp, compression="lzma", algorithm="hdiffpatch", patch_type="hdiffpatch")
        sizes["detools hdiffpatch+lzma"] = out.stat().st_size
    except ImportError:
        sizes["detools hdiffpatch+lzma"] = None
    return sizes


def _package_sizes(base: bytes, target: bytes, name: str, old: str, new: str) -> tuple[int, int]:
    """(full zstd package of the target, our delta package) with a throwaway key."""
    from otaformat.build import BuildSpec, SourceFile, build_delta, build_full
    from otaformat.container import verify_package
    from otaformat.signing import generate_key, key_id

    key = generate_key()
    trusted = {key_id(key.public_key()): key.public_key()}
    app = name.replace("_", "-")
    spec = BuildSpec(app=app, version=old, models=("bench",), created="2026-01-01T00:00:00Z",
                     expires="2030-01-01T00:00:00Z")
    full_old = build_full(spec, [SourceFile("lib.so", base, True)], key)
    full_new = build_full(BuildSpec(**{**spec.__dict__, "version": new}), [SourceFile("lib.so", target, True)], key)
    delta = build_delta(verify_package(full_old, trusted), verify_package(full_new, trusted), key,
                        created="2026-01-01T00:00:00Z")
    return len(full_new), len(delta)


TOOLS = ["zstd --patch-from -19 --long", "xdelta3 -9", "detools hdiffpatch+lzma"]
CPU_GOAL, MEMORY_GOAL, MEMORY_GOAL_FROM = 2.0, 4.0, 1_000_000  # build CPU / bsdiff4's; peak / image from 1 MB


def delta_table() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for project, old, new in PAIRS:
            base_bytes, target_bytes = fetch(project, old), fetch(project, new)
            base, target, patch = work / "base", work / "target", work / "patch"
            base.write_bytes(base_bytes)
            target.write_bytes(target_bytes)
            made = _child(base, target, "make", patch)
            applied = _child(base, target, "apply", patch)
            bsdiff = _child(base, target, "bsdiff4", patch)
            ours = patch.stat().st_size
            others = _tool_sizes(base, target, work)
            best_name, best = min(((k, v) for k, v in others.items() if v), key=lambda kv: kv[1])
            full_pkg, delta_pkg = _package_sizes(base_bytes, target_bytes, project, old, new)
            image = len(target_bytes)
            rows.append({
                "pair": f"{project} {old}->{new}", "image": image, "encoding": Path(str(patch) + ".enc").read_text(),
                "ours": ours, "delta_package": delta_pkg, **others, "full_package": full_pkg,
                "vs": {k: (ours / v if v else None) for k, v in others.items()},
                "best_other": best_name, "ratio_best": ours / best,
                "build_s": made["seconds"], "build_cpu_s": made["cpu"], "bsdiff4_cpu_s": bsdiff["cpu"],
                "cpu_x_bsdiff4": made["cpu"] / max(bsdiff["cpu"], 1e-6),
                "build_extra_mb": (made["peak_kb"] - made["loaded_kb"]) / 1024,
                "build_extra_x_image": (made["peak_kb"] - made["loaded_kb"]) * 1024 / image,
                "bsdiff4_extra_x_image": (bsdiff["peak_kb"] - bsdiff["loaded_kb"]) * 1024 / image,
                "apply_s": applied["seconds"], "apply_extra_mb": (applied["peak_kb"] - applied["loaded_kb"]) / 1024,
            })
    return rows


def _verdicts(r: dict) -> str:
    size = "ok" if r["ratio_best"] <= 1.0 else f"MISS {100 * (r['ratio_best'] - 1):.1f}%"
    cpu = "ok" if r["cpu_x_bsdiff4"] <= CPU_GOAL else "MISS"
    if r["image"] < MEMORY_GOAL_FROM:
        mem = "n/a (< 1 MB)"
    else:
        mem = "ok" if r["build_extra_x_image"] <= MEMORY_GOAL else "MISS"
    return f"size {size}, cpu {cpu}, mem {mem}"


def print_delta_table(rows: list[dict]) -> None:
    print("| pair | image | ours (encoding) | delta pkg | " + " | ".join(TOOLS)
          + " | full pkg | ours / each (zstd, xdelta3, detools) | ours / best other | build s (CPU s)"
          + " | CPU x bsdiff4 | peak MB (x image) | bsdiff4 x image | apply s | goals |")
    print("|---" * (13 + len(TOOLS)) + "|")
    for r in rows:
        others = " | ".join("n/a" if r.get(t) is None else str(r[t]) for t in TOOLS)
        each = " / ".join("n/a" if r["vs"].get(t) is None else f"{r['vs'][t]:.3f}" for t in TOOLS)
        print(f"| {r['pair']} | {r['image']} | {r['ours']} ({r['encoding']}) | {r['delta_package']} | {others} | "
              f"{r['full_package']} | {each} | {r['ratio_best']:.3f} ({r['best_other'].split()[0]}) | "
              f"{r['build_s']:.2f} ({r['build_cpu_s']:.2f}) | {r['cpu_x_bsdiff4']:.2f} | "
              f"{r['build_extra_mb']:.1f} ({r['build_extra_x_image']:.1f}x) | {r['bsdiff4_extra_x_image']:.1f}x | "
              f"{r['apply_s']:.3f} | {_verdicts(r)} |")
    large = [r for r in rows if r["image"] >= MEMORY_GOAL_FROM]
    print(f"\nworst ours / best other: {max(r['ratio_best'] for r in rows):.3f} (goal <= 1.00); "
          f"worst build CPU {max(r['cpu_x_bsdiff4'] for r in rows):.2f}x bsdiff4 (goal <= {CPU_GOAL}); "
          f"worst build memory from 1 MB {max((r['build_extra_x_image'] for r in large), default=0):.1f}x image "
          f"(goal <= {MEMORY_GOAL}x)")


def compression_table() -> list[dict]:
    rows = []
    for project, _, new in PAIRS[1:]:
        data = fetch(project, new)
        variants = {
            "zstd -3": lambda d: zstandard.ZstdCompressor(level=3).compress(d),
            "zstd -9": lambda d: zstandard.ZstdCompressor(level=9).compress(d),
            "zstd -19 (default)": lambda d: zstandard.ZstdCompressor(level=19).compress(d),
            "zstd -22 --ultra": lambda d: zstandard.ZstdCompressor(level=22).compress(d),
            "xz -6": lambda d: lzma.compress(d, preset=6),
            "xz -9e": lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME),
        }
        for name, fn in variants.items():
            t0 = time.perf_counter()
            packed = fn(data)
            t1 = time.perf_counter()
            if name.startswith("zstd"):
                zstandard.ZstdDecompressor().decompress(packed)
            else:
                lzma.decompress(packed)
            t2 = time.perf_counter()
            rows.append({"lib": f"{project} {new}", "codec": name, "raw": len(data), "packed": len(packed),
                         "ratio": len(packed) / len(data), "compress_s": t1 - t0, "decompress_ms": (t2 - t1) * 1000})
    return rows


def main() -> int:
    rows = delta_table()
    print_delta_table(rows)
    comp = compression_table()
    print("\n| library | codec | raw | packed | ratio | compress s | decompress ms |")
    print("|---|---|---|---|---|---|---|")
    for c in comp:
        print(f"| {c['lib']} | {c['codec']} | {c['raw']} | {c['packed']} | {c['ratio']:.3f} | "
              f"{c['compress_s']:.2f} | {c['decompress_ms']:.1f} |")
    CACHE.mkdir(exist_ok=True)
    (CACHE / "delta-results.json").write_text(json.dumps({"delta": rows, "compression": comp}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
