"""Login end to end: the sandbox plays SoundCloud, the test plays the browser, tokens land in a
real keyring backend (keyrings.alt's file keyring in a temporary folder)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from keyring_fixtures import plaintext_keyring
from sandbox_tools import RecordedRequest, TestSandbox
from test_auth import WatchedOutput, free_port

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud import auth
from releaseosd.soundcloud.client import SoundCloudClient
from releaseosd.soundcloud.errors import LoginFailed
from releaseosd.soundcloud.tokens import TokenManager, TokenSet, TokenStore

ROOT = Path(__file__).resolve().parents[2]
SpecChecker = Callable[[RecordedRequest], list[str]]


class Login:
    """auth.login running in a thread, as the CLI would run it, with open_browser=False."""

    def __init__(self, config: SoundCloudConfig, store: TokenStore, timeout: float = 20) -> None:
        self.out = WatchedOutput()
        self.result: TokenSet | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(config, store, timeout))
        self._thread.start()

    def _run(self, config: SoundCloudConfig, store: TokenStore, timeout: float) -> None:
        try:
            self.result = auth.login(
                config,
                open_browser=False,
                out=self.out,  # type: ignore[arg-type]
                timeout=timeout,
                store=store,
            )
        except BaseException as exc:
            self.error = exc

    def url(self) -> httpx.URL:
        return httpx.URL(self.out.wait_for_line(r"^https?://\S+$"))

    def join(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


@pytest.fixture
def config(sandbox: TestSandbox) -> SoundCloudConfig:
    assert sandbox.client_id is not None
    return SoundCloudConfig(
        client_id=sandbox.client_id,
        api_url=sandbox.base_url,
        auth_url=sandbox.base_url,
        redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
    )


@pytest.fixture
def store(sandbox: TestSandbox, tmp_path: Path) -> TokenStore:
    store = TokenStore(plaintext_keyring(tmp_path))
    assert sandbox.client_id is not None and sandbox.client_secret is not None
    auth.setup_secret(sandbox.client_id, sandbox.client_secret, store=store)
    return store


def with_params(url: httpx.URL, **changes: str) -> httpx.URL:
    return url.copy_merge_params(changes)


def test_login_stores_tokens_that_work(
    config: SoundCloudConfig, store: TokenStore, sandbox: TestSandbox, spec_checker: SpecChecker
) -> None:
    login = Login(config, store)
    page = httpx.get(login.url(), follow_redirects=True)
    assert page.status_code == 200 and "Logged in — you can close this tab" in page.text
    login.join()
    assert login.error is None and login.result is not None
    stored = store.get_tokens(config.client_id)
    assert stored is not None and stored.refresh_token
    http = httpx.Client()
    me = SoundCloudClient(config, TokenManager(store, config, http), http).me()
    assert me["username"] == sandbox.username
    # The sandbox records a request just after answering it: give the last one a moment.
    deadline = time.monotonic() + 5
    while len(sandbox.requests) < 3 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert [r.path for r in sandbox.requests] == ["/authorize", "/oauth/token", "/me"]
    for rec in sandbox.requests:
        assert spec_checker(rec) == [], (rec.method, rec.path)


def test_wrong_state_fails_cleanly(
    config: SoundCloudConfig, store: TokenStore, sandbox: TestSandbox
) -> None:
    login = Login(config, store)
    page = httpx.get(with_params(login.url(), state="forged"), follow_redirects=True)
    assert page.status_code == 400
    login.join()
    assert isinstance(login.error, LoginFailed) and "'state'" in str(login.error)
    assert store.get_tokens(config.client_id) is None
    assert not any(r.path == "/oauth/token" for r in sandbox.requests)


def test_replayed_code_fails_cleanly(
    config: SoundCloudConfig, store: TokenStore, sandbox: TestSandbox
) -> None:
    first = Login(config, store)
    redirect = httpx.get(first.url())
    assert redirect.status_code == 302
    callback = httpx.URL(redirect.headers["Location"])
    assert httpx.get(callback).status_code == 200
    first.join()
    assert first.result is not None
    kept = store.get_tokens(config.client_id)

    second = Login(config, store)
    state = dict(second.url().params)["state"]
    page = httpx.get(with_params(callback, state=state))
    assert page.status_code == 502
    second.join()
    assert isinstance(second.error, LoginFailed) and "invalid_grant" in str(second.error)
    assert repr(store.get_tokens(config.client_id)) == repr(kept)  # the good login survives


def test_refused_pkce_verifier_fails_cleanly(
    config: SoundCloudConfig, store: TokenStore, sandbox: TestSandbox
) -> None:
    login = Login(config, store)
    other = hashlib.sha256(b"x" * 64).digest()
    forged = base64.urlsafe_b64encode(other).rstrip(b"=").decode()
    page = httpx.get(with_params(login.url(), code_challenge=forged), follow_redirects=True)
    assert page.status_code == 502
    login.join()
    assert isinstance(login.error, LoginFailed) and "PKCE verifier" in str(login.error)
    assert store.get_tokens(config.client_id) is None


def test_denied_in_the_browser(
    config: SoundCloudConfig, store: TokenStore, sandbox: TestSandbox
) -> None:
    sandbox.faults.update(deny_authorization=True)
    login = Login(config, store)
    assert httpx.get(login.url(), follow_redirects=True).status_code == 400
    login.join()
    assert isinstance(login.error, LoginFailed) and "access_denied" in str(login.error)


def test_timeout_fails_cleanly(config: SoundCloudConfig, store: TokenStore) -> None:
    login = Login(config, store, timeout=0.3)
    login.url()
    login.join()
    assert isinstance(login.error, LoginFailed) and "no answer from the browser" in str(login.error)
    assert store.get_tokens(config.client_id) is None


CHILD = textwrap.dedent(
    """
    import json, sys
    from releaseosd.model.config import SoundCloudConfig
    from releaseosd.soundcloud import auth
    config = SoundCloudConfig(**json.loads(sys.argv[2]))
    command = sys.argv[1]
    if command == "setup":
        auth.setup_secret(config.client_id, sys.stdin.read())
    elif command == "login":
        auth.login(config, open_browser=False, out=sys.stdout, timeout=30)
    elif command == "status":
        print(json.dumps(auth.status(config)))
    elif command == "logout":
        print(json.dumps(auth.logout(config)))
    """
)


def test_cli_like_login_status_logout_with_the_env_chosen_keyring(
    config: SoundCloudConfig, sandbox: TestSandbox, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    settings = json.dumps(config.model_dump())

    def child(command: str, stdin: str = "") -> Any:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, command, settings],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    secret = sandbox.client_secret or ""
    child("setup", secret + "\n")  # the secret goes in on stdin, never argv
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", CHILD, "login", settings],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("http"):
                url = line.strip()
                break
        else:
            pytest.fail(f"login printed no URL; stderr: {proc.communicate()[1]}")
        assert httpx.get(url, follow_redirects=True).status_code == 200
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    keyring_file = tmp_path / "data" / "python_keyring" / "keyring_pass.cfg"
    assert keyring_file.is_file()
    info = child("status")
    assert info["logged_in"] is True and info["username"] == sandbox.username
    assert info["secret_stored"] is True and info["expires_in"] > 3500
    assert child("logout") is True
    info = child("status")
    assert info["logged_in"] is False and info["secret_stored"] is False
    assert "releaseosd auth login" in info["error"]
