"""Odd input: files that are not files, headers that lie, links in and out of the watch folder,
time zones with odd rules, dates at the edge of the calendar."""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    DONE,
    ThreadedDaemon,
    dump,
    eventually,
    in_state,
    make_audio,
    read_tracks,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_files_that_are_not_exports_end_invalid_and_stall_nothing(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    for name in ("Empty", "Folder", "Pipe", "Huge", "Good"):
        (exports / f"{name}.yaml").write_text(f"title: {name}\nsharing: public\n")
    (exports / "Empty.wav").write_bytes(b"")
    (exports / "Folder.wav").mkdir()
    os.mkfifo(exports / "Pipe.wav")
    os.mkfifo(exports / "release.yaml")  # a folder default that is a pipe
    # A WAV header that claims ~4 GiB of data, with 1 KiB behind it.
    fmt = struct.pack("<HHIIHH", 1, 2, 44100, 44100 * 4, 4, 16)
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
    header += fmt + b"data" + struct.pack("<I", 0xFFFFFF00)
    (exports / "Huge.wav").write_bytes(header + b"\0" * 1024)
    make_audio(exports / "Good.wav", freq=730)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Good", *DONE), timeout=60, what="the good one")
        settled = eventually(
            lambda: {t.title: t.state for t in read_tracks(state)}.get("Huge") == State.INVALID,
            timeout=20,
        )
        assert settled, dump(state)
        states = {t.title: t.state for t in read_tracks(state)}
    assert len(sandbox.tracks()) == 1
    assert states.get("Empty") == State.INVALID
    # A FIFO named *.wav is not shown at all (the watcher skips non-regular files); nothing
    # hangs, which is what matters. Noted in the report, not asserted.
    assert states.get("Pipe") in (None, State.INVALID)


def test_a_symlinked_folder_to_outside_the_watch_root_publishes_nothing(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    private = tmp_path / "private-projects"
    private.mkdir()
    (private / "Demo.yaml").write_text("title: Demo\nsharing: public\n")
    make_audio(private / "Demo.wav", freq=740)
    (exports / "linked").symlink_to(private, target_is_directory=True)
    (exports / "Fine.yaml").write_text("title: Fine\nsharing: public\n")
    make_audio(exports / "Fine.wav", freq=745)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Fine", *DONE), timeout=60, what="fine released")
        eventually(lambda: in_state(state, "Demo", State.INVALID), timeout=5)
    assert [t["title"] for t in sandbox.tracks()] == ["Fine"], dump(state)


def test_a_sidecar_that_links_outside_the_watch_folder_is_refused_like_audio(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """The audio is inside; its sidecar is a link to a private note elsewhere, whose text would
    become the public description: refused like an audio link."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    notes = tmp_path / "private" / "notes.yaml"
    notes.parent.mkdir()
    notes.write_text("title: Linked\nsharing: public\ndescription: 'PRIVATE: label deal terms'\n")
    (exports / "Linked.yaml").symlink_to(notes)
    make_audio(exports / "Linked.wav", freq=750)
    with ThreadedDaemon(config, token_store):
        eventually(lambda: in_state(state, "Linked", State.INVALID, *DONE), timeout=30)
    leaked = [t for t in sandbox.tracks() if "PRIVATE" in (t.get("description") or "")]
    assert leaked == [], "a sidecar linked from outside the watch folder was published"


# --- time zones (pure: the scheduler only ever sees what localize() returns) -------------------


@pytest.mark.parametrize(
    ("tz", "wall", "not_before_utc"),
    [
        # Lord Howe moves 30 minutes: 02:00 -> 02:30 on 2026-10-04. 02:15 must not be early.
        ("Australia/Lord_Howe", "2026-10-04T02:15", "2026-10-03T15:30"),
        # A POSIX TZ string (no zoneinfo file): Berlin's rules.
        ("CET-1CEST,M3.5.0,M10.5.0/3", "2027-03-28T02:30", "2027-03-28T01:00"),
        # Chile skips midnight: 2026-09-06 00:00 -> 01:00.
        ("America/Santiago", "2026-09-06T00:30", "2026-09-06T04:00"),
    ],
)
def test_gap_times_are_never_early(zone: Any, tz: str, wall: str, not_before_utc: str) -> None:
    from releaseosd.model.localtime import localize

    zone(tz)
    got = localize(dt.datetime.fromisoformat(wall)).astimezone(dt.UTC)
    assert got >= dt.datetime.fromisoformat(not_before_utc).replace(tzinfo=dt.UTC), got


def test_far_dates_in_a_sidecar_give_a_message_not_a_traceback(tmp_path: Path) -> None:
    sidecar = tmp_path / "Far.yaml"
    sidecar.write_text("title: Far\nrelease_at: 9999-12-31T23:59\n")
    env = dict(os.environ, TZ="America/New_York")
    done = subprocess.run(
        [sys.executable, "-m", "releaseosd", "validate", str(sidecar)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-800:]
    assert "Far.yaml:2" in done.stdout + done.stderr
