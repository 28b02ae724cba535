"""The README's first command: `releaseosd run --sandbox` on a fresh home, no config at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from daemon_harness import make_audio, wait_for


def test_run_sandbox_on_defaults_releases_a_dropped_track(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "RELEASEOSD_"))}
    env.update(
        HOME=str(home),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        # A headless box with no keyring at all: the rehearsal must not need one.
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    log = tmp_path / "run.log"
    out = tmp_path / "run.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "releaseosd", "run", "--sandbox"],
        env=env,
        stdout=out.open("wb"),
        stderr=log.open("wb"),
    )

    def status() -> list[dict[str, object]]:
        out = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--sandbox", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout))

    try:
        wait_for(lambda: "releaseosd running" in log.read_text(), timeout=30, what="start")
        exports = home / "Music" / "Exports"
        assert exports.is_dir(), "the rehearsal watches ~/Music/Exports by default"
        (exports / "First Steps.yaml").write_text("title: First Steps\nsharing: public\n")
        make_audio(exports / "First Steps.wav", seconds=2.0, freq=392)
        rows = wait_for(
            lambda: (rows := status()) and rows[0]["state"] == "released" and rows,
            timeout=60,
            what="the rehearsal release",
        )
        permalink = str(rows[0]["soundcloud"]["permalink_url"])  # type: ignore[index]
        # The link a new user clicks opens the rehearsed track's page, not an API error.
        listener = httpx.get(permalink, timeout=10)
        assert listener.status_code == 200, listener.text
        assert "text/html" in listener.headers["content-type"]
        assert "First Steps" in listener.text and "<audio" in listener.text
        # `run` ended with the dashboard's address (the rehearsal's: the port after 8766), and
        # `releaseosd --sandbox ui` signs a browser in there.
        assert "Dashboard: http://127.0.0.1:8767/" in out.read_text()
        signed_in = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--sandbox", "ui", "--no-browser"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert signed_in.returncode == 0, signed_in.stderr
        with httpx.Client(timeout=10) as browser:
            assert browser.get(signed_in.stdout.strip()).status_code == 303
            page = browser.get("http://127.0.0.1:8767/")
            assert page.status_code == 200 and "First Steps" in page.text
            assert "Rehearsal:" in page.text
        # The real state dir never saw the rehearsal.
        real = subprocess.run(
            [sys.executable, "-m", "releaseosd", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert json.loads(real.stdout) == []

        # A reload re-reads the (absent) config: the rehearsal's own folder stays watched.
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), timeout=30, what="reload")
        assert "now in effect: watch" not in log.read_text()
        (exports / "Second Steps.yaml").write_text("title: Second Steps\nsharing: public\n")
        make_audio(exports / "Second Steps.wav", seconds=2.0, freq=440)
        wait_for(
            lambda: [r["state"] for r in status()] == ["released", "released"],
            timeout=60,
            what="a track dropped after the reload released",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()[-2000:]
