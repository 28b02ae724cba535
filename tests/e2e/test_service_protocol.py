"""The daemon as systemd runs it: the Type=notify protocol (READY, WATCHDOG, STOPPING), SIGHUP
reloading the configuration, and `releaseosd --help` staying light."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from daemon_harness import (
    daemon_env,
    make_audio,
    read_tracks,
    start_daemon_process,
    wait_for,
    write_config,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app" / "service"))
from sandbox_tools import TestSandbox
from sd_notify_listener import NotifySocket


def test_type_notify_ready_watchdog_stopping(tmp_path: Path, sandbox: TestSandbox) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    with NotifySocket.bind() as listener:
        env = daemon_env(tmp_path)
        env.update({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "1000000"})
        proc = subprocess.Popen(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert listener.wait_for("READY=1", timeout=30).pid == proc.pid
            assert listener.wait_for("WATCHDOG=1", timeout=10).pid == proc.pid
            proc.send_signal(signal.SIGTERM)
            assert listener.wait_for("STOPPING=1", timeout=10).pid == proc.pid
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_sighup_reloads_watch_folders_without_a_restart(
    tmp_path: Path, sandbox: TestSandbox, token_store: object
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    log = tmp_path / "daemon.log"
    proc = start_daemon_process(config, tmp_path, log)
    try:
        wait_for(lambda: "releaseosd running" in log.read_text(), timeout=30, what="start")
        second = tmp_path / "second-folder"
        second.mkdir()
        text = config.read_text().replace("watch:\n", f"watch:\n  - path: {second}\n")
        config.write_text(text)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), timeout=20, what="reload")
        (second / "New.yaml").write_text("title: From The New Folder\nsharing: public\n")
        make_audio(second / "New.wav", freq=610)
        wait_for(
            lambda: any(t.title == "From The New Folder" for t in read_tracks(tmp_path / "state")),
            timeout=30,
            what="a track from the folder added by SIGHUP",
        )
        # A broken config on SIGHUP is reported and the old one kept; the daemon runs on.
        config.write_text("uploads:\n  concurrency: 0\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config not reloaded" in log.read_text(), timeout=20, what="refusal")
        assert "uploads.concurrency: must be ≥ 1, got 0" in log.read_text()
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_help_imports_no_heavy_module() -> None:
    heavy = ["httpx", "numpy", "PIL", "apscheduler", "watchdog", "pydub", "tinydb", "pydantic"]
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['releaseosd', '--help']\n"
        "try:\n"
        "    runpy.run_module('releaseosd', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('IMPORTED=' + ','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=30
    )
    assert "Usage: releaseosd" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "IMPORTED=", result.stdout[-500:]


def test_status_json_shape(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
