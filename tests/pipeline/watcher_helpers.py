"""Helpers for the watcher's tests: deadlines, WAV bytes, and a callback recorder."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from releaseosd.pipeline.watch import ExportWatcher

STABLE = 0.4  # short, so the tests stay fast; the benchmark uses the real default
DEADLINE = 15.0  # generous: only a broken watcher ever waits this long


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def wav_header(data_bytes: int, channels: int = 2, rate: int = 44100, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def write_wav(path: Path, data_bytes: int = 4000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_header(data_bytes) + b"\0" * data_bytes)
    return path


@dataclass
class Recorder:
    """The watcher's callbacks, recording what was called when, and checking the threading rules."""

    answers: dict[Path, list[bool]] = field(default_factory=dict)  # queued answers per path
    raises: set[Path] = field(default_factory=set)
    stable: list[tuple[Path, float]] = field(default_factory=list)
    gone: list[tuple[Path, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _busy: int = 0

    def _enter(self) -> None:
        with self._lock:
            self._busy += 1
            if self._busy > 1:
                self.problems.append("callbacks ran concurrently")
        name = threading.current_thread().name
        if name != "releaseosd-watcher":
            self.problems.append(f"callback ran on thread {name!r}")

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1

    def on_stable(self, path: Path) -> bool:
        self._enter()
        try:
            with self._lock:
                self.stable.append((path, time.monotonic()))
                queued = self.answers.get(path)
                answer = queued.pop(0) if queued else True
            if path in self.raises:
                raise RuntimeError(f"ingest blew up on {path.name}")
            return answer
        finally:
            self._leave()

    def on_gone(self, path: Path) -> None:
        self._enter()
        try:
            with self._lock:
                self.gone.append((path, time.monotonic()))
        finally:
            self._leave()

    def stable_paths(self) -> list[Path]:
        with self._lock:
            return [p for p, _ in self.stable]

    def gone_paths(self) -> list[Path]:
        with self._lock:
            return [p for p, _ in self.gone]

    def count(self, path: Path) -> int:
        return self.stable_paths().count(path)

    def first_report(self, path: Path) -> float:
        with self._lock:
            return next(t for p, t in self.stable if p == path)

    def wait_reported(self, *paths: Path, times: int = 1, timeout: float = DEADLINE) -> None:
        wait_until(
            lambda: all(self.count(p) >= times for p in paths),
            timeout,
            f"{[p.name for p in paths]} reported {times}x (got {self.stable_paths()})",
        )

    def wait_gone(self, path: Path, timeout: float = DEADLINE) -> None:
        wait_until(lambda: path in self.gone_paths(), timeout, f"{path.name} reported gone")


MakeWatcher = Callable[..., ExportWatcher]
"""The make_watcher fixture: make_watcher([folder, ...], polling=False, start=True, **kwargs)."""
