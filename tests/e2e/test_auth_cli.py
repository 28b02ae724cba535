"""`releaseosd auth …` end to end over real HTTP against the sandbox, with a real keyring backend
chosen by PYTHON_KEYRING_BACKEND; and no token or secret ever shows up outside the keyring."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    daemon_env,
    file_token_store,
    free_port,
    keyring_file,
    make_audio,
    read_tracks,
    start_daemon_process,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State


def _cli(
    config: Path, root: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(config), *args],
        env=daemon_env(root),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _keyring_values(root: Path) -> list[str]:
    store = file_token_store(keyring_file(root))
    tokens = store.get_tokens(CLIENT_ID)
    values = [store.get_client_secret(CLIENT_ID) or ""]
    if tokens is not None:
        values += [tokens.access_token, tokens.refresh_token or ""]
    return [v for v in values if v]


def test_setup_login_run_status_logout_and_no_secret_leaks(
    tmp_path: Path, sandbox: TestSandbox
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    port = free_port()
    config.write_text(
        config.read_text().replace(
            f"  auth_url: {sandbox.base_url}\n",
            f"  auth_url: {sandbox.base_url}\n  redirect_uri: http://127.0.0.1:{port}/callback\n",
        )
    )
    outputs: list[str] = []

    setup = _cli(config, tmp_path, "auth", "setup", stdin=CLIENT_SECRET + "\n")
    assert setup.returncode == 0, setup.stderr
    outputs += [setup.stdout, setup.stderr]

    login = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "releaseosd",
            "--config",
            str(config),
            "auth",
            "login",
            "--no-browser",
        ],
        env=daemon_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert login.stdout is not None
    url = ""
    while not url.startswith("http"):
        url = login.stdout.readline().strip()
        assert url or login.poll() is None, login.stderr.read() if login.stderr else ""
    assert url.startswith(f"{sandbox.base_url}/authorize?")
    assert "code_challenge_method=S256" in url
    # The test plays the browser: /authorize redirects to the loopback callback.
    page = httpx.get(url, follow_redirects=True, timeout=30)
    assert page.status_code == 200 and "close this tab" in page.text.lower()
    out, err = login.communicate(timeout=30)
    assert login.returncode == 0, err
    outputs += [url, out, err, page.text]

    status = _cli(config, tmp_path, "auth", "status")
    assert status.returncode == 0, status.stderr
    assert "logged in as sandbox-artist" in status.stdout
    outputs += [status.stdout, status.stderr]

    secrets = _keyring_values(tmp_path)
    assert len(secrets) == 3, "secret, access token and refresh token are in the keyring"

    (tmp_path / "exports" / "A.yaml").write_text("title: Secretive\nsharing: public\n")
    make_audio(tmp_path / "exports" / "A.wav", freq=520)
    log = tmp_path / "daemon.log"
    proc = start_daemon_process(config, tmp_path, log)
    try:
        wait_for(
            lambda: (ts := read_tracks(tmp_path / "state")) and ts[0].state == State.RELEASED,
            what="release",
        )
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        outputs.append(ps)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    # A refresh may have rotated the tokens during the run: check the old and the new ones.
    secrets = sorted(set(secrets + _keyring_values(tmp_path)))
    places = {
        "daemon log": log.read_text(),
        "config": config.read_text(),
        **{
            f"state file {p.name}": p.read_text(errors="replace")
            for p in (tmp_path / "state").rglob("*")
            if p.is_file() and p.suffix in (".json", ".bak", ".lock", ".yaml", ".txt", "")
        },
        "cli output and ps": "\n".join(outputs),
    }
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a token or secret appears in the {where}"

    logout = _cli(config, tmp_path, "auth", "logout")
    assert logout.returncode == 0, logout.stderr
    assert _keyring_values(tmp_path) == []
    after = _cli(config, tmp_path, "auth", "status")
    assert after.returncode == 1 and "not logged in" in after.stdout


def test_auth_setup_needs_a_client_id(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    result = _cli(config, tmp_path, "auth", "setup", stdin="x\n")
    assert result.returncode == 2
    assert "soundcloud.client_id is not set" in result.stderr
