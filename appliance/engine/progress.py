"""Progress of a build: a live line per step on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._label = ""
        self._start = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._write(f"{self._label} ... {time.monotonic() - self._start:.0f}s", False)

    def start(self, index: int, label: str) -> None:
        self._label = f"[{index}/{self.total}] {label}"
        self._start = time.monotonic()
        if self.tty:
            self._write(self._label + " ...", False)
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        else:
            self._write(self._label + " ...", True)

    def finish(self, status: str) -> float:
        elapsed = time.monotonic() - self._start
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        self._write(f"{self._label}: {status} in {elapsed:.1f}s", True)
        return elapsed

    def cached(self, index: int, label: str) -> None:
        self._write(f"[{index}/{self.total}] {label}: cached", True)

    def note(self, text: str) -> None:
        self._write(text, True)
