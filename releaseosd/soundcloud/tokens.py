"""SoundCloud secrets in the keyring, and access tokens that refresh themselves safely.

Secrets live only in the keyring (service "releaseosd"): the client secret under
`client_secret:<client_id>` and the token set as one JSON entry under `tokens:<client_id>`, so the
single-use refresh token is replaced in the same write as the access token it came with.

SoundCloud's refresh tokens are single-use: two refreshes racing end in `invalid_grant` and a
forced login. `TokenManager` therefore refreshes under one lock (one POST per expiry, however
many threads ask), and stores the new set before anyone gets the new access token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import keyring
import keyring.backends.fail
import keyring.backends.null
import keyring.errors

from releaseosd.config import SoundCloudConfig
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


@dataclass(frozen=True, repr=False)
class TokenSet:
    """One OAuth answer. Never printed: repr and str mask the tokens."""

    access_token: str
    refresh_token: str | None
    expires_at: float  # wall-clock epoch seconds
    scope: str = ""

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token={_mask(self.access_token)}, "
            f"refresh_token={_mask(self.refresh_token)}, expires_at={self.expires_at:.0f})"
        )

    __str__ = __repr__

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at - seconds <= now

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at,
                "scope": self.scope,
            }
        )

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
        )


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
    """Hands out a valid access token; refreshes once, under a lock, storing before returning."""

    def __init__(
        self,
        store: TokenStore,
        config: SoundCloudConfig,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
        margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self._store = store
        self._config = config
        self._http = http
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._current: TokenSet | None = None
        # Called before each refresh POST; the client's rate-limit hold raises from here, so a
        # refresh does not go out while SoundCloud has asked everyone to wait.
        self.before_refresh: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self._config.client_id!r})"

    def access_token(self) -> str:
        """A token valid for at least the margin; refreshes first if it is not."""
        with self._lock:
            tokens = self._load()
            if tokens.expires_within(self._margin, self._clock()):
                tokens = self._refresh(tokens)
            return tokens.access_token

    def force_refresh(self, stale_token: str) -> str:
        """After a 401 with `stale_token`: refresh, unless another thread already did."""
        with self._lock:
            tokens = self._load()
            if tokens.access_token != stale_token:
                return tokens.access_token
            return self._refresh(tokens).access_token

    def current(self) -> TokenSet | None:
        """The stored token set without refreshing (for `auth status`)."""
        with self._lock:
            try:
                return self._load()
            except NeedsLogin:
                return None

    def _load(self) -> TokenSet:
        if self._current is None:
            self._current = self._store.get_tokens(self._client_id())
        if self._current is None:
            raise NeedsLogin(f"releaseosd is not logged in to SoundCloud; {LOGIN_HINT}")
        return self._current

    def _client_id(self) -> str:
        if not self._config.client_id:
            raise NotConfigured(
                "soundcloud.client_id is not set in the config; add your SoundCloud app's client id"
            )
        return self._config.client_id

    def _refresh(self, tokens: TokenSet) -> TokenSet:
        client_id = self._client_id()
        # Another process (the CLI beside the daemon) may have refreshed already: its new refresh
        # token is in the keyring, and ours is dead.
        stored = self._store.get_tokens(client_id)
        if stored is None:
            self._current = None
            raise NeedsLogin(f"the SoundCloud login was removed; {LOGIN_HINT}")
        if stored.access_token != tokens.access_token and not stored.expires_within(
            self._margin, self._clock()
        ):
            self._current = stored
            return stored
        tokens = stored
        if tokens.refresh_token is None:
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
            # The refresh token is dead for good; keeping it would only repeat the failure.
            self._current = None
            self._store.delete_tokens(client_id)
            raise NeedsLogin(
                f"SoundCloud refused to renew the login (invalid_grant); {LOGIN_HINT}",
                status=400,
                soundcloud_message="invalid_grant",
            ) from None
        # Refresh tokens are single-use: the keyring must hold the new one before anyone can
        # use the new access token, or a crash here would strand the login.
        self._store.set_tokens(client_id, fresh)
        self._current = fresh
        log.info(
            "renewed the SoundCloud access token (valid for %.0f s)",
            fresh.expires_at - self._clock(),
        )
        return fresh
