"""Benchmark: start-up with a catalogue of unchanged tracks in the store and on disk.

Measured on the real daemon (a child process, as the service runs it): seconds to READY (the
"releaseosd running" line, logged right after systemd's READY=1), seconds until every export found
at start has been looked at (the watcher's "Start-up scan done" line), bytes the process read
(/proc/PID/io rchar: audio read again would show as the catalogue's size), and whether the store's
files were written at all. Baseline: the same daemon on an empty store and folder, in the same run.

Goals (issue 10): 1 000 unchanged tracks → READY ≤ 3 s, no store write, no audio read. Run:
    pytest tests/benchmarks/test_startup_bench.py -p no:cacheprovider -s
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from daemon_harness import daemon_env

from releaseosd.model.sidecar import load_sidecar
from releaseosd.model.states import State
from releaseosd.model.store import ARCHIVE_FILE, HISTORY_FILE, STORE_FILE, AtomicJSONStorage, Store
from releaseosd.model.track import AudioStat, HistoryEntry, Track
from releaseosd.pipeline.ingest import sidecar_digest

pytestmark = pytest.mark.benchmark

RATE, CHANNELS, SECONDS = 44100, 2, 1.0
READY_BUDGET = 3.0


def wav(rng: random.Random) -> bytes:
    frames = int(RATE * SECONDS)
    data = rng.randbytes(frames * CHANNELS * 2)
    block = CHANNELS * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * block, block, 16)
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def catalogue(root: Path, count: int) -> Path:
    """`count` released tracks: exports and sidecars on disk, and the records a daemon keeps for
    them (written in one go, as a store of that size is)."""
    exports, state = root / "exports", root / "state"
    exports.mkdir(parents=True)
    state.mkdir(mode=0o700)
    rng = random.Random(count)
    docs: dict[str, Any] = {}
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(count):
        audio = exports / f"Track {i:04d}.wav"
        audio.write_bytes(wav(rng))
        sidecar = audio.with_suffix(".yaml")
        sidecar.write_text(f"title: Track {i}\ngenre: Techno\nsharing: public\n")
        digest = hashlib.sha256(audio.read_bytes()).hexdigest()
        values = load_sidecar(sidecar, watch_root=exports)
        track = Track(
            title=f"Track {i}",
            audio_path=str(audio),
            watch_root=str(exports),
            sha256=digest,
            audio_digest=digest,
            audio_stat=AudioStat.of(os.stat(audio)),
            sidecar=values.model_dump(mode="json", exclude_unset=True),
            sidecar_digest=sidecar_digest(sidecar, None),
            sidecar_path=str(sidecar),
            metadata={"title": f"Track {i}", "genre": "Techno", "sharing": "public"},
            state=State.RELEASED,
            created_at=created,
            history=[
                HistoryEntry(at=created, state=s)
                for s in ("pending", "building", "ready", "uploading", "processing", "released")
            ],
        )
        track.soundcloud.urn = f"soundcloud:tracks:{1000 + i}"
        track.soundcloud.permalink_url = f"http://sandbox/track-{i}"
        track.soundcloud.sharing = "public"
        track.soundcloud.sha256 = digest
        docs[str(i + 1)] = track.model_dump(mode="json")
    AtomicJSONStorage(state / STORE_FILE).write(
        {"tracks": docs, "meta": {"1": {"schema_version": 2}}}
    )
    Store.open(state).close()  # migrated to the current schema before the daemon's first start
    config = root / "config.yaml"
    config.write_text(
        f"watch:\n  - path: {exports}\nstable_seconds: 0.5\nstate_dir: {state}\n", encoding="utf-8"
    )
    return config


def start_up(root: Path, config: Path) -> dict[str, float]:
    """Start the daemon, wait for READY and for its start-up scan, then stop it."""
    env = daemon_env(root)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            now = time.monotonic() - started
            if "releaseosd running" in line:
                seen.setdefault("ready", now)
            if "Start-up scan done" in line:
                seen.setdefault("scanned", now)
                done.set()
            if "Traceback" in line or "ERROR" in line:
                seen.setdefault("error", now)
                print(line, end="")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert done.wait(120), "the start-up scan never finished"
        io = Path(f"/proc/{process.pid}/io").read_text()
        seen["rchar"] = float(
            next(ln.split()[1] for ln in io.splitlines() if ln.startswith("rchar"))
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert "error" not in seen
    return seen


@pytest.mark.parametrize("count", [100, 1000])
def test_start_up_with_unchanged_tracks(tmp_path: Path, count: int) -> None:
    empty = catalogue(tmp_path / "empty", 0)
    full = catalogue(tmp_path / "full", count)
    state = tmp_path / "full" / "state"
    files = [state / name for name in (STORE_FILE, ARCHIVE_FILE, HISTORY_FILE)]
    before = [(f.stat().st_ino, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    store_size = sum(f.stat().st_size for f in files)
    baseline = start_up(tmp_path / "empty", empty)
    measured = start_up(tmp_path / "full", full)
    after = [(f.stat().st_ino, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    audio_bytes = sum(p.stat().st_size for p in (tmp_path / "full" / "exports").glob("*.wav"))
    extra_read = measured["rchar"] - baseline["rchar"]
    print(
        f"\n{count} unchanged tracks vs an empty store (same run):"
        f"\n  READY         {measured['ready']:.2f} s vs {baseline['ready']:.2f} s "
        f"({measured['ready'] / baseline['ready']:.2f}x)"
        f"\n  scan done     {measured['scanned']:.2f} s vs {baseline['scanned']:.2f} s "
        f"({measured['scanned'] / baseline['scanned']:.2f}x)"
        f"\n  bytes read    +{extra_read / 1e6:.1f} MB over the baseline "
        f"(store {store_size / 1e6:.1f} MB; the audio is {audio_bytes / 1e6:.1f} MB: "
        f"{extra_read / audio_bytes:.3f} of it)"
        f"\n  store written {'no' if after == before else 'YES'}"
    )
    assert after == before, "a start-up with nothing changed wrote to the store"
    assert measured["ready"] <= READY_BUDGET
    # Reading the store and the sidecars is expected; reading the audio again is not.
    assert extra_read < 0.1 * audio_bytes + 4 * store_size
