"""Benchmark: the store with 100 and with 10 000 finished tracks.

Measured at each size, on a store migrated from the schema-2 file a catalogue of that size had
(released tracks with six history entries each, and three active ones):

- one state change, median ms over 30: of a finished track (an append to the archive), of an
  active one (store.json rewritten), and of a move between the two;
- `releaseosd status --json` as a CLI subprocess, median s over 7, without a daemon (reading
  the files) and with one running (over the control socket);
- a daemon's start-up to READY (the "releaseosd running" line);
- and that the daemon's start and the status calls wrote none of the store's three files.

The CLI runs with a bytecode cache, as an installed releaseosd does (this environment sets
PYTHONDONTWRITEBYTECODE, which would make every run compile the package again: that figure is
printed too, cold). Goals (issue 11): one state change ≤ 20 ms and status --json ≤ 0.5 s at
10 000 tracks, about as at 100. Run:
    pytest tests/benchmarks/test_store_bench.py -p no:cacheprovider -s
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from daemon_harness import daemon_env

from releaseosd.model.states import State
from releaseosd.model.store import (
    ARCHIVE_FILE,
    HISTORY_FILE,
    STORE_FILE,
    AtomicJSONStorage,
    Store,
)
from releaseosd.model.track import AudioStat, HistoryEntry, Track

pytestmark = pytest.mark.benchmark

CHANGE_BUDGET_MS = 20.0
STATUS_BUDGET_S = 0.5
READY_BUDGET_S = 3.0
FLAT = 4.0  # a change at 10 000 tracks costs at most this many times one at 100
ACTIVE = 3


def v2_catalogue(state: Path, count: int) -> None:
    """The schema-2 store.json of `count` released tracks (and ACTIVE failed ones)."""
    state.mkdir(parents=True, mode=0o700)
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    docs: dict[str, Any] = {}
    for i in range(count + ACTIVE):
        audio = f"/music/exports/Track {i:05d}.wav"  # not watched: the daemon leaves them be
        digest = hashlib.sha256(audio.encode()).hexdigest()
        released = i < count
        track = Track(
            title=f"Track {i}",
            audio_path=audio,
            watch_root="/music/exports",
            sha256=digest,
            audio_digest=digest,
            audio_stat=AudioStat(size=176444, mtime_ns=17 * 10**17 + i, inode=10**6 + i, device=1),
            sidecar={"title": f"Track {i}", "genre": "Techno", "sharing": "public"},
            sidecar_digest=digest[:32],
            sidecar_path=audio[:-4] + ".yaml",
            metadata={"title": f"Track {i}", "genre": "Techno", "sharing": "public"},
            state=State.RELEASED if released else State.FAILED,
            last_error=None if released else "HTTP 500 from SoundCloud",
            created_at=created + dt.timedelta(seconds=i),
            history=[
                HistoryEntry(at=created, state=s)
                for s in ("pending", "building", "ready", "uploading", "processing")
            ]
            + [HistoryEntry(at=created, state=State.RELEASED if released else State.FAILED)],
        )
        if released:
            track.soundcloud.urn = f"soundcloud:tracks:{1000 + i}"
            track.soundcloud.permalink_url = f"https://soundcloud.com/nova/track-{i}"
            track.soundcloud.sharing = "public"
            track.soundcloud.sha256 = digest
        docs[str(i + 1)] = track.model_dump(mode="json")
    AtomicJSONStorage(state / STORE_FILE).write(
        {"tracks": docs, "meta": {"1": {"schema_version": 2}}}
    )


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def timed(action: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - started


def state_changes(state: Path, count: int) -> dict[str, float]:
    store = Store.open(state)
    finished = [t.id for t in store.in_states(State.RELEASED)]
    picks = [finished[i * (len(finished) - 1) // 29] for i in range(30)]
    active = store.in_states(State.FAILED)[0].id
    out: dict[str, list[float]] = {"finished": [], "active": [], "move": []}
    for track_id in picks:
        out["finished"].append(timed(store.transition, track_id, State.PUBLISHED))
    store.transition(active, State.INVALID)
    for i in range(30):
        to = State.PENDING if i % 2 == 0 else State.INVALID
        out["active"].append(timed(store.transition, active, to, note="edited"))
    for track_id in picks[:15]:
        # Published → scheduled (back into store.json) → published (into the archive again).
        out["move"].append(timed(store.transition, track_id, State.SCHEDULED))
        out["move"].append(timed(store.transition, track_id, State.PUBLISHED))
    assert len(store.all()) == count + ACTIVE
    store.close()
    return {kind: median_ms(times) for kind, times in out.items()}


def cli_env(root: Path, cached: bool) -> dict[str, str]:
    env = daemon_env(root)
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def status_json(config: Path, root: Path, expected: int, runs: int = 7) -> float:
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "status", "--json"],
            env=cli_env(root, cached=True), capture_output=True, timeout=60,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        assert done.returncode == 0, done.stderr.decode()[-500:]
        if i == 0:
            assert len(json.loads(done.stdout)) == expected
            continue  # the first run fills the bytecode cache
        times.append(elapsed)
    return statistics.median(times)


def cold_status(config: Path, root: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "status", "--json"],
        env=cli_env(root, cached=False), capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def stamp(state: Path) -> list[tuple[int, int, int]]:
    return [
        (st.st_ino, st.st_size, st.st_mtime_ns)
        for st in (os.stat(state / n) for n in (STORE_FILE, ARCHIVE_FILE, HISTORY_FILE))
    ]


class RunningDaemon:
    def __init__(self, root: Path, config: Path) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "run"],
            env=daemon_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.ready = threading.Event()
        self.ready_after = 0.0
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(120), f"the daemon never got ready: {self.errors}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "releaseosd running" in line and not self.ready.is_set():
                self.ready_after = time.monotonic() - self.started
                self.ready.set()
            if "Traceback" in line or "ERROR" in line:
                self.errors.append(line)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def measure(root: Path, count: int) -> dict[str, float]:
    state, exports = root / "state", root / "exports"
    exports.mkdir(parents=True)
    v2_catalogue(state, count)
    figures = {"migrate": timed(lambda: Store.open(state).close())}
    figures.update(state_changes(state, count))
    config = root / "config.yaml"
    config.write_text(f"watch:\n  - path: {exports}\nstable_seconds: 0.5\nstate_dir: {state}\n")
    before = stamp(state)
    figures["status_files"] = status_json(config, root, count + ACTIVE)
    figures["status_cold"] = cold_status(config, root)
    daemon = RunningDaemon(root, config)
    try:
        figures["ready"] = daemon.ready_after
        figures["status_daemon"] = status_json(config, root, count + ACTIVE)
    finally:
        daemon.stop()
    assert daemon.errors == []
    figures["wrote"] = float(stamp(state) != before)
    figures["store_mb"] = sum((state / n).stat().st_size for n in (STORE_FILE, ARCHIVE_FILE, HISTORY_FILE)) / 1e6  # fmt: skip
    return figures


def test_store_costs_stay_flat_from_100_to_10000_finished_tracks(tmp_path: Path) -> None:
    small = measure(tmp_path / "small", 100)
    large = measure(tmp_path / "large", 10_000)
    rows = (
        ("one change, finished track", "finished", "ms", 1),
        ("one change, active track", "active", "ms", 1),
        ("one change, a move", "move", "ms", 1),
        ("status --json, no daemon", "status_files", "s", 3),
        ("status --json, daemon", "status_daemon", "s", 3),
        ("  (no daemon, no .pyc)", "status_cold", "s", 3),
        ("start-up to READY", "ready", "s", 2),
        ("migration from v2", "migrate", "s", 2),
        ("store files", "store_mb", "MB", 1),
    )
    lines = [f"\n{'':30} {'100 tracks':>12} {'10 000':>12} {'ratio':>7}"]
    for label, key, unit, digits in rows:
        lines.append(
            f"{label:30} {small[key]:>9.{digits}f} {unit:2} {large[key]:>9.{digits}f} {unit:2}"
            f" {large[key] / small[key]:>6.1f}x"
        )
    lines.append(f"{'store files written by start-up or status':42} {'no' if not small['wrote'] + large['wrote'] else 'YES'}")  # fmt: skip
    print("\n".join(lines))
    for figures in (small, large):
        for kind in ("finished", "active", "move"):
            assert figures[kind] <= CHANGE_BUDGET_MS, (kind, figures)
        assert figures["status_files"] <= STATUS_BUDGET_S, figures
        assert figures["status_daemon"] <= STATUS_BUDGET_S, figures
        assert figures["ready"] <= READY_BUDGET_S, figures
        assert not figures["wrote"], "a start-up or a status wrote to the store"
    assert large["finished"] <= FLAT * max(small["finished"], 1.0)
