"""Benchmark: last byte of a 5-minute WAV written → watcher says "finished".

Budget (issue "Ingest"): stable_seconds + 1 s. Run on demand:
    pytest tests/benchmarks/test_watch_latency_bench.py -p no:cacheprovider -s
"""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import pytest

from releaseosd.model.config import WatchFolder
from releaseosd.pipeline.watch import ExportWatcher

STABLE = 2.0  # the config default
BUDGET = STABLE + 1.0
RATE, CHANNELS, BYTES_PER_SAMPLE = 44100, 2, 2
DATA_BYTES = 5 * 60 * RATE * CHANNELS * BYTES_PER_SAMPLE  # 52.9 MB
CHUNK = 256 * 1024


def wav_header(data_bytes: int) -> bytes:
    block = CHANNELS * BYTES_PER_SAMPLE
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * block, block, 8 * BYTES_PER_SAMPLE)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def header_matches_size(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(8)
    return len(head) == 8 and struct.unpack("<I", head[4:8])[0] + 8 == path.stat().st_size


def render(path: Path) -> float:
    """Write like a DAW rendering offline: header first, audio in chunks, sizes patched last.
    Returns the monotonic time right after the last byte was written and the file closed."""
    chunk = bytes(range(256)) * (CHUNK // 256)
    with path.open("wb") as f:
        f.write(wav_header(0))
        written = 0
        while written < DATA_BYTES:
            n = min(CHUNK, DATA_BYTES - written)
            f.write(chunk[:n])
            written += n
            if written % (4 * CHUNK) == 0:
                f.flush()
                time.sleep(0.05)  # the renderer computing the next block: ~3 s in all
        f.seek(0)
        f.write(wav_header(DATA_BYTES))
    return time.monotonic()


@pytest.mark.benchmark
@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_last_byte_to_ready_latency(tmp_path: Path, polling: bool) -> None:
    ready: dict[Path, float] = {}
    calls: list[float] = []
    asked = threading.Event()

    def on_stable(path: Path) -> bool:
        calls.append(time.monotonic())
        if not header_matches_size(path):  # what the ingest does; must not be needed here
            return False
        ready.setdefault(path, time.monotonic())
        asked.set()
        return True

    watcher = ExportWatcher(
        [WatchFolder(path=tmp_path, polling=polling)],
        stable_seconds=STABLE,
        on_stable=on_stable,
        on_gone=lambda path: None,
    )
    watcher.start()
    try:
        wav = tmp_path / "five-minutes.wav"
        started = time.monotonic()
        last_byte = render(wav)
        write_seconds = last_byte - started
        assert asked.wait(STABLE + 30), "never reported"
    finally:
        watcher.stop()
    latency = ready[wav] - last_byte
    mode = "polling" if polling else "inotify"
    print(
        f"\n[watch latency, {mode}] {DATA_BYTES / 1e6:.1f} MB written in {write_seconds:.2f} s; "
        f"last byte → ready {latency:.3f} s (stable_seconds {STABLE:.1f} + {latency - STABLE:.3f}); "
        f"ratio to budget stable_seconds+1 = {latency / BUDGET:.3f}"
    )
    assert len(calls) == 1, f"asked {len(calls)} times: once while the file was still being written"
    assert latency >= STABLE, "reported before the file had been stable for stable_seconds"
    assert latency <= BUDGET
