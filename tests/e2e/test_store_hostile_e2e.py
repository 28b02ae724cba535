"""The store's files broken under a daemon that starts, and under the CLI without one: a clear
message naming the file and what to do, never a traceback, and nothing changed on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import daemon_env, start_daemon_process, write_config

from releaseosd.model.states import State
from releaseosd.model.store import ARCHIVE_FILE, HISTORY_FILE, STORE_FILE, Store
from releaseosd.model.track import Track

pytestmark = pytest.mark.usefixtures("runtime_dir")

FILES = (STORE_FILE, ARCHIVE_FILE, HISTORY_FILE)


def _released(state_dir: Path, count: int) -> None:
    store = Store.open(state_dir)
    for i in range(count):
        track = store.insert(Track(title=f"Done {i}", audio_path=f"/m/Done {i}.wav"))
        for state in (State.BUILDING, State.READY, State.UPLOADING, State.PROCESSING):
            store.transition(track.id, state)
        store.transition(track.id, State.RELEASED)
    store.close()


def _tear_line_2(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("name", [ARCHIVE_FILE, HISTORY_FILE])
def test_a_journal_broken_mid_file_stops_the_daemon_and_the_cli_with_a_clear_message(
    tmp_path: Path, name: str
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    state_dir = tmp_path / "state"
    _released(state_dir, 3)
    _tear_line_2(state_dir / name)
    before = {n: (state_dir / n).read_bytes() for n in FILES}
    log = tmp_path / "daemon.log"
    daemon = start_daemon_process(config, tmp_path, log)
    assert daemon.wait(60) != 0
    said = log.read_text()
    assert "Traceback" not in said, said
    assert f"{state_dir / name}: line 2" in said, said
    commands = [["remove", "Done 0", "--yes"], ["retry", "Done 1"]]
    if name == ARCHIVE_FILE:
        commands.append(["status"])  # status reads no history
    for args in commands:
        done = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(config), *args],
            env=daemon_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0, args
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert f"{state_dir / name}: line 2" in done.stderr, (args, done.stderr)
    assert {n: (state_dir / n).read_bytes() for n in FILES} == before
