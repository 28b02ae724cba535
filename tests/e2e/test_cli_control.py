"""The CLI against a running, busy daemon: concurrent commands over the control socket lose no
update, and with no daemon the same commands act on the store directly."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from daemon_harness import (
    ThreadedDaemon,
    daemon_env,
    make_audio,
    read_tracks,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State


def cli(config: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(config), *args],
        env=daemon_env(root),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fifty_concurrent_cli_calls_lose_no_update(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700, exist_ok=True)
    config_path = write_config(tmp_path, sandbox.base_url)
    exports = tmp_path / "exports"
    state = tmp_path / "state"
    far = (dt.datetime.now().astimezone() + dt.timedelta(days=2)).replace(microsecond=0)
    for i in range(10):
        (exports / f"S{i}.yaml").write_text(
            f"title: Sched {i}\nsharing: public\nrelease_at: {far.isoformat()}\n"
        )
        make_audio(exports / f"S{i}.wav", seconds=1.0, freq=250 + 31 * i)
    for _ in range(5):
        sandbox.faults.push(422, body='{"message": "unable to process"}', match="POST /tracks")
    for i in range(5):
        (exports / f"F{i}.yaml").write_text(f"title: Fail {i}\nsharing: public\n")
        make_audio(exports / f"F{i}.wav", seconds=1.0, freq=800 + 29 * i)

    with ThreadedDaemon(config_path, token_store):
        wait_for(
            lambda: (
                (ts := read_tracks(state))
                and len(ts) == 15
                and all(t.state in (State.SCHEDULED, State.FAILED, State.RELEASED) for t in ts)
                and sum(t.state == State.FAILED for t in ts) == 5
            ),
            timeout=60,
            what="10 scheduled and 5 failed",
        )
        tracks = read_tracks(state)
        scheduled = [t for t in tracks if t.state == State.SCHEDULED]
        failed = [t for t in tracks if t.state == State.FAILED]
        # Keep the daemon busy while the CLI calls land: ten more exports arrive.
        for i in range(10):
            (exports / f"B{i}.yaml").write_text(f"title: Busy {i}\nsharing: public\n")
            make_audio(exports / f"B{i}.wav", seconds=1.0, freq=1200 + 23 * i)
        wanted: dict[str, list[str]] = {}
        calls: list[tuple[str, ...]] = []
        for n in range(4):
            for j, track in enumerate(scheduled):
                when = (far + dt.timedelta(hours=n + 1, minutes=j)).isoformat()
                wanted.setdefault(track.id, []).append(when)
                calls.append(("release", track.id, "--at", when))
        calls += [("retry", t.id) for t in failed]
        calls += [("status", "--json")] * (50 - len(calls))
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(lambda args: cli(config_path, tmp_path, *args), calls))
        problems = [
            (c, r.returncode, r.stderr[-300:])
            for c, r in zip(calls, results, strict=True)
            if r.returncode != 0
        ]
        assert problems == []
        for call, result in zip(calls, results, strict=True):
            if call[0] == "status":
                rows = json.loads(result.stdout)
                assert len(rows) >= 15
        wait_for(
            lambda: (
                all(
                    t.state == State.RELEASED
                    for t in read_tracks(state)
                    if t.title.startswith(("Fail", "Busy"))
                )
                and len(read_tracks(state)) == 25
            ),
            timeout=60,
            what="retried and busy tracks released",
        )
    final = {t.id: t for t in read_tracks(state)}
    for track_id, times in wanted.items():
        track = final[track_id]
        notes = [h.note for h in track.history if h.note.startswith("release set to")]
        # Every one of the four updates was applied (none lost), the last one wins.
        assert len(notes) == 4, notes
        assert track.release_at is not None
        assert track.release_at.isoformat() in [
            dt.datetime.fromisoformat(w).isoformat() for w in times
        ]
        assert track.state == State.SCHEDULED
    assert len(sandbox.tracks()) == 25
    assert len(calls) == 50


def test_commands_without_a_daemon_act_on_the_store(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    (tmp_path / "exports" / "A.yaml").write_text("title: Alone\nsharing: private\n")
    make_audio(tmp_path / "exports" / "A.wav", freq=410)
    with ThreadedDaemon(config_path, token_store):
        wait_for(
            lambda: (ts := read_tracks(tmp_path / "state")) and ts[0].state == State.PUBLISHED,
            what="published privately",
        )
    track = read_tracks(tmp_path / "state")[0]
    result = cli(config_path, tmp_path, "release", "Alone", "--at", "2031-01-01T12:00")
    assert result.returncode == 0, result.stderr
    assert "when the daemon runs" in result.stdout
    again = read_tracks(tmp_path / "state")[0]
    assert again.state == State.SCHEDULED and again.release_at is not None
    assert again.release_at.year == 2031
    result = cli(config_path, tmp_path, "retry", "nope-no-such-track")
    assert result.returncode == 1 and "no track matches 'nope-no-such-track'" in result.stderr
    result = cli(config_path, tmp_path, "status", "--json")
    assert json.loads(result.stdout)[0]["id"] == track.id
    result = cli(config_path, tmp_path, "status")
    assert "Alone" in result.stdout and "scheduled" in result.stdout
