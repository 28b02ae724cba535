"""kill -9 at the worst moments, and two processes on one state dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    DONE,
    daemon_env,
    dump,
    in_state,
    make_audio,
    read_tracks,
    start_daemon_process,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def _slow_answer(sandbox: TestSandbox, name: str) -> threading.Event:
    """The sandbox does the work of `name` and then holds the answer back (a slow link): the
    moment to kill the client in."""
    done = threading.Event()
    real = getattr(sandbox, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        if not done.is_set():
            done.set()
            time.sleep(3)
        return answer

    setattr(sandbox, name, slow)
    return done


def test_kill_9_after_the_upload_was_created_but_before_its_answer_adopts_it(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Crash.yaml").write_text("title: Crash\nsharing: public\nplaylist: Crash EP\n")
    make_audio(exports / "Crash.wav", freq=700)
    created = _slow_answer(sandbox, "_create_track")
    log = tmp_path / "daemon.log"
    proc = start_daemon_process(config, tmp_path, log)
    try:
        assert created.wait(60), "no upload"
        _kill(proc)
        assert in_state(state, "Crash", State.UPLOADING), dump(state)
        proc = start_daemon_process(config, tmp_path, log)
        wait_for(
            lambda: (t := in_state(state, "Crash", *DONE)) and t.sync is None,
            timeout=60,
            what="released after restart",
        )
    finally:
        _stop(proc)
    assert len(sandbox.tracks()) == 1, dump(state)
    assert [p["title"] for p in sandbox.playlists()] == ["Crash EP"]


def test_kill_9_between_creating_a_playlist_and_recording_it_makes_no_second_playlist(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "List.yaml").write_text("title: List\nsharing: public\nplaylist: Night EP\n")
    make_audio(exports / "List.wav", freq=710)
    created = _slow_answer(sandbox, "_create_playlist")
    log = tmp_path / "daemon.log"
    proc = start_daemon_process(config, tmp_path, log)
    try:
        assert created.wait(60), "no playlist created"
        _kill(proc)
        proc = start_daemon_process(config, tmp_path, log)
        wait_for(
            lambda: (t := in_state(state, "List", *DONE)) and t.sync is None,
            timeout=60,
            what="released and listed after restart",
        )
    finally:
        _stop(proc)
    playlists = sandbox.playlists()
    assert [(p["title"], len(p["tracks"])) for p in playlists] == [("Night EP", 1)], playlists


def test_a_second_daemon_and_a_one_shot_upload_on_the_same_state_dir_are_refused(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Once.yaml").write_text("title: Once\nsharing: public\n")
    make_audio(exports / "Once.wav", freq=720)
    log = tmp_path / "daemon.log"
    proc = start_daemon_process(config, tmp_path, log)
    try:
        wait_for(lambda: (state / "store.json").exists(), what="first daemon up")
        wait_for(lambda: in_state(state, "Once", *DONE), timeout=60, what="released")
        second = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "run"],
            env=daemon_env(tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 3, second.stderr[-500:]
        oneshot = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "upload",
             str(exports / "Once.wav")],
            env=daemon_env(tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert oneshot.returncode != 0, oneshot.stdout + oneshot.stderr
    finally:
        _stop(proc)
    assert len(sandbox.tracks()) == 1, dump(state)
    assert len(read_tracks(state)) == 1
