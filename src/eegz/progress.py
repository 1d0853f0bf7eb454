"""A dependency-free progress bar on stderr (silent when quiet or when stderr is not a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, quiet: bool = False, stream=None):
        self.total, self.label, self.done = max(total, 1), label, 0
        self.stream = stream or sys.stderr
        self.enabled = not quiet and getattr(self.stream, "isatty", lambda: False)()
        self.start = time.monotonic()
        self._last_draw = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        now = time.monotonic()
        if self.enabled and (now - self._last_draw > 0.1 or self.done == self.total):
            self._draw(now, note)

    def _draw(self, now: float, note: str = "") -> None:
        self._last_draw = now
        frac = self.done / self.total
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r{self.label} [{bar:<30}] {100 * frac:5.1f}% {now - self.start:6.1f}s {note}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self):
        if self.enabled:  # show the bar before the first step: a slow first step is not a hang
            self._draw(time.monotonic())
        return self

    def __exit__(self, *exc):
        self.close()
