"""Single-use refresh tokens under pressure: several processes refreshing at once, a refusal
after another process changed the keyring, short-lived tokens, and answers lost after SoundCloud
rotated the token. Real OS processes, a real keyring backend (keyrings.alt's file keyring), real
HTTP to the sandbox over loopback; injected clocks where time matters."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import keyring.errors
import pytest
from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    daemon_env,
    file_token_store,
    keyring_file,
    log_in,
    wait_for,
    write_config,
)
from keyring_fixtures import MemoryKeyring
from sandbox_tools import TestSandbox

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud import auth
from releaseosd.soundcloud.client import SoundCloudClient
from releaseosd.soundcloud.errors import NeedsLogin, Retryable
from releaseosd.soundcloud.tokens import (
    LoginOutlook,
    TokenManager,
    TokenSet,
    TokenStore,
    refresh_lock_path,
)

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0

# One releaseosd process that needs the login renewed: it holds the (expired) stored set in
# memory, says it is ready, waits for the barrier file, then asks for a token and calls /me.
REFRESHER = """
import hashlib, json, sys, time
from pathlib import Path

sys.path.insert(0, {daemon_tests!r})
import httpx
from daemon_harness import CLIENT_ID, file_token_store
from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud.client import SoundCloudClient
from releaseosd.soundcloud.errors import SoundCloudError
from releaseosd.soundcloud.tokens import TokenManager

keyring_path, state_dir, url, ready, barrier, offset = sys.argv[1:7]
store = file_token_store(Path(keyring_path))
config = SoundCloudConfig(client_id=CLIENT_ID, api_url=url, auth_url=url)
http = httpx.Client(timeout=30)
manager = TokenManager(store, config, http, state_dir=Path(state_dir))
manager.current()
Path(ready).touch()
deadline = time.monotonic() + 60
while not Path(barrier).exists():
    if time.monotonic() > deadline:
        sys.exit("no barrier within 60 s")
    time.sleep(0.001)
start_at = float(Path(barrier).read_text()) + float(offset)
while time.time() < start_at:
    pass
try:
    token = manager.access_token()
    me = SoundCloudClient(config, manager, http).me()
    out = {{"ok": True, "token": hashlib.sha256(token.encode()).hexdigest(), "me": me["username"]}}
except SoundCloudError as exc:
    out = {{"ok": False, "error": type(exc).__name__ + ": " + str(exc)}}
print(json.dumps(out))
"""


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[TestSandbox]:
    """The sandbox with daemon_harness's app, so its log_in and child processes fit."""
    sandbox = TestSandbox(
        data_dir=tmp_path / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        processing_seconds=0.2,
    )
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def refresher(tmp_path: Path) -> Path:
    script = tmp_path / "refresher.py"
    script.write_text(REFRESHER.format(daemon_tests=str(REPO / "tests" / "e2e")))
    return script


def expired_login(store: TokenStore, sandbox: TestSandbox) -> TokenSet:
    """A fresh sandbox login whose stored copy says it expired: every process must renew it."""
    log_in(store, sandbox)
    stored = store.get_tokens(CLIENT_ID)
    assert stored is not None
    expired = dataclasses.replace(stored, expires_at=time.time() - 10)
    store.set_tokens(CLIENT_ID, expired)
    return expired


def works(sandbox: TestSandbox, access_token: str) -> bool:
    me = httpx.get(
        f"{sandbox.base_url}/me", headers={"Authorization": f"OAuth {access_token}"}, timeout=30
    )
    return me.status_code == 200


def config_for(sandbox: TestSandbox) -> SoundCloudConfig:
    return SoundCloudConfig(
        client_id=CLIENT_ID, api_url=sandbox.base_url, auth_url=sandbox.base_url
    )


