"""The dashboard's SoundCloud account box: who is connected, until when, Connect, Disconnect.
Each is the CLI's own function (`auth status`, the BrowserLogin of `auth login`, `auth
logout`), so the dashboard and the terminal can never disagree on what a login is."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud.auth import BrowserLogin, logout, status
from releaseosd.soundcloud.errors import SoundCloudError
from releaseosd.soundcloud.tokens import TokenStore

log = logging.getLogger("releaseosd.dashboard.account")

# `auth status` asks SoundCloud's /me: not on every page load.
STATUS_FOR_SECONDS = 30.0
LOGIN_WAIT_SECONDS = 300.0


class Account:
    def __init__(
        self,
        config: SoundCloudConfig,
        tokens: TokenStore,
        state_dir: Path,
        changed: Callable[[], None],
        before_login: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = config
        self._tokens = tokens
        self._state_dir = state_dir
        self._changed = changed  # tells open pages to show the account again
        self._before_login = before_login  # the rehearsal puts its app secret back
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._login: BrowserLogin | None = None
        self.last_error: str | None = None

    def forget(self) -> None:
        """The login may have changed elsewhere (a NeedsLogin, `auth login` in a terminal)."""
        with self._lock:
            self._cached = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < STATUS_FOR_SECONDS:
            return cached[1]
        info = status(self._config, store=self._tokens, state_dir=self._state_dir)
        info = {**info, "login_error": self.last_error, "connecting": self._login is not None}
        with self._lock:
            self._cached = (time.monotonic(), info)
        return info

    def connect(self) -> str:
        """Start a login; the address the browser opens. The tokens arrive by the loopback
        callback, as with `auth login`; pages hear of it when it ends either way."""
        self._before_login()
        with self._lock:
            if self._login is not None:
                self._login.close()
            attempt = BrowserLogin(self._config, store=self._tokens, state_dir=self._state_dir)
            self._login = attempt
            self._cached = None
        threading.Thread(
            target=self._wait, args=(attempt,), name="dashboard-login", daemon=True
        ).start()
        return attempt.url

    def _wait(self, attempt: BrowserLogin) -> None:
        error: str | None = None
        try:
            attempt.wait(LOGIN_WAIT_SECONDS)
        except SoundCloudError as exc:
            error = str(exc)
            log.warning("dashboard login: %s", exc)
        except Exception as exc:
            error = str(exc)
            log.exception("dashboard login failed")
        with self._lock:
            if self._login is attempt:
                self._login = None
                self.last_error = error
            self._cached = None
        self._changed()

    def disconnect(self) -> bool:
        # The login goes; the app's secret stays, so Connect works again at once.
        signed_out = logout(
            self._config, store=self._tokens, state_dir=self._state_dir, keep_app_secret=True
        )
        with self._lock:
            self._cached = None
            self.last_error = None
        self._changed()
        return signed_out

    def close(self) -> None:
        with self._lock:
            attempt, self._login = self._login, None
        if attempt is not None:
            attempt.close()
