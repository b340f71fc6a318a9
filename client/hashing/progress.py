"""A progress line on a terminal, and nothing at all anywhere else.

:class:`ProgressBar` is a thread-safe :data:`client.hashing.hashing.Progress`
callback. It draws only when its stream is a TTY (never on a pipe or file) and
only once the operation has run for ``delay`` seconds (default 1 s), redrawing
at most ten times a second from its own thread; :meth:`close` erases the line.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(n: float) -> str:
    for unit in _UNITS:
        if n < 1024 or unit == _UNITS[-1]:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressBar:
    """Counts bytes and files; draws ``hashed 1.2 GiB, 3 files, 850 MiB/s [ 42%]`` on a TTY."""

    def __init__(self, stream: TextIO, *, total_bytes: int | None = None, delay: float = 1.0) -> None:
        self._stream = stream
        self._total = total_bytes
        self._delay = delay
        self._lock = threading.Lock()
        self._bytes = 0
        self._files = 0
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._drawn = False
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()

    def __call__(self, nbytes: int, nfiles: int) -> None:
        with self._lock:
            self._bytes += nbytes
            self._files += nfiles

    @property
    def drawn(self) -> bool:
        """Whether the bar has been drawn at least once."""
        return self._drawn

    def line(self) -> str:
        with self._lock:
            b, f = self._bytes, self._files
        elapsed = max(time.monotonic() - self._start, 1e-9)
        text = f"hashed {human(b)}, {f} files, {human(b / elapsed)}/s"
        if self._total:
            text += f" [{min(100, 100 * b // self._total):3d}%]"
        return text

    def _run(self) -> None:
        if self._stop.wait(self._delay):
            return
        while not self._stop.is_set():
            self._stream.write("\r\x1b[K" + self.line())
            self._stream.flush()
            self._drawn = True
            self._stop.wait(0.1)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
