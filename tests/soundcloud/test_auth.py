"""Login (PKCE, state, one-shot loopback callback), status, logout and the stored secret.

The callback server is real (loopback HTTP); the token endpoint is an httpx.MockTransport here
and the sandbox in test_auth_sandbox.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from keyring_fixtures import MemoryKeyring, plaintext_keyring

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud import auth
from releaseosd.soundcloud.errors import LoginFailed, NotConfigured
from releaseosd.soundcloud.tokens import TokenSet, TokenStore

T0 = 1_800_000_000.0


class WatchedOutput(io.TextIOBase):
    """A text stream the test can wait on for a line, without sleeping."""

    def __init__(self) -> None:
        self._text = ""
        self._changed = threading.Condition()

    def write(self, text: str) -> int:
        with self._changed:
            self._text += text
            self._changed.notify_all()
        return len(text)

    def getvalue(self) -> str:
        with self._changed:
            return self._text

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        regex = re.compile(pattern, re.MULTILINE)
        with self._changed:
            found = self._changed.wait_for(lambda: regex.search(self._text), timeout)
            assert found, f"no line matching {pattern!r} in {self._text!r}"
            match = regex.search(self._text)
            assert match is not None
            return match.group(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TokenEndpoint:
    def __init__(self) -> None:
        self.forms: list[dict[str, list[str]]] = []
        self.answer = httpx.Response(
            200,
            json={"access_token": "acc", "refresh_token": "ref", "expires_in": 3599, "scope": ""},
        )
        self.other: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            self.forms.append(parse_qs(request.read().decode()))
            return self.answer
        self.other.append(request)
        if request.url.path == "/me":
            return httpx.Response(
                200,
                json={"username": "producer", "plan": "Free", "quota": {"upload_seconds_left": 60}},
            )
        return httpx.Response(200, json={})


@pytest.fixture
def config() -> SoundCloudConfig:
    return SoundCloudConfig(
        client_id="cid",
        api_url="https://api.example.test",
        auth_url="https://secure.example.test",
        redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
    )


@pytest.fixture
def store() -> TokenStore:
    store = TokenStore(MemoryKeyring())
    store.set_client_secret("cid", "the-secret")
    return store


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint()


class LoginRun:
    def __init__(self) -> None:
        self.out = WatchedOutput()
        self.result: TokenSet | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def url(self) -> str:
        return self.out.wait_for_line(r"^https?://\S+$")

    def finish(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


@pytest.fixture
def start_login(
    config: SoundCloudConfig, store: TokenStore, endpoint: TokenEndpoint
) -> Iterator[Callable[..., LoginRun]]:
    runs: list[LoginRun] = []

    def start(timeout: float = 20.0, **kwargs: Any) -> LoginRun:
        run = LoginRun()

        def target() -> None:
            try:
                run.result = auth.login(
                    kwargs.get("config", config),
                    open_browser=False,
                    out=run.out,  # type: ignore[arg-type]
                    timeout=timeout,
                    store=store,
                    http=httpx.Client(transport=httpx.MockTransport(endpoint)),
                    clock=lambda: T0,
                )
            except BaseException as exc:
                run.error = exc

        run.thread = threading.Thread(target=target)
        run.thread.start()
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.finish()


def callback_url(config: SoundCloudConfig, **params: str) -> str:
    return str(httpx.URL(config.redirect_uri, params=params))


def test_pkce_pair_is_s256() -> None:
    verifier, challenge = auth.pkce_pair()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9_-]+", verifier)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge == expected.decode()
    assert auth.pkce_pair()[0] != verifier


def test_loopback_addresses_never_include_a_wildcard() -> None:
    assert [a for _, a, _ in auth.loopback_addresses("localhost")] == ["127.0.0.1", "::1"]
    assert [a for _, a, _ in auth.loopback_addresses("::1")] == ["::1"]
    with pytest.raises(NotConfigured):
        auth.loopback_addresses("0.0.0.0")


def test_login_happy_path(
    start_login: Callable[..., LoginRun],
    config: SoundCloudConfig,
    store: TokenStore,
    endpoint: TokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    run = start_login()
    url = httpx.URL(run.url())
    assert f"{url.scheme}://{url.host}{url.path}" == "https://secure.example.test/authorize"
    params = dict(url.params)
    assert params["client_id"] == "cid"
    assert params["redirect_uri"] == config.redirect_uri
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 32

    # Another path does not use up the one shot.
    base = config.redirect_uri.removesuffix("/callback")
    assert httpx.get(f"{base}/favicon.ico").status_code == 404
    page = httpx.get(callback_url(config, code="the-code", state=params["state"]))
    assert page.status_code == 200
    assert "Logged in — you can close this tab" in page.text
    run.finish()
    assert run.error is None and run.result is not None

    [form] = endpoint.forms
    verifier = form["code_verifier"][0]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge.decode() == params["code_challenge"]
    assert {k: v[0] for k, v in form.items() if k != "code_verifier"} == {
        "grant_type": "authorization_code",
        "client_id": "cid",
        "client_secret": "the-secret",
        "redirect_uri": config.redirect_uri,
        "code": "the-code",
    }
    stored = store.get_tokens("cid")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token, stored.expires_at) == (
        "acc",
        "ref",
        T0 + 3599,
    )
    # The test's own browser requests (to 127.0.0.1) carry the code by design; nothing else may.
    logged = "\n".join(
        r.getMessage() for r in caplog.records if "http://127.0.0.1" not in r.getMessage()
    )
    assert "/oauth/token" in logged
    for secret in ("the-code", "the-secret", "acc", "ref", verifier):
        assert secret not in logged
        assert secret not in run.out.getvalue()
    # The one shot is spent and the port is closed again.
    with pytest.raises(httpx.ConnectError):
        httpx.get(callback_url(config, code="again", state=params["state"]))


@pytest.mark.parametrize(
    "params",
    [{"code": "c", "state": "forged"}, {"code": "c"}],
    ids=["wrong-state", "missing-state"],
)
def test_wrong_or_missing_state_fails_cleanly(
    start_login: Callable[..., LoginRun],
    config: SoundCloudConfig,
    store: TokenStore,
    endpoint: TokenEndpoint,
    params: dict[str, str],
) -> None:
    run = start_login()
    run.url()
    page = httpx.get(callback_url(config, **params))
    assert page.status_code == 400 and "did not match" in page.text
    run.finish()
    assert isinstance(run.error, LoginFailed) and "state" in str(run.error)
    assert endpoint.forms == [] and store.get_tokens("cid") is None


def test_refusal_in_the_browser(
    start_login: Callable[..., LoginRun], config: SoundCloudConfig
) -> None:
    run = start_login()
    state = dict(httpx.URL(run.url()).params)["state"]
    page = httpx.get(callback_url(config, error="access_denied", state=state))
    assert page.status_code == 400
    run.finish()
    assert isinstance(run.error, LoginFailed) and "access_denied" in str(run.error)


def test_refused_code_fails_with_the_reason(
    start_login: Callable[..., LoginRun],
    config: SoundCloudConfig,
    store: TokenStore,
    endpoint: TokenEndpoint,
) -> None:
    endpoint.answer = httpx.Response(400, json={"error": "invalid_grant"})
    run = start_login()
    state = dict(httpx.URL(run.url()).params)["state"]
    page = httpx.get(callback_url(config, code="used", state=state))
    assert page.status_code == 502 and "invalid_grant" in page.text
    run.finish()
    assert isinstance(run.error, LoginFailed) and "PKCE verifier" in str(run.error)
    assert store.get_tokens("cid") is None


def test_timeout_is_clean_and_frees_the_port(
    start_login: Callable[..., LoginRun], config: SoundCloudConfig
) -> None:
    run = start_login(timeout=0.2)
    run.finish()
    assert isinstance(run.error, LoginFailed)
    assert "no answer from the browser within 0.2 s" in str(run.error)
    port = urlsplit(config.redirect_uri).port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_port_in_use(config: SoundCloudConfig, store: TokenStore) -> None:
    port = urlsplit(config.redirect_uri).port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        with pytest.raises(LoginFailed, match=f"port {port} on 127.0.0.1 is in use"):
            auth.login(config, open_browser=False, out=io.StringIO(), timeout=1, store=store)


def test_localhost_listens_on_loopback_only(store: TokenStore, endpoint: TokenEndpoint) -> None:
    port = free_port()
    config = SoundCloudConfig(client_id="cid", redirect_uri=f"http://localhost:{port}/cb")
    callback = auth._Callback(path="/cb", state="s", finish=lambda code: TokenSet("a", None, 0))
    served = auth._start_servers(config, callback)
    try:
        addresses = {sock.getsockname()[0] for sock in served._sockets}
        assert addresses <= {"127.0.0.1", "::1"}
        assert "127.0.0.1" in addresses
    finally:
        served.stop()


def test_login_with_a_browser(
    monkeypatch: pytest.MonkeyPatch,
    config: SoundCloudConfig,
    store: TokenStore,
    endpoint: TokenEndpoint,
) -> None:
    pages: list[httpx.Response] = []

    def browser(url: str) -> bool:
        state = dict(httpx.URL(url).params)["state"]
        pages.append(httpx.get(callback_url(config, code="c", state=state)))
        return True

    monkeypatch.setattr("webbrowser.open", browser)
    out = io.StringIO()
    tokens = auth.login(
        config,
        open_browser=True,
        out=out,
        timeout=10,
        store=store,
        http=httpx.Client(transport=httpx.MockTransport(endpoint)),
    )
    assert tokens.access_token == "acc" and pages[0].status_code == 200
    assert "Logged in to SoundCloud." in out.getvalue()


def test_login_needs_a_client_id_and_secret(config: SoundCloudConfig) -> None:
    with pytest.raises(NotConfigured, match="releaseosd auth setup"):
        auth.login(config, open_browser=False, out=io.StringIO(), store=TokenStore(MemoryKeyring()))
    with pytest.raises(NotConfigured, match="client_id is not set"):
        auth.login(SoundCloudConfig(), open_browser=False, out=io.StringIO())


def test_setup_secret(tmp_path: Path) -> None:
    store = TokenStore(plaintext_keyring(tmp_path))
    auth.setup_secret("cid", "  s3cret\n", store=store)
    assert store.get_client_secret("cid") == "s3cret"
    for bad in ("", "two words"):
        with pytest.raises(NotConfigured):
            auth.setup_secret("cid", bad, store=store)
    with pytest.raises(NotConfigured):
        auth.setup_secret("", "s", store=store)


def test_status_and_logout(
    config: SoundCloudConfig, store: TokenStore, endpoint: TokenEndpoint
) -> None:
    http = httpx.Client(transport=httpx.MockTransport(endpoint))
    info = auth.status(config, store=store, http=http, clock=lambda: T0)
    assert info["logged_in"] is False and "releaseosd auth login" in info["error"]
    store.set_tokens("cid", TokenSet("acc", "ref", T0 + 1800))
    info = auth.status(config, store=store, http=http, clock=lambda: T0)
    assert info == {
        "client_id": "cid",
        "secret_stored": True,
        "logged_in": True,
        "username": "producer",
        "expires_at": "2027-01-15T08:30:00+00:00",
        "expires_in": 1800,
        "plan": "Free",
        "upload_seconds_left": 60,
        "unlimited_upload_quota": None,
        "error": None,
    }
    assert "acc" not in json.dumps(info)

    assert auth.logout(config, store=store, http=http) is True
    sign_out = endpoint.other[-1]
    assert (sign_out.url.host, sign_out.url.path) == ("secure.example.test", "/sign-out")
    assert json.loads(sign_out.content) == {"access_token": "acc"}
    assert store.get_tokens("cid") is None and store.get_client_secret("cid") is None


def test_logout_forgets_secrets_even_when_sign_out_fails(
    config: SoundCloudConfig, store: TokenStore
) -> None:
    store.set_tokens("cid", TokenSet("acc", "ref", T0))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    http = httpx.Client(transport=httpx.MockTransport(down))
    assert auth.logout(config, store=store, http=http) is False
    assert store.get_tokens("cid") is None and store.get_client_secret("cid") is None
