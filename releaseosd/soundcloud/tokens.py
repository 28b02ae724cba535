"""SoundCloud secrets in the keyring, and access tokens that refresh themselves safely.

Secrets live only in the keyring (service "releaseosd"): the client secret under
`client_secret:<client_id>` and the token set as one JSON entry under `tokens:<client_id>`, so the
single-use refresh token is replaced in the same write as the access token it came with.

SoundCloud's refresh tokens are single-use: two refreshes racing end in `invalid_grant` and a
forced login. `TokenManager` therefore refreshes under two locks: a thread lock (one POST per
expiry, however many threads ask) and a lock file in the state directory (`refresh_lock_path`),
so the daemon and a CLI command beside it never refresh at once either. Under the file lock it
re-reads the keyring before posting (another process may have refreshed while it waited), stores
the new set before anything else, and after a refusal looks again before forgetting anything.

An answer can still be lost after SoundCloud rotated the token (a dropped connection, a killed
process); nothing brings the old refresh token back. So a token set is renewed no earlier than
needed (the margin is at most half its lifetime), a transient failure keeps the still-valid
access token in use, and a refused renewal keeps that access token until it expires, marked as
not renewable (`TokenStore.login_outlook` tells the daemon until when it works).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import keyring
import keyring.backends.fail
import keyring.backends.null
import keyring.errors

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud.errors import (
    LOGIN_HINT,
    KeyringUnavailable,
    NeedsLogin,
    NotConfigured,
    Permanent,
    Retryable,
    classify,
    oauth_error_code,
)

log = logging.getLogger(__name__)

SERVICE = "releaseosd"
REFRESH_MARGIN_SECONDS = 60.0
"""Renew this long before expiry, but never earlier than half the token's lifetime."""
ASSUMED_LIFETIME_SECONDS = 3600.0
"""Lifetime of a stored set written without `issued_at` (SoundCloud's tokens live an hour)."""
REFRESH_LOCK_FILE = "soundcloud-refresh.lock"
REFRESH_LOCK_TIMEOUT = 60.0
"""How long to wait for another process's refresh before giving up (retryable)."""
REFRESH_RETRY_SECONDS = 15.0
"""After a transient refresh failure, the still-valid token is used up to this long (and at most
a third of its remaining life) before renewing is tried again."""
TOKEN_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

KEYRING_HELP = (
    "releaseosd keeps SoundCloud secrets only in the system keyring. On a desktop, unlock your "
    "login keyring. On a headless machine: install gnome-keyring (Debian: 'apt install "
    "gnome-keyring') and the Python package secretstorage, start releaseosd inside a D-Bus "
    "session ('dbus-run-session -- releaseosd …') and unlock the keyring first with "
    "'gnome-keyring-daemon --unlock --components=secrets' (it reads the password on stdin). "
    "Or pick another backend with PYTHON_KEYRING_BACKEND=<module.Class> "
    "(list them with 'keyring --list-backends')."
)


def _mask(secret: str | None) -> str:
    return "None" if secret is None else "'********'"


def _clock_time(at: float, now: float) -> str:
    """A local wall-clock time for messages: "14:05", with the date when it is not today."""
    local = time.localtime(at)
    same_day = time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d", time.localtime(now))
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", local)


