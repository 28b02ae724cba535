"""Logging in to SoundCloud: OAuth 2.1 authorization code with PKCE (S256) and `state`.

The browser comes back to a one-shot HTTP server on the loopback address of the registered
redirect URI; the code is exchanged for tokens, which go to the keyring and nowhere else.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import html
import logging
import secrets
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

import httpx

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud.client import API_TIMEOUT, USER_AGENT, connect
from releaseosd.soundcloud.errors import (
    LOGIN_HINT,
    LoginFailed,
    NeedsLogin,
    NotConfigured,
    Retryable,
    SoundCloudError,
)
from releaseosd.soundcloud.tokens import (
    InvalidGrant,
    LoginOutlook,
    TokenSet,
    TokenStore,
    refresh_lock,
    refresh_lock_path,
    request_tokens,
    sign_out,
)

log = logging.getLogger(__name__)

DEFAULT_LOGIN_TIMEOUT = 300.0


def setup_secret(client_id: str, secret: str, *, store: TokenStore | None = None) -> None:
    """Store the app's client secret in the keyring (the CLI reads it from a hidden prompt)."""
    client_id = client_id.strip()
    secret = secret.strip()
    if not client_id:
        raise NotConfigured(
            "soundcloud.client_id is not set in the config; add your SoundCloud app's client id "
            "before storing its secret"
        )
    if not secret or any(ch.isspace() for ch in secret):
        raise NotConfigured(
            "the client secret is empty or contains spaces; copy it again from "
            "https://soundcloud.com/you/apps"
        )
    (store or TokenStore()).set_client_secret(client_id, secret)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, inside the allowed 43..128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(config: SoundCloudConfig, challenge: str, state: str) -> str:
    query = urlencode(
        {
            "client_id": config.client_id,
            "redirect_uri": config.redirect_uri,
            "response_type": "code",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
    )
    return f"{config.auth_url}/authorize?{query}"


def loopback_addresses(host: str) -> list[tuple[socket.AddressFamily, str, bool]]:
    """Where the callback server listens: (family, address, required). Never a wildcard."""
    if host == "localhost":
        # Browsers resolve localhost to either family; ::1 is a bonus where the host has IPv6.
        return [(socket.AF_INET, "127.0.0.1", True), (socket.AF_INET6, "::1", False)]
    if host == "127.0.0.1":
        return [(socket.AF_INET, "127.0.0.1", True)]
    if host == "::1":
        return [(socket.AF_INET6, "::1", True)]
    raise NotConfigured(
        f"soundcloud.redirect_uri must point at this machine's loopback address, not {host!r}"
    )


@dataclass
class _Callback:
    path: str
    state: str
    finish: Callable[[str], TokenSet]
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    tokens: TokenSet | None = None
    error: SoundCloudError | None = None


def _answer(callback: _Callback, path: str, params: Mapping[str, str]) -> tuple[int, str, str]:
    """The page the browser gets back at the redirect URI (status, title, text)."""
    if path != callback.path:
        return 404, "Not found", "This is releaseosd's login helper; nothing here."
    with callback.lock:
        if callback.received.is_set():
            return 410, "Already used", "This login link has been used; close this tab."
        callback.received.set()
    try:
        return _handle(callback, params)
    finally:
        callback.done.set()


def _handle(callback: _Callback, params: Mapping[str, str]) -> tuple[int, str, str]:
    state = params.get("state")
    if state is None or not secrets.compare_digest(state.encode(), callback.state.encode()):
        callback.error = LoginFailed(
            "the browser came back with a missing or wrong 'state', so the answer may not be "
            f"from this login attempt; nothing was stored. {LOGIN_HINT.capitalize()} again"
        )
        return 400, "Login failed", "The login answer did not match; try again."
    if params.get("error"):
        detail = ": ".join(filter(None, (params.get("error"), params.get("error_description"))))
        callback.error = LoginFailed(
            f"SoundCloud did not authorise releaseosd ({detail}); {LOGIN_HINT} to try again"
        )
        return 400, "Login refused", f"SoundCloud said: {detail}"
    code = params.get("code")
    if not code:
        callback.error = LoginFailed(
            f"the browser came back without an authorization code; {LOGIN_HINT} again"
        )
        return 400, "Login failed", "No authorization code arrived; try again."
    try:
        callback.tokens = callback.finish(code)
    except SoundCloudError as exc:
        callback.error = exc
        return 502, "Login failed", str(exc)
    return 200, "Logged in", "Logged in — you can close this tab."


def _page(status: int, title: str, text: str) -> Any:
    from starlette.responses import HTMLResponse

    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>releaseosd: {html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return HTMLResponse(body, status, headers={"Cache-Control": "no-store", "Connection": "close"})


def _callback_app(callback: _Callback) -> Any:
    """The redirect URI's one page, on the product's HTTP stack. The request line (with the
    authorization code) is never logged: uvicorn's access log is off."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def answer(request: Request) -> Response:
        if request.method == "HEAD":
            # A link previewer's HEAD must not use up the one-time callback.
            return Response(status_code=404)
        return _page(*_answer(callback, request.url.path, request.query_params))  # type: ignore[no-any-return]

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "HEAD"])])


def _start_servers(config: SoundCloudConfig, callback: _Callback) -> Any:
    from releaseosd.web.served import ServedApp, tcp_listener

    parts = urlsplit(config.redirect_uri)
    host, port = parts.hostname or "", parts.port
    if port is None:
        raise NotConfigured(f"soundcloud.redirect_uri {config.redirect_uri!r} must name a port")
    sockets: list[socket.socket] = []
    try:
        for _family, address, required in loopback_addresses(host):
            try:
                sock = tcp_listener(address, port, backlog=16)
            except OSError as exc:
                if not required and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                if exc.errno == errno.EADDRINUSE:
                    raise LoginFailed(
                        f"port {port} on {address} is in use, so the login answer cannot be "
                        f"received at {config.redirect_uri}; stop what uses it (e.g. another "
                        "'releaseosd auth login') and try again"
                    ) from None
                raise LoginFailed(
                    f"cannot listen on {address} port {port} for the login answer: {exc.strerror}"
                ) from None
            sockets.append(sock)
        served = ServedApp(_callback_app(callback), sockets, "login-callback")
        served.start()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return served


class BrowserLogin:
    """One login attempt in a browser: from construction the loopback callback listens, `url`
    is the address the browser must open, and `wait` gives the tokens once it came back (stored
    in the keyring). `releaseosd auth login` and the dashboard's Connect button are both this.

    The tokens are stored under the refresh lock of `state_dir` (see tokens.refresh_lock_path),
    so a refresh in the daemon cannot interleave with the write; None: no lock (tests).
    Raises NotConfigured (no client id or secret) at once; `wait` raises LoginFailed (timeout,
    wrong state, refused code, denied), KeyringUnavailable, or the Retryable/Permanent error of
    the token endpoint.
    """

    def __init__(
        self,
        config: SoundCloudConfig,
        *,
        store: TokenStore | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
    ) -> None:
        store = store or TokenStore()
        if not config.client_id:
            raise NotConfigured(
                "soundcloud.client_id is not set in the config; add your SoundCloud app's client id"
            )
        secret = store.get_client_secret(config.client_id)
        if secret is None:
            raise NotConfigured(
                f"no client secret stored for SoundCloud client id {config.client_id}; "
                "run 'releaseosd auth setup' first"
            )
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(32)
        self._own_http = http is None
        client = http or httpx.Client(timeout=API_TIMEOUT, headers={"User-Agent": USER_AGENT})
        self._http = client
        lock_path = refresh_lock_path(state_dir) if state_dir is not None else None

        def finish(code: str) -> TokenSet:
            form = {
                "grant_type": "authorization_code",
                "client_id": config.client_id,
                "client_secret": secret,
                "redirect_uri": config.redirect_uri,
                "code": code,
                "code_verifier": verifier,
            }
            try:
                tokens = request_tokens(client, config, form, clock())
            except InvalidGrant:
                raise LoginFailed(
                    "SoundCloud refused the authorization code (invalid_grant): it was already "
                    f"used or expired, or the PKCE verifier did not match; {LOGIN_HINT} again",
                    status=400,
                    soundcloud_message="invalid_grant",
                ) from None
            with refresh_lock(lock_path):
                store.set_tokens(config.client_id, tokens)
            return tokens

        self._config = config
        self._cancelled = False
        path = urlsplit(config.redirect_uri).path or "/"
        self._callback = _Callback(path=path, state=state, finish=finish)
        try:
            self._served = _start_servers(config, self._callback)
        except BaseException:
            self._close_http()
            raise
        self.url = authorize_url(config, challenge, state)

    def _close_http(self) -> None:
        if self._own_http:
            self._http.close()

    def close(self) -> None:
        """Stop listening (waits for a callback being handled to finish); a `wait` under way
        ends at once."""
        callback = self._callback
        with callback.lock:
            if not callback.received.is_set():
                self._cancelled = True
                callback.received.set()
                callback.done.set()
        if self._served is not None:
            self._served.stop()
            self._served = None
        self._close_http()

    def wait(self, timeout: float = DEFAULT_LOGIN_TIMEOUT) -> TokenSet:
        callback = self._callback
        arrived = False
        try:
            arrived = callback.received.wait(timeout)
            if arrived:
                callback.done.wait()
        finally:
            self.close()
        if callback.tokens is not None:
            return callback.tokens
        if callback.error is not None:
            # LoginFailed, or what stopped the exchange (keyring, credentials, SoundCloud down).
            raise callback.error
        if arrived and self._cancelled:
            raise LoginFailed("the login was cancelled before the browser came back")
        raise LoginFailed(
            f"no answer from the browser within {timeout:g} s, so nothing was stored; "
            f"{LOGIN_HINT} again and finish the login in the browser (it must be able to reach "
            f"{self._config.redirect_uri} on this machine)"
        )


def login(
    config: SoundCloudConfig,
    open_browser: bool = True,
    out: TextIO = sys.stdout,
    timeout: float = DEFAULT_LOGIN_TIMEOUT,
    *,
    store: TokenStore | None = None,
    http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
    state_dir: Path | None = None,
) -> TokenSet:
    """`releaseosd auth login`: a BrowserLogin, its address printed (and opened)."""
    attempt = BrowserLogin(config, store=store, http=http, clock=clock, state_dir=state_dir)
    try:
        url = attempt.url
        if open_browser:
            print(
                "Opening your browser to log in to SoundCloud. If it does not open, visit:",
                file=out,
            )
            print(url, file=out)
            out.flush()
            if not webbrowser.open(url):
                print("(No browser could be started; open the address above yourself.)", file=out)
        else:
            print("Open this address in a browser to log in to SoundCloud:", file=out)
            print(url, file=out)
        out.flush()
    except BaseException:
        attempt.close()
        raise
    tokens = attempt.wait(timeout)
    print("Logged in to SoundCloud.", file=out)
    return tokens


def status(
    config: SoundCloudConfig,
    *,
    store: TokenStore | None = None,
    http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    """What `releaseosd auth status` shows: who is logged in, until when, quota; no secrets.

    Asking /me renews the access token when it is due, under the refresh lock of `state_dir`
    (None: no cross-process lock, for tests), so running this beside the daemon is safe. When
    SoundCloud has refused to renew the login but the access token still works, `logged_in` is
    True and `error` says "renewal refused: run 'releaseosd auth login' before HH:MM".
    """
    store = store or TokenStore()
    lock_path = refresh_lock_path(state_dir) if state_dir is not None else None
    info: dict[str, Any] = {
        "client_id": config.client_id or None,
        "secret_stored": False,
        "logged_in": False,
        "username": None,
        "expires_at": None,
        "expires_in": None,
        "plan": None,
        "upload_seconds_left": None,
        "unlimited_upload_quota": None,
        "error": None,
    }
    if not config.client_id:
        info["error"] = "soundcloud.client_id is not set in the config"
        return info
    try:
        with refresh_lock(lock_path):  # a keyring file rewritten in place reads empty mid-write
            info["secret_stored"] = store.get_client_secret(config.client_id) is not None
            stored = store.get_tokens(config.client_id)
    except (NotConfigured, Retryable) as exc:  # the lock file cannot be made, or is held long
        info["error"] = str(exc)
        info["logged_in"] = None
        return info
    if stored is None:
        info["error"] = f"not logged in; {LOGIN_HINT}"
        return info
    client = connect(config, store, state_dir=state_dir, http=http, clock=clock)
    manager = client.tokens
    try:
        me = client.me()
    except NeedsLogin as exc:
        info["error"] = str(exc)
    except SoundCloudError as exc:
        info["error"] = str(exc)
        info["logged_in"] = None  # unknown: SoundCloud could not be asked
    else:
        info["logged_in"] = True
        info["username"] = me.get("username")
        info["plan"] = me.get("plan")
        quota = me.get("quota")
        if isinstance(quota, dict):
            info["upload_seconds_left"] = quota.get("upload_seconds_left")
            info["unlimited_upload_quota"] = quota.get("unlimited_upload_quota")
    finally:
        client.close()
    try:
        tokens = manager.current()  # the set in use now: the /me call may have renewed it
    except (NotConfigured, Retryable):
        tokens = None  # the lock again; `error` already says what went wrong
    if tokens is not None:
        info["expires_at"] = dt.datetime.fromtimestamp(tokens.expires_at, dt.UTC).isoformat()
        info["expires_in"] = round(tokens.expires_at - clock())
        outlook = LoginOutlook.of(tokens, bool(info["secret_stored"]), clock())
        if info["logged_in"] and outlook.problem is not None and info["error"] is None:
            info["error"] = outlook.problem
    return info


def logout(
    config: SoundCloudConfig,
    *,
    store: TokenStore | None = None,
    http: httpx.Client | None = None,
    state_dir: Path | None = None,
    keep_app_secret: bool = False,
) -> bool:
    """Sign out at SoundCloud (best effort), then forget every secret of this client id (with
    `keep_app_secret`, the login only: the dashboard's Disconnect, so Connect works again).

    The secrets are deleted under the refresh lock of `state_dir` (None: no lock, for tests),
    so a refresh in flight cannot store tokens again after the logout.
    Returns whether SoundCloud confirmed the sign-out; the local secrets are gone either way.
    """
    store = store or TokenStore()
    if not config.client_id:
        raise NotConfigured("soundcloud.client_id is not set in the config")
    tokens = store.get_tokens(config.client_id)
    signed_out = False
    if tokens is not None:
        own_http = http is None
        client_http = http or httpx.Client(timeout=API_TIMEOUT, headers={"User-Agent": USER_AGENT})
        try:
            signed_out = sign_out(client_http, config, tokens.access_token)
        finally:
            if own_http:
                client_http.close()
    with refresh_lock(refresh_lock_path(state_dir) if state_dir is not None else None):
        if keep_app_secret:
            store.delete_tokens(config.client_id)
        else:
            store.delete_all(config.client_id)
    return signed_out
