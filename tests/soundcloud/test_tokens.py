"""Tokens: keyring only, masked everywhere, refreshed once under a lock, stored before use."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import keyring.backends.fail
import keyring.backends.null
import pytest
from keyring_fixtures import LockedKeyring, MemoryKeyring, plaintext_keyring

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud.client import SoundCloudClient
from releaseosd.soundcloud.errors import KeyringUnavailable, NeedsLogin, NotConfigured, Retryable
from releaseosd.soundcloud.tokens import TokenManager, TokenSet, TokenStore

CONFIG = SoundCloudConfig(
    client_id="cid",
    api_url="https://api.example.test",
    auth_url="https://secure.example.test",
    redirect_uri="http://localhost:8765/callback",
)
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TokenServer:
    """The token endpoint and /me, behind httpx.MockTransport; logs into a shared event list."""

    def __init__(self, events: list[tuple[str, ...]]) -> None:
        self.events = events
        self.issued = 0
        self.live_refresh = {"refresh-0"}
        self.token_requests: list[dict[str, list[str]]] = []
        self.hold: Callable[[], None] = lambda: None
        self.answer: httpx.Response | None = None
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            form = parse_qs(request.content.decode())
            with self.lock:
                self.token_requests.append(form)
            self.hold()
            if self.answer is not None:
                return self.answer
            with self.lock:
                refresh = form["refresh_token"][0]
                if refresh not in self.live_refresh:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                self.live_refresh.discard(refresh)  # single-use, as at SoundCloud
                self.issued += 1
                self.live_refresh.add(f"refresh-{self.issued}")
                self.events.append(("token-issued", f"access-{self.issued}"))
                return httpx.Response(
                    200,
                    json={
                        "access_token": f"access-{self.issued}",
                        "expires_in": 3599,
                        "refresh_token": f"refresh-{self.issued}",
                        "scope": "",
                        "token_type": "bearer",
                    },
                )
        auth = request.headers.get("Authorization", "")
        self.events.append(("api", request.url.path, auth))
        return httpx.Response(200, json={"username": "producer"})


@pytest.fixture
def events() -> list[tuple[str, ...]]:
    return []


@pytest.fixture
def server(events: list[tuple[str, ...]]) -> TokenServer:
    return TokenServer(events)


@pytest.fixture
def store(events: list[tuple[str, ...]]) -> TokenStore:
    store = TokenStore(MemoryKeyring(events))
    store.set_client_secret("cid", "shh-secret")
    store.set_tokens("cid", TokenSet("access-0", "refresh-0", T0 + 3600))
    events.clear()
    return store


def manager(store: TokenStore, server: TokenServer, clock: Clock) -> TokenManager:
    http = httpx.Client(transport=httpx.MockTransport(server))
    return TokenManager(store, CONFIG, http, clock=clock)


def test_valid_token_is_used_without_refreshing(store: TokenStore, server: TokenServer) -> None:
    assert manager(store, server, Clock()).access_token() == "access-0"
    assert server.token_requests == []


def test_refreshes_shortly_before_expiry(store: TokenStore, server: TokenServer) -> None:
    clock = Clock()
    tokens = manager(store, server, clock)
    clock.now = T0 + 3600 - 61
    assert tokens.access_token() == "access-0"
    clock.now = T0 + 3600 - 59
    assert tokens.access_token() == "access-1"
    [form] = server.token_requests
    assert form == {
        "grant_type": ["refresh_token"],
        "client_id": ["cid"],
        "client_secret": ["shh-secret"],
        "refresh_token": ["refresh-0"],
        "redirect_uri": ["http://localhost:8765/callback"],
    }
    stored = store.get_tokens("cid")
    assert stored is not None and stored.refresh_token == "refresh-1"
    assert stored.expires_at == pytest.approx(T0 + 3600 - 59 + 3599)


def test_new_refresh_token_is_stored_before_the_new_access_token_is_used(
    store: TokenStore, server: TokenServer, events: list[tuple[str, ...]]
) -> None:
    clock = Clock(T0 + 4000)
    tokens = manager(store, server, clock)
    http = httpx.Client(transport=httpx.MockTransport(server))
    SoundCloudClient(CONFIG, tokens, http).me()
    kinds = [(event[0], event[-1]) for event in events]
    issued = kinds.index(("token-issued", "access-1"))
    stored = next(
        i
        for i, event in enumerate(events)
        if event[0] == "keyring-set" and '"refresh-1"' in event[-1]
    )
    used = kinds.index(("api", "OAuth access-1"))
    assert issued < stored < used
    assert json.loads(events[stored][-1])["access_token"] == "access-1"


def test_two_threads_needing_a_refresh_make_exactly_one_request(
    store: TokenStore, server: TokenServer
) -> None:
    tokens = manager(store, server, Clock(T0 + 4000))
    second_request = threading.Event()
    arrivals: list[int] = []

    def hold() -> None:
        # Without the lock both threads reach the token endpoint: let the first wait for the
        # second so the race is certain to show instead of depending on timing.
        arrivals.append(1)
        if len(arrivals) == 2:
            second_request.set()
        else:
            second_request.wait(timeout=0.5)

    server.hold = hold
    barrier = threading.Barrier(3)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(tokens.access_token())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert len(server.token_requests) == 1
    assert results == ["access-1", "access-1"]


def test_force_refresh_after_401_only_if_the_token_is_still_current(
    store: TokenStore, server: TokenServer
) -> None:
    tokens = manager(store, server, Clock())
    assert tokens.force_refresh("access-0") == "access-1"
    # A second thread that also got a 401 with access-0 must not burn refresh-1.
    assert tokens.force_refresh("access-0") == "access-1"
    assert len(server.token_requests) == 1


def test_a_refresh_by_another_process_is_picked_up(store: TokenStore, server: TokenServer) -> None:
    clock = Clock()
    tokens = manager(store, server, clock)
    assert tokens.access_token() == "access-0"
    store.set_tokens("cid", TokenSet("access-9", "refresh-9", T0 + 7200))
    clock.now = T0 + 3590
    assert tokens.access_token() == "access-9"
    assert server.token_requests == []


def test_invalid_grant_means_login_again_and_forgets_the_dead_tokens(
    store: TokenStore, server: TokenServer
) -> None:
    server.live_refresh.clear()
    tokens = manager(store, server, Clock(T0 + 4000))
    with pytest.raises(NeedsLogin, match="releaseosd auth login"):
        tokens.access_token()
    assert store.get_tokens("cid") is None
    with pytest.raises(NeedsLogin):
        tokens.access_token()
    assert len(server.token_requests) == 1


def test_soundcloud_json_shape_of_invalid_grant(store: TokenStore, server: TokenServer) -> None:
    server.answer = httpx.Response(400, json={"code": 400, "message": "invalid_grant"})
    with pytest.raises(NeedsLogin):
        manager(store, server, Clock(T0 + 4000)).access_token()


def test_a_5xx_from_the_token_endpoint_keeps_the_tokens(
    store: TokenStore, server: TokenServer
) -> None:
    server.answer = httpx.Response(503, text="<html>down</html>")
    with pytest.raises(Retryable):
        manager(store, server, Clock(T0 + 4000)).access_token()
    stored = store.get_tokens("cid")
    assert stored is not None and stored.refresh_token == "refresh-0"


def test_rejected_client_credentials_name_the_fix(store: TokenStore, server: TokenServer) -> None:
    server.answer = httpx.Response(401, json={"error": "invalid_client"})
    with pytest.raises(NotConfigured, match="releaseosd auth setup"):
        manager(store, server, Clock(T0 + 4000)).access_token()


def test_not_logged_in(server: TokenServer) -> None:
    with pytest.raises(NeedsLogin, match="not logged in"):
        manager(TokenStore(MemoryKeyring()), server, Clock()).access_token()


def test_tokens_never_show_in_repr_str_logs_or_errors(
    store: TokenStore, server: TokenServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = manager(store, server, Clock(T0 + 4000))
    http = httpx.Client(transport=httpx.MockTransport(server))
    client = SoundCloudClient(CONFIG, tokens, http)
    client.me()
    stored = store.get_tokens("cid")
    assert stored is not None
    shown = f"{stored!r} {stored} {tokens!r} {client!r}"
    server.live_refresh.clear()
    try:
        tokens.force_refresh("access-1")
    except NeedsLogin as exc:
        shown += f" {exc} {exc!r}"
    for secret in ("access-0", "access-1", "refresh-0", "refresh-1", "shh-secret"):
        assert secret not in shown
        assert secret not in caplog.text
    assert "********" in repr(stored)
    assert "renewed the SoundCloud access token" in caplog.text


def test_token_entry_is_one_json_value_per_client() -> None:
    backend = MemoryKeyring()
    store = TokenStore(backend)
    store.set_tokens("cid", TokenSet("a", "r", 5.0, "scope"))
    assert set(backend.values) == {("releaseosd", "tokens:cid")}
    assert json.loads(backend.values[("releaseosd", "tokens:cid")]) == {
        "v": 1,
        "access_token": "a",
        "refresh_token": "r",
        "expires_at": 5.0,
        "scope": "scope",
    }
    backend.values[("releaseosd", "tokens:cid")] = "garbage"
    assert store.get_tokens("cid") is None


@pytest.mark.parametrize(
    "backend",
    [keyring.backends.fail.Keyring(), keyring.backends.null.Keyring(), LockedKeyring()],  # type: ignore[no-untyped-call]
    ids=["fail", "null", "locked"],
)
def test_unusable_keyring_explains_the_headless_fix(backend: object) -> None:
    store = TokenStore(backend)
    calls: list[Callable[[], object]] = [
        lambda: store.get_tokens("cid"),
        lambda: store.set_client_secret("cid", "s"),
    ]
    for call in calls:
        with pytest.raises(KeyringUnavailable) as info:
            call()
        message = str(info.value)
        assert "gnome-keyring" in message
        assert "PYTHON_KEYRING_BACKEND" in message
        assert "--unlock" in message


def test_default_backend_with_nothing_installed_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keyring, "get_keyring", keyring.backends.fail.Keyring)
    with pytest.raises(KeyringUnavailable, match="No usable keyring"):
        TokenStore().check()


def test_real_file_keyring_round_trip(tmp_path: Path) -> None:
    store = TokenStore(plaintext_keyring(tmp_path))
    assert store.check().endswith("PlaintextKeyring")
    store.set_client_secret("cid", "s3cret")
    store.set_tokens("cid", TokenSet("a", "r", T0))
    reopened = TokenStore(plaintext_keyring(tmp_path))
    assert reopened.get_client_secret("cid") == "s3cret"
    assert repr(reopened.get_tokens("cid")) == repr(TokenSet("a", "r", T0))
    reopened.delete_all("cid")
    reopened.delete_all("cid")  # deleting what is gone is fine
    assert store.get_tokens("cid") is None and store.get_client_secret("cid") is None