def _optional_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, repr=False)
class TokenSet:
    """One OAuth answer. Never printed: repr and str mask the tokens.

    `issued_at` is when SoundCloud answered (None in entries written before it was recorded);
    `refused_at` is when SoundCloud refused to renew this set (`refresh_token` is then None: the
    access token still works until `expires_at`, but nothing renews it).
    """

    access_token: str
    refresh_token: str | None
    expires_at: float  # wall-clock epoch seconds
    scope: str = ""
    issued_at: float | None = None
    refused_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token={_mask(self.access_token)}, "
            f"refresh_token={_mask(self.refresh_token)}, expires_at={self.expires_at:.0f})"
        )

    __str__ = __repr__

    @property
    def lifetime(self) -> float:
        """Seconds from issue to expiry; ASSUMED_LIFETIME_SECONDS when the entry does not say."""
        if self.issued_at is not None and self.expires_at > self.issued_at:
            return self.expires_at - self.issued_at
        return ASSUMED_LIFETIME_SECONDS

    def renew_at(self, margin: float) -> float:
        """When to renew: `margin` before expiry, but no earlier than half the lifetime."""
        return self.expires_at - min(margin, self.lifetime / 2)

    def valid_at(self, now: float) -> bool:
        return self.expires_at > now

    def same_login(self, other: TokenSet) -> bool:
        """The same tokens (not a set another process or login wrote meanwhile)."""
        return (self.access_token, self.refresh_token) == (other.access_token, other.refresh_token)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "v": 1,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
        }
        # Optional keys, left out when unknown: older releaseosd versions read the entry as before.
        if self.issued_at is not None:
            data["issued_at"] = self.issued_at
        if self.refused_at is not None:
            data["refused_at"] = self.refused_at
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise ValueError("not a releaseosd token entry")
        refresh = data.get("refresh_token")
        return cls(
            access_token=data["access_token"],
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=float(data.get("expires_at", 0.0)),
            scope=str(data.get("scope") or ""),
            issued_at=_optional_float(data.get("issued_at")),
            refused_at=_optional_float(data.get("refused_at")),
        )

    @classmethod
    def from_response(cls, data: Any, now: float, previous_refresh: str | None = None) -> TokenSet:
        """From the token endpoint's JSON (`access_token`, `expires_in`, `refresh_token`, …)."""
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise Retryable("SoundCloud's token endpoint answered without an access_token")
        try:
            expires_in = float(data.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600.0
        refresh = data.get("refresh_token")
        return cls(
            access_token=data["access_token"],
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            expires_at=now + expires_in,
            scope=str(data.get("scope") or ""),
            issued_at=now,
        )


@dataclass(frozen=True)
class LoginOutlook:
    """What the stored SoundCloud login is good for, without asking SoundCloud.

    usable       an API call can be made now without a new login (the access token is valid, or
                 a refresh token and the client secret are stored to renew it).
    renewable    a refresh token and the client secret are stored, so the login renews itself.
                 Only SoundCloud knows whether the refresh token still works: after an answer
                 lost in transit it is dead, which shows here once a renewal has been refused.
    works_until  epoch seconds after which releaseosd cannot reach SoundCloud without
                 'releaseosd auth login': the access token's expiry when the login is usable but
                 not renewable; None when it is renewable (no known end) or not usable at all.
    problem      what to tell the producer, in plain words, e.g. "renewal refused: run
                 'releaseosd auth login' before 14:05"; None when the login is fine.
    """

    usable: bool
    renewable: bool
    works_until: float | None
    problem: str | None

    @classmethod
    def of(cls, tokens: TokenSet | None, secret_stored: bool, now: float) -> LoginOutlook:
        """The outlook of a stored token set (None: nothing stored) at `now`."""
        if tokens is None:
            return cls(False, False, None, f"not logged in to SoundCloud; {LOGIN_HINT}")
        if tokens.refresh_token is not None and secret_stored:
            return cls(True, True, None, None)
        if tokens.refresh_token is None:
            fix = LOGIN_HINT
            why = "renewal refused" if tokens.refused_at is not None else "it cannot be renewed"
        else:
            fix = "run 'releaseosd auth setup'"
            why = "no client secret is stored to renew it"
        if not tokens.valid_at(now):
            return cls(False, False, None, f"the SoundCloud login expired ({why}); {fix}")
        return cls(
            True,
            False,
            tokens.expires_at,
            f"{why}: {fix} before {_clock_time(tokens.expires_at, now)}",
        )


def refresh_lock_path(state_dir: Path) -> Path:
    """The lock file every releaseosd process using `state_dir` takes to refresh the login."""
    return state_dir / REFRESH_LOCK_FILE


@contextlib.contextmanager
def refresh_lock(path: Path | None, timeout: float = REFRESH_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the cross-process refresh lock (`fcntl.flock` on `path`); None: no lock (one process).

    Waits up to `timeout` seconds for another holder, then raises Retryable. The kernel drops
    the lock when its holder exits, however it exits; the file itself is never removed (removing
    it would let two processes lock two different files).
    """
    if path is None:
        yield
        return
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NotConfigured(
            f"cannot open {path} ({exc.strerror or exc}), the lock that keeps two releaseosd "
            "processes from renewing the SoundCloud login at once; make state_dir in the config "
            "writable for this user"
        ) from None
    try:
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise NotConfigured(
                        f"cannot lock {path} ({exc.strerror or exc}); put state_dir on a local "
                        "disk that supports file locks"
                    ) from None
            if time.monotonic() >= deadline:
                raise Retryable(
                    f"another releaseosd process has been renewing the SoundCloud login for "
                    f"over {timeout:.0f} s (it holds {path}); will try again"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        yield
    finally:
        os.close(fd)  # also releases the lock


class MemoryKeyring:
    """Enough of keyring's backend interface for TokenStore; forgets everything on exit."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._items.pop((service, username), None)


class TokenStore:
    """The keyring, for one service name; every failure becomes KeyringUnavailable with a fix."""

    def __init__(self, backend: Any | None = None, service: str = SERVICE) -> None:
        self._backend = backend
        self.service = service

    @staticmethod
    def secret_key(client_id: str) -> str:
        return f"client_secret:{client_id}"

    @staticmethod
    def tokens_key(client_id: str) -> str:
        return f"tokens:{client_id}"

    def backend(self) -> Any:
        backend = self._backend if self._backend is not None else keyring.get_keyring()
        if isinstance(backend, keyring.backends.fail.Keyring):
            raise KeyringUnavailable(f"No usable keyring backend was found. {KEYRING_HELP}")
        if isinstance(backend, keyring.backends.null.Keyring):
            raise KeyringUnavailable(
                f"The keyring backend in use (null) throws secrets away. {KEYRING_HELP}"
            )
        return backend

    def check(self) -> str:
        """Prove the keyring works (read a key); returns the backend's name for `doctor`."""
        backend = self.backend()
        self._call("read", backend.get_password, self.service, "releaseosd:probe")
        # keyring's chainer hides which store answers; name the ones behind it, best first.
        parts = getattr(backend, "backends", None) or [backend]
        return ", ".join(f"{type(b).__module__}.{type(b).__name__}" for b in parts)

    def get_client_secret(self, client_id: str) -> str | None:
        return self._get(self.secret_key(client_id))

    def set_client_secret(self, client_id: str, secret: str) -> None:
        self._set(self.secret_key(client_id), secret)

    def get_tokens(self, client_id: str) -> TokenSet | None:
        text = self._get(self.tokens_key(client_id))
        if text is None:
            return None
        try:
            return TokenSet.from_json(text)
        except (ValueError, TypeError):
            log.warning("the stored SoundCloud token entry is unreadable; a new login is needed")
            return None

    def set_tokens(self, client_id: str, tokens: TokenSet) -> None:
        self._set(self.tokens_key(client_id), tokens.to_json())

    def delete_tokens(self, client_id: str) -> None:
        self._delete(self.tokens_key(client_id))

    def login_outlook(self, client_id: str, now: float | None = None) -> LoginOutlook:
        """Is the stored login usable and renewable, and until when does it work without a new
        'releaseosd auth login'? See LoginOutlook for the fields.

        Keyring reads only (no network, no lock): cheap enough for the daemon to call before
        each scheduled release, e.g. to warn when one is due after `works_until`. A keyring that
        cannot be read, or no client id, gives an unusable outlook whose `problem` says why,
        instead of an exception. `now` is epoch seconds (default: time.time()).
        """
        now = time.time() if now is None else now
        if not client_id:
            return LoginOutlook(False, False, None, "soundcloud.client_id is not set in the config")
        try:
            tokens = self.get_tokens(client_id)
            secret_stored = self.get_client_secret(client_id) is not None
        except KeyringUnavailable as exc:
            return LoginOutlook(False, False, None, str(exc))
        return LoginOutlook.of(tokens, secret_stored, now)

    def delete_all(self, client_id: str) -> None:
        self.delete_tokens(client_id)
        self._delete(self.secret_key(client_id))

    def _get(self, key: str) -> str | None:
        value = self._call("read", self.backend().get_password, self.service, key)
        return value if isinstance(value, str) else None

    def _set(self, key: str, value: str) -> None:
        self._call("write", self.backend().set_password, self.service, key, value)

    def _delete(self, key: str) -> None:
        with contextlib.suppress(_Missing):
            self._call("delete", self.backend().delete_password, self.service, key)

    def _call(self, what: str, func: Callable[..., Any], *args: str) -> Any:
        # The key names are safe to show; values never appear in these messages.
        try:
            return func(*args)
        except keyring.errors.PasswordDeleteError as exc:
            raise _Missing from exc
        except keyring.errors.KeyringLocked as exc:
            raise KeyringUnavailable(
                f"The keyring is locked, so releaseosd cannot {what} '{args[1]}'. {KEYRING_HELP}"
            ) from exc
        except keyring.errors.KeyringError as exc:
            raise KeyringUnavailable(
                f"The keyring failed to {what} '{args[1]}' ({type(exc).__name__}: {exc}). "
                f"{KEYRING_HELP}"
            ) from exc
        except Exception as exc:  # backends raise their own D-Bus/file errors
            raise KeyringUnavailable(
                f"The keyring backend failed to {what} '{args[1]}' ({type(exc).__name__}). "
                f"{KEYRING_HELP}"
            ) from exc


class _Missing(Exception):
    pass


def request_tokens(
    http: httpx.Client,
    config: SoundCloudConfig,
    form: dict[str, str],
    now: float,
    previous_refresh: str | None = None,
) -> TokenSet:
    """POST the token endpoint; raise `InvalidGrant` when SoundCloud refuses the code or token.

    `form` carries the secrets; it goes in the body, never the URL, and is never logged.
    """
    try:
        response = http.post(f"{config.auth_url}/oauth/token", data=form, timeout=TOKEN_TIMEOUT)
    except httpx.HTTPError as exc:
        raise classify(exc, action="getting a SoundCloud token") from None
    if response.status_code in (400, 401):
        code = oauth_error_code(response)
        if code == "invalid_grant":
            raise InvalidGrant(
                "SoundCloud refused the grant (invalid_grant)",
                status=response.status_code,
                soundcloud_message=code,
            )
        if code in ("invalid_client", "unauthorized_client"):
            raise NotConfigured(
                f"SoundCloud rejected the app's credentials ({code}): check soundcloud.client_id "
                "in the config and store the matching secret again with 'releaseosd auth setup'",
                status=response.status_code,
                soundcloud_message=code,
            )
        raise Permanent(
            f"SoundCloud's token endpoint refused the request ({response.status_code}"
            f"{': ' + code if code else ''})",
            status=response.status_code,
            soundcloud_message=code,
        )
    if not response.is_success:
        raise classify(response, action="getting a SoundCloud token")
    try:
        data = response.json()
    except ValueError:
        raise Retryable(
            "SoundCloud's token endpoint answered with something that is not JSON"
        ) from None
    return TokenSet.from_response(data, now, previous_refresh)


def sign_out(http: httpx.Client, config: SoundCloudConfig, access_token: str) -> bool:
    """Best effort: ask SoundCloud to end this token's session; True if it agreed."""
    try:
        response = http.post(
            f"{config.auth_url}/sign-out",
            json={"access_token": access_token},
            timeout=httpx.Timeout(10.0),
        )
    except httpx.HTTPError as exc:
        log.info(
            "SoundCloud sign-out failed (%s); forgetting the tokens anyway", type(exc).__name__
        )
        return False
    if not response.is_success:
        log.info(
            "SoundCloud sign-out answered %s; forgetting the tokens anyway", response.status_code
        )
    return response.is_success


class InvalidGrant(Permanent):
    """The authorization code or refresh token is used up, expired or does not match."""


class TokenManager:
    """Hands out a valid access token; refreshes once, under locks, storing before returning.

    `state_dir` is the directory whose lock file (`refresh_lock_path`) serializes refreshes
    across processes; every construction in the product passes the config's `state_dir`. None
    means no cross-process lock, which is safe only while a single process uses the login (unit
    tests). `lock_timeout` bounds the wait for another process's refresh (then: Retryable).
    """

    def __init__(
        self,
        store: TokenStore,
        config: SoundCloudConfig,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
        margin: float = REFRESH_MARGIN_SECONDS,
        *,
        state_dir: Path | None = None,
        lock_timeout: float = REFRESH_LOCK_TIMEOUT,
    ) -> None:
        self._store = store
        self._config = config
        self._http = http
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._lock_path = refresh_lock_path(state_dir) if state_dir is not None else None
        self._lock_timeout = lock_timeout
        self._current: TokenSet | None = None
        # A renewed set the keyring failed to store: the only live refresh token is in memory.
        self._unsaved = False
        # After a transient refresh failure: keep the valid token without retrying until then.
        self._retry_at: float | None = None
        self._warned = False
        # Called before each refresh POST; the client's rate-limit hold raises from here, so a
        # refresh does not go out while SoundCloud has asked everyone to wait.
        self.before_refresh: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self._config.client_id!r})"

    def access_token(self) -> str:
        """A valid token, renewed first when it is due (see TokenSet.renew_at).

        When renewing fails for a reason that may pass (network, 5xx, 429, another process
        holding the lock) and the current token is still valid, that token is returned (with
        one warning in the log) and renewing is tried again a little later.
        """
        with self._lock:
            self._store_unsaved()
            tokens = self._load()
            if self._clock() >= tokens.renew_at(self._margin):
                tokens = self._renew(tokens, rejected=None)
            return tokens.access_token

    def force_refresh(self, stale_token: str) -> str:
        """After a 401 with `stale_token`: refresh, unless another thread already did."""
        with self._lock:
            self._store_unsaved()
            tokens = self._load()
            if tokens.access_token != stale_token:
                return tokens.access_token
            return self._renew(tokens, rejected=stale_token).access_token

    def current(self) -> TokenSet | None:
        """The token set in use without refreshing (for `auth status`)."""
        with self._lock:
            try:
                return self._load()
            except NeedsLogin:
                return None

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return refresh_lock(self._lock_path, self._lock_timeout)

    def _load(self) -> TokenSet:
        """The stored set, read afresh at every use: after 'auth logout' (or a login to another
        account) nothing more is sent with the old tokens. A keyring that cannot be read for a
        moment (locked, busy) leaves the set already in hand usable."""
        if not self._unsaved:
            client_id = self._client_id()
            try:
                found = self._store.get_tokens(client_id) if self._current is not None else None
                if found is None:
                    # Under the file lock: a keyring that rewrites its file in place reads as
                    # empty while another process stores a renewed set.
                    with self._locked():
                        found = self._store.get_tokens(client_id)
                self._current = found
            except (KeyringUnavailable, Retryable):
                if self._current is None:
                    raise
                log.warning("the keyring cannot be read just now; using the login in memory")
        if self._current is None:
            raise NeedsLogin(f"releaseosd is not logged in to SoundCloud; {LOGIN_HINT}")
        return self._current

    def _client_id(self) -> str:
        if not self._config.client_id:
            raise NotConfigured(
                "soundcloud.client_id is not set in the config; add your SoundCloud app's client id"
            )
        return self._config.client_id

    def _store_unsaved(self) -> None:
        if not self._unsaved or self._current is None:
            return
        client_id = self._client_id()
        with self._locked():
            self._store.set_tokens(client_id, self._current)
        self._unsaved = False
        log.info("stored the renewed SoundCloud login that the keyring had refused")

    def _renew(self, held: TokenSet, rejected: str | None) -> TokenSet:
        """Renew `held` (or take what another process stored); `rejected` is an access token
        SoundCloud has just answered 401 to, which must not be handed out again."""
        now = self._clock()
        if (
            rejected is None
            and self._retry_at is not None
            and now < self._retry_at
            and held.valid_at(now)
        ):
            return held
        try:
            with self._locked():
                tokens = self._renew_locked(held, rejected)
        except Retryable as exc:
            now = self._clock()
            current = self._current
            if current is None or not current.valid_at(now) or current.access_token == rejected:
                raise
            self._retry_at = now + min(REFRESH_RETRY_SECONDS, (current.expires_at - now) / 3)
            if not self._warned:
                self._warned = True
                log.warning(
                    "could not renew the SoundCloud login (%s); the current access token works "
                    "until %s, so releaseosd keeps using it and tries again",
                    exc,
                    _clock_time(current.expires_at, now),
                )
            return current
        self._retry_at = None
        self._warned = False
        return tokens

    def _renew_locked(self, held: TokenSet, rejected: str | None) -> TokenSet:
        client_id = self._client_id()
        # Another process (the CLI beside the daemon) may have refreshed while this one waited
        # for the lock: its new refresh token is in the keyring, and ours is dead.
        stored = self._store.get_tokens(client_id)
        self._current = stored
        if stored is None:
            raise NeedsLogin(f"the SoundCloud login was removed; {LOGIN_HINT}")
        if (
            not stored.same_login(held)
            and self._clock() < stored.renew_at(self._margin)
            and stored.access_token != rejected
        ):
            return stored
        return self._post_refresh(client_id, stored, rejected, retry=True)

    def _post_refresh(
        self, client_id: str, tokens: TokenSet, rejected: str | None, *, retry: bool
    ) -> TokenSet:
        if tokens.refresh_token is None:
            if tokens.valid_at(self._clock()) and tokens.access_token != rejected:
                return tokens  # renewal was refused earlier: it works until it expires
            raise NeedsLogin(f"the SoundCloud login expired and cannot be renewed; {LOGIN_HINT}")
        secret = self._store.get_client_secret(client_id)
        if secret is None:
            raise NotConfigured(
                f"no client secret stored for SoundCloud client id {client_id}; "
                "run 'releaseosd auth setup'"
            )
        if self.before_refresh is not None:
            self.before_refresh()
        form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": secret,
            "refresh_token": tokens.refresh_token,
            "redirect_uri": self._config.redirect_uri,
        }
        try:
            fresh = request_tokens(
                self._http, self._config, form, self._clock(), tokens.refresh_token
            )
        except InvalidGrant:
            return self._refused(client_id, tokens, rejected, retry=retry)
        # The old refresh token is dead now and the new one exists only in this answer: the
        # keyring gets it before anything else happens (a log line, the caller's request), so
        # that nothing but a crash in this very moment can strand the login.
        self._current = fresh
        try:
            self._store.set_tokens(client_id, fresh)
        except KeyringUnavailable:
            self._unsaved = True  # kept in memory, stored first thing on the next call
            raise
        log.info(
            "renewed the SoundCloud access token (valid for %.0f s)",
            fresh.expires_at - self._clock(),
        )
        return fresh

    def _refused(
        self, client_id: str, presented: TokenSet, rejected: str | None, *, retry: bool
    ) -> TokenSet:
        # Whoever changed the keyring since it was read (a process without this lock file: one
        # with another state_dir, an older releaseosd) holds the live set: look before
        # forgetting anything, and never delete a set that changed.
        stored = self._store.get_tokens(client_id)
        now = self._clock()
        self._current = stored
        if stored is None:
            raise NeedsLogin(f"the SoundCloud login was removed; {LOGIN_HINT}")
        if not stored.same_login(presented):
            if stored.valid_at(now) and stored.access_token != rejected:
                return stored
            if retry:
                return self._post_refresh(client_id, stored, rejected, retry=False)
            raise NeedsLogin(f"SoundCloud refused to renew the login; {LOGIN_HINT}")
        if presented.valid_at(now) and presented.access_token != rejected:
            # The refresh token is dead (its answer was lost, or it was revoked), but the access
            # token still works: keep it, marked as not renewable, until it expires.
            kept = dataclasses.replace(presented, refresh_token=None, refused_at=now)
            self._store.set_tokens(client_id, kept)
            self._current = kept
            log.warning(
                "SoundCloud refused to renew the login (invalid_grant); the current access token "
                "keeps working until %s: %s before then",
                _clock_time(kept.expires_at, now),
                LOGIN_HINT,
            )
            return kept
        # Dead for good, and unchanged since it was read under the lock: forget it.
        self._current = None
        self._store.delete_tokens(client_id)
        raise NeedsLogin(
            f"SoundCloud refused to renew the login (invalid_grant); {LOGIN_HINT}",
            status=400,
            soundcloud_message="invalid_grant",
        )
