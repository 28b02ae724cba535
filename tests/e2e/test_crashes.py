"""Crash safety end to end: the daemon is SIGKILLed at random moments of a 10-track run and
started again each time; every track still lands on the sandbox exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    daemon_env,
    file_token_store,
    keyring_file,
    log_in,
    make_audio,
    read_tracks,
    start_daemon_process,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.model.store import Store


def _store_tokens(root: Path, sandbox: TestSandbox) -> None:
    """Log in through the same real keyring backend the daemon process will use."""
    log_in(file_token_store(keyring_file(root)), sandbox)


def test_sigkill_at_25_random_moments(tmp_path: Path) -> None:
    sandbox = TestSandbox(
        data_dir=tmp_path / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        processing_seconds=0.3,
    )
    sandbox.start()
    log = tmp_path / "daemon.log"
    try:
        _store_tokens(tmp_path, sandbox)
        config_path = write_config(tmp_path, sandbox.base_url, uploads={"concurrency": 2})
        exports = tmp_path / "exports"
        for i in range(10):
            (exports / f"C{i}.yaml").write_text(f"title: Crash {i}\nsharing: public\n")
            make_audio(exports / f"C{i}.wav", seconds=3.0, freq=300 + 53 * i)
        state = tmp_path / "state"
        rng = random.Random(2026)
        for _ in range(25):
            proc = start_daemon_process(config_path, tmp_path, log)
            # The kill lands at a random moment of the run: starting, ingesting, mid-upload,
            # between the upload and recording its URN, while publishing.
            time.sleep(rng.uniform(0.3, 2.0))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        runs_before = log.read_text().count("releaseosd running")
        proc = start_daemon_process(config_path, tmp_path, log)
        try:
            wait_for(
                lambda: log.read_text().count("releaseosd running") > runs_before,
                timeout=30,
                what="the last daemon to be up",
            )
            done = wait_for(
                lambda: (
                    (ts := read_tracks(state))
                    and len(ts) == 10
                    and all(t.state == State.RELEASED for t in ts)
                    and ts
                ),
                timeout=90,
                what="10 tracks released after the crashes",
            )
        finally:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(15)
            stopped_in = time.monotonic() - started
        assert code == 0, log.read_text()[-3000:]
        assert stopped_in < 10
        remote = sandbox.tracks()
        titles = sorted(t["title"] for t in remote)
        assert titles == [f"Crash {i}" for i in range(10)], titles
        assert {t.soundcloud.urn for t in done} == {t["urn"] for t in remote}
        # The store is intact and opens normally.
        reopened = Store.open(state)
        assert len(reopened.all()) == 10
        reopened.close()
    finally:
        sandbox.stop()


def test_sigterm_stops_quickly_and_a_second_daemon_is_refused(tmp_path: Path) -> None:
    sandbox = TestSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    sandbox.start()
    log = tmp_path / "daemon.log"
    try:
        config_path = write_config(tmp_path, sandbox.base_url)
        proc = start_daemon_process(config_path, tmp_path, log)
        wait_for(lambda: "releaseosd running" in log.read_text(), timeout=20, what="start")
        second = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(config_path), "run"],
            env=daemon_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 3
        assert "in use by releaseosd daemon pid" in second.stderr
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        sandbox.stop()


def test_an_export_deleted_while_the_daemon_is_down_is_said_gone(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1008: killed right after a drop, the export deleted before the next start.
    No deletion event ever comes; the track must not wait for ever without a reason."""
    from daemon_harness import ThreadedDaemon, by_title, pause_before_start, wait_for, write_config

    from releaseosd.model.track import gone_message

    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    pause_before_start(state)  # it stays local: queued, never uploaded
    (exports / "Vanishing.yaml").write_text("title: Vanishing\nsharing: public\n")
    make_audio(exports / "Vanishing.wav", freq=612)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (t := by_title(state).get("Vanishing")) and t.state == State.READY,
            what="Vanishing queued",
        )
    (exports / "Vanishing.wav").unlink()
    with ThreadedDaemon(config, token_store):
        track = wait_for(
            lambda: (t := by_title(state).get("Vanishing")) and t.last_error and t,
            what="Vanishing said gone",
        )
    assert track.state == State.PENDING
    assert track.last_error == gone_message(track)
    assert sandbox.tracks() == []
