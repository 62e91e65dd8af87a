"""Checks for the OS packages the local stack and benchmarks need, and installs them where it can.

mosquitto (and mosquitto_sub) stand in for AWS IoT Core; zstd and xdelta3 are only compared against in
benchmarks; npm, chromium and chromium-driver serve the web console (its toolkit, its browser tests).
As root on a Debian/Ubuntu machine the missing ones are installed with apt-get; elsewhere
this prints exactly what to run and exits non-zero when a required one is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

REQUIRED = {"mosquitto": "mosquitto", "mosquitto_sub": "mosquitto-clients"}
OPTIONAL = {"zstd": "zstd", "xdelta3": "xdelta3"}
# the web console: npm installs its pinned toolkit (web/package-lock.json); the browser tests drive Chromium
OPTIONAL.update({"npm": "npm", "chromium": "chromium", "chromedriver": "chromium-driver"})
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
MCU_PROGRAMS = {"cc": "gcc", "make": "make", "arm-none-eabi-gcc": "gcc-arm-none-eabi",
                "qemu-system-arm": "qemu-system-arm"}
MCU_FILES = {"/usr/lib/arm-none-eabi/newlib/libc.a": "libnewlib-arm-none-eabi",
             "/usr/include/mosquitto.h": "libmosquitto-dev", "/usr/include/stdio.h": "libc6-dev"}


def find_program(name: str) -> str | None:
    """Return the path of an executable, looking in sbin directories too (mosquitto lives there)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _mcu_missing() -> list[str]:
    missing = {pkg for prog, pkg in MCU_PROGRAMS.items() if not find_program(prog)}
    missing |= {pkg for path, pkg in MCU_FILES.items() if not os.path.exists(path)}
    return sorted(missing)


def _apt_install(packages: list[str], *options: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    update = subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
    if update.returncode != 0:
        return False
    done = subprocess.run(["apt-get", "install", "-y", "-qq", *options, *packages], env=env, capture_output=True)
    return done.returncode == 0


def main() -> int:
    missing = sorted({pkg for prog, pkg in {**REQUIRED, **OPTIONAL}.items() if not find_program(prog)})
    if missing:
        print(f"installing OS packages: {' '.join(missing)}", file=sys.stderr)
        _apt_install(missing)
    if _mcu_missing():
        print(f"installing OS packages for mcu/: {' '.join(_mcu_missing())}", file=sys.stderr)
        _apt_install(_mcu_missing(), "--no-install-recommends")
    still = sorted({pkg for prog, pkg in REQUIRED.items() if not find_program(prog)})
    if _mcu_missing():
        print(f"error: missing {' '.join(_mcu_missing())} (the MCU library's build and tests); install with "
              f"'sudo apt-get install --no-install-recommends {' '.join(_mcu_missing())}'", file=sys.stderr)
        return 1
    if still:
        print(
            f"error: missing {' '.join(still)}; install with 'sudo apt-get install {' '.join(still)}' "
            f"(Debian/Ubuntu) or 'brew install mosquitto' (macOS)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