def race(
    tmp_path: Path,
    refresher: Path,
    sandbox: TestSandbox,
    state_dirs: list[Path],
    rng: random.Random,
    round_no: int,
) -> list[dict[str, Any]]:
    """Start one refresher per state dir, all released by one barrier file; their answers."""
    work = tmp_path / f"round-{round_no}"
    work.mkdir()
    barrier = work / "go"
    env = daemon_env(tmp_path)
    order = list(range(len(state_dirs)))
    rng.shuffle(order)
    procs: dict[int, subprocess.Popen[str]] = {}
    for i in order:
        procs[i] = subprocess.Popen(
            [
                sys.executable,
                str(refresher),
                str(keyring_file(tmp_path)),
                str(state_dirs[i]),
                sandbox.base_url,
                str(work / f"ready-{i}"),
                str(barrier),
                f"{rng.uniform(0, 0.03):.4f}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        wait_for(
            lambda: (
                all((work / f"ready-{i}").exists() for i in procs)
                or any(p.poll() is not None for p in procs.values())
            ),
            timeout=60,
            what="both refreshers to be ready",
        )
        ready = work / "go.tmp"
        ready.write_text(f"{time.time() + 0.05:.6f}")
        os.replace(ready, barrier)
        results = []
        for i in sorted(procs):
            out, err = procs[i].communicate(timeout=90)
            assert procs[i].returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- (a) two processes, one refresh ------------------------------------------------------------


def test_two_processes_refreshing_at_once_make_one_refresh_and_keep_the_login(
    tmp_path: Path, box: TestSandbox, refresher: Path
) -> None:
    store = file_token_store(keyring_file(tmp_path))
    # A slow token endpoint: without the lock the second POST always lands while the first
    # answer is on its way, so the race is certain rather than a matter of timing.
    box.faults.update(token_answer_delay=0.3)
    rng = random.Random(20260714)
    shared = tmp_path / "state"
    for round_no in range(5):
        expired_login(store, box)
        before = box.refresh_count
        results = race(tmp_path, refresher, box, [shared, shared], rng, round_no)
        assert [r["ok"] for r in results] == [True, True], results
        assert box.refresh_count - before == 1, f"round {round_no}: the sandbox saw two refreshes"
        stored = store.get_tokens(CLIENT_ID)
        assert stored is not None and stored.refresh_token is not None, "logged out"
        assert {r["token"] for r in results} == {digest(stored.access_token)}
        assert works(box, stored.access_token)
    assert refresh_lock_path(shared).exists()
    # What is stored still renews: its refresh token is the live one.
    manager = TokenManager(store, config_for(box), httpx.Client(timeout=30), state_dir=shared)
    assert works(box, manager.force_refresh(stored.access_token))


def test_without_a_shared_lock_file_the_same_race_refreshes_twice(
    tmp_path: Path, box: TestSandbox, refresher: Path
) -> None:
    """The control for the test above: one refresh there is the lock's doing, not luck."""
    store = file_token_store(keyring_file(tmp_path))
    box.faults.update(token_answer_delay=0.3)
    rng = random.Random(20260714)
    for round_no in range(2):
        expired_login(store, box)
        before = box.refresh_count
        apart = [tmp_path / f"state-a{round_no}", tmp_path / f"state-b{round_no}"]
        race(tmp_path, refresher, box, apart, rng, round_no)
        assert box.refresh_count - before == 2


# --- (b) a refusal after another process changed the keyring ------------------------------------


def test_invalid_grant_after_another_process_refreshed_keeps_its_tokens(
    tmp_path: Path, box: TestSandbox, refresher: Path
) -> None:
    """Another process that does not share the lock file (another state_dir, an older
    releaseosd) renews between this one's read and its POST: the refusal must not log out."""
    store = file_token_store(keyring_file(tmp_path))
    expired_login(store, box)
    manager = TokenManager(
        store, config_for(box), httpx.Client(timeout=30), state_dir=tmp_path / "state"
    )
    other: list[dict[str, Any]] = []
    rng = random.Random(1)

    def another_process_renews_first() -> None:
        if not other:
            other.extend(race(tmp_path, refresher, box, [tmp_path / "other-state"], rng, 0))

    manager.before_refresh = another_process_renews_first
    token = manager.access_token()
    assert other[0]["ok"] is True
    assert box.refresh_count == 2  # the other's, then ours with the token it had used up
    stored = store.get_tokens(CLIENT_ID)
    assert stored is not None and stored.refresh_token is not None, "the other's login was deleted"
    assert digest(token) == digest(stored.access_token) == other[0]["token"]
    assert works(box, token)


# --- (c) short-lived tokens are not renewed on every call ----------------------------------------


@pytest.mark.parametrize("recorded_issue", [True, False], ids=["issued_at", "old-entry"])
def test_a_30_second_token_is_renewed_at_half_life_not_on_every_call(
    tmp_path: Path, recorded_issue: bool
) -> None:
    clock = Clock()
    sandbox = TestSandbox(
        data_dir=tmp_path / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_ttl=30,
        clock=clock,
    )
    sandbox.start()
    try:
        store = file_token_store(keyring_file(tmp_path))
        store.set_client_secret(CLIENT_ID, CLIENT_SECRET)
        pair = sandbox.issue_tokens(CLIENT_ID)
        issued = clock.now if recorded_issue else None  # old entries say nothing of it
        store.set_tokens(
            CLIENT_ID,
            TokenSet(pair.access_token, pair.refresh_token, clock.now + 30, issued_at=issued),
        )
        http = httpx.Client(timeout=30)
        manager = TokenManager(
            store, config_for(sandbox), http, clock=clock, state_dir=tmp_path / "state"
        )
        client = SoundCloudClient(config_for(sandbox), manager, http)
        for _ in range(120):
            assert client.me()["username"] == "sandbox-artist"
            clock.now += 1
        # Renewed when 15 s (half the lifetime) are left: at 15, 30, …, 105 s; an old entry is
        # taken for an hour-long token once, so it renews at once and then at half-life.
        expected = len(range(15, 120, 15)) + (0 if recorded_issue else 1)
        assert sandbox.refresh_count == expected
        stored = store.get_tokens(CLIENT_ID)
        assert stored is not None and stored.issued_at is not None
        assert stored.lifetime == pytest.approx(30)
    finally:
        sandbox.stop()


# --- (d) an answer lost after the token rotated ---------------------------------------------------


def test_a_lost_refresh_answer_keeps_the_access_token_until_it_expires(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="releaseosd")
    clock = Clock()
    sandbox = TestSandbox(
        data_dir=tmp_path / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_ttl=3600,
        clock=clock,
    )
    sandbox.start()
    try:
        store = file_token_store(keyring_file(tmp_path))
        store.set_client_secret(CLIENT_ID, CLIENT_SECRET)
        pair = sandbox.issue_tokens(CLIENT_ID)
        expires_at = clock.now + 3600
        store.set_tokens(
            CLIENT_ID,
            TokenSet(pair.access_token, pair.refresh_token, expires_at, issued_at=clock.now),
        )
        http = httpx.Client(timeout=30)
        config = config_for(sandbox)
        state_dir = tmp_path / "state"
        manager = TokenManager(store, config, http, clock=clock, state_dir=state_dir)
        client = SoundCloudClient(config, manager, http)

        clock.now = expires_at - 30  # due for renewal
        sandbox.faults.update(drop_token_answers=1)
        assert client.me()["username"] == "sandbox-artist"  # the old token, still valid
        assert sandbox.refresh_count == 1
        stored = store.get_tokens(CLIENT_ID)
        assert stored is not None and stored.access_token == pair.access_token
        # Nobody knows yet that the stored refresh token died with the lost answer.
        assert store.login_outlook(CLIENT_ID, clock.now) == LoginOutlook(True, True, None, None)

        clock.now += 5  # a moment later: no new POST yet
        assert client.me()["username"] == "sandbox-artist"
        assert sandbox.refresh_count == 1
        clock.now += 10  # the retry: SoundCloud refuses the dead token
        assert client.me()["username"] == "sandbox-artist"
        assert sandbox.refresh_count == 2
        stored = store.get_tokens(CLIENT_ID)
        assert stored is not None
        assert (stored.access_token, stored.refresh_token) == (pair.access_token, None)
        assert stored.refused_at == clock.now

        outlook = store.login_outlook(CLIENT_ID, clock.now)
        assert (outlook.usable, outlook.renewable, outlook.works_until) == (
            True,
            False,
            expires_at,
        )
        same_day = time.localtime(expires_at)[:3] == time.localtime(clock.now)[:3]
        until = time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", time.localtime(expires_at))
        assert outlook.problem == f"renewal refused: run 'releaseosd auth login' before {until}"
        info = auth.status(config, store=store, http=http, clock=clock, state_dir=state_dir)
        assert info["logged_in"] is True and info["error"] == outlook.problem

        while clock.now < expires_at - 1:  # uploads and releases go on until the expiry
            clock.now = min(clock.now + 4, expires_at - 1)
            assert client.me()["username"] == "sandbox-artist"
        assert sandbox.refresh_count == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert sum("could not renew" in w for w in warnings) == 1
        assert sum("refused to renew" in w for w in warnings) == 1
        assert all(pair.access_token not in w and pair.refresh_token not in w for w in warnings)

        clock.now = expires_at + 1
        with pytest.raises(NeedsLogin, match="releaseosd auth login"):
            client.me()
        outlook = store.login_outlook(CLIENT_ID, clock.now)
        assert (outlook.usable, outlook.renewable, outlook.works_until) == (False, False, None)
        assert outlook.problem is not None and "expired" in outlook.problem
        assert sandbox.refresh_count == 2
    finally:
        sandbox.stop()


def test_login_outlook_of_each_stored_state(tmp_path: Path) -> None:
    store = TokenStore(MemoryKeyring())
    assert store.login_outlook("", T0).problem == "soundcloud.client_id is not set in the config"
    nothing = store.login_outlook("cid", T0)
    assert (nothing.usable, nothing.renewable) == (False, False)
    assert "releaseosd auth login" in (nothing.problem or "")
    store.set_tokens("cid", TokenSet("a", "r", T0 - 5))
    no_secret = store.login_outlook("cid", T0)
    assert (no_secret.usable, no_secret.renewable) == (False, False)
    assert "releaseosd auth setup" in (no_secret.problem or "")
    store.set_client_secret("cid", "s")
    # Expired but renewable: the next call renews it.
    assert store.login_outlook("cid", T0) == LoginOutlook(True, True, None, None)
    store.set_tokens("cid", TokenSet("a", None, T0 + 600))
    unrenewable = store.login_outlook("cid", T0)
    assert (unrenewable.usable, unrenewable.renewable, unrenewable.works_until) == (
        True,
        False,
        T0 + 600,
    )
    assert (unrenewable.problem or "").startswith("it cannot be renewed: run 'releaseosd auth")


# --- the keyring comes first ---------------------------------------------------------------------


class _Recorder(logging.Handler):
    def __init__(self, events: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(("log", record.getMessage()))


def test_the_new_tokens_are_stored_before_any_log_line(tmp_path: Path, box: TestSandbox) -> None:
    events: list[tuple[str, ...]] = []
    store = TokenStore(MemoryKeyring(events))
    expired_login(store, box)
    events.clear()
    recorder = _Recorder(events)
    logger = logging.getLogger("releaseosd.soundcloud.tokens")
    logger.addHandler(recorder)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        manager = TokenManager(
            store, config_for(box), httpx.Client(timeout=30), state_dir=tmp_path / "state"
        )
        token = manager.access_token()
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(old_level)
    writes = [i for i, e in enumerate(events) if e[0] == "keyring-set" and token in e[-1]]
    logs = [i for i, e in enumerate(events) if e[0] == "log"]
    assert writes and logs and writes[0] < logs[0], events


class _FlakyWrites(MemoryKeyring):
    """A keyring that refuses the next N writes (a keyring locked at the wrong moment)."""

    refuse = 0

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.refuse > 0:
            self.refuse -= 1
            raise keyring.errors.KeyringLocked("locked")
        super().set_password(service, username, password)


def test_a_renewed_set_the_keyring_refused_is_stored_at_the_next_call(
    tmp_path: Path, box: TestSandbox
) -> None:
    backend = _FlakyWrites()
    store = TokenStore(backend)
    expired_login(store, box)
    manager = TokenManager(
        store, config_for(box), httpx.Client(timeout=30), state_dir=tmp_path / "state"
    )
    backend.refuse = 1
    with pytest.raises(Exception, match="keyring is locked"):
        manager.access_token()
    token = manager.access_token()  # stores the renewed set first; no second POST
    assert box.refresh_count == 1
    stored = store.get_tokens(CLIENT_ID)
    assert stored is not None and stored.access_token == token and works(box, token)


# --- the lock's timeout ---------------------------------------------------------------------------


def test_a_stuck_lock_holder_gives_a_retryable_error_or_the_still_valid_token(
    tmp_path: Path, box: TestSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    store = file_token_store(keyring_file(tmp_path))
    log_in(store, box)
    stored = store.get_tokens(CLIENT_ID)
    assert stored is not None
    clock = Clock(stored.expires_at - 30)  # due, still valid
    state_dir = tmp_path / "state"
    manager = TokenManager(
        store,
        config_for(box),
        httpx.Client(timeout=30),
        clock=clock,
        state_dir=state_dir,
        lock_timeout=0.2,
    )
    assert manager.current() is not None
    lock = os.open(refresh_lock_path(state_dir), os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a stuck releaseosd holds it
        assert manager.access_token() == stored.access_token
        assert "keeps using it" in caplog.text
        clock.now = stored.expires_at + 1
        with pytest.raises(Retryable, match=r"soundcloud-refresh\.lock") as info:
            manager.access_token()
        assert "will try again" in str(info.value)
    finally:
        os.close(lock)
    assert box.refresh_count == 0
    assert works(box, manager.access_token())
    assert box.refresh_count == 1


def test_status_explains_a_state_dir_where_the_lock_cannot_be_made(
    tmp_path: Path, box: TestSandbox
) -> None:
    store = file_token_store(keyring_file(tmp_path))
    log_in(store, box)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    info = auth.status(config_for(box), store=store, state_dir=blocker / "state")
    assert info["logged_in"] is None
    assert "soundcloud-refresh.lock" in info["error"] and "state_dir" in info["error"]
    assert box.refresh_count == 0


# --- (e) the real CLI, twice at once --------------------------------------------------------------


def test_two_auth_status_commands_at_once_with_an_expired_token_keep_the_login(
    tmp_path: Path, box: TestSandbox
) -> None:
    config = write_config(tmp_path, box.base_url)
    store = file_token_store(keyring_file(tmp_path))
    expired_login(store, box)
    box.faults.update(token_answer_delay=1.0)  # a slow link: both commands meet in the refresh
    env = daemon_env(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "auth", "status"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [proc.communicate(timeout=90) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
        assert "logged in as sandbox-artist" in out and "but:" not in out, out
    assert box.refresh_count == 1
    stored = store.get_tokens(CLIENT_ID)
    assert stored is not None and stored.refresh_token is not None
    assert works(box, stored.access_token)
    assert (tmp_path / "state" / "soundcloud-refresh.lock").exists()
