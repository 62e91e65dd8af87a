"""Progress of long `ota-pack` steps on stderr: a tqdm bar on a terminal, nothing otherwise.

`Progress(desc)` is a context manager. Steps that report a fraction (the delta build) call it with
0..1; steps that cannot (compressing a full package) just run inside it: a thread keeps the bar's
elapsed time moving so the command is never silent on a terminal. Off a terminal (pipes, CI) it
prints nothing, so scripted output stays clean.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

_STEPS = 1000


class Progress:
    def __init__(self, desc: str, stream: TextIO | None = None, *, fractions: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._desc = desc
        self._format = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}" if fractions else "{desc}... {elapsed}"
        self._bar: tqdm | None = None
        self._done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if getattr(self._stream, "isatty", lambda: False)():
            self._bar = tqdm(total=_STEPS, desc=self._desc, file=self._stream, leave=False,
                             bar_format=self._format)
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __call__(self, fraction: float) -> None:
        """Move the bar to `fraction` (0..1) of the work; never backwards."""
        if self._bar is None:
            return
        step = min(_STEPS, max(0, int(fraction * _STEPS)))
        with self._lock:
            if step > self._done:
                self._bar.update(step - self._done)
                self._done = step

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()
