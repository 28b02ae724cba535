"""Who may use the dashboard: the user who can read the state dir, in a browser on this machine.

Modelled on syncthing's GUI and Jupyter's token login:
- a random secret in a 0600 file in the state dir; `releaseosd ui` opens `/login?token=<secret>`
  once, which answers with an HttpOnly, SameSite=Strict session cookie (derived from the secret,
  never the secret itself) and a redirect that takes the token out of the address bar;
- every request's `Host` must name this server by a loopback name and its port, or a web page
  on some other site could reach it through a DNS name rebound to 127.0.0.1;
- a request that changes anything is a POST carrying the page's CSRF token in a header and a
  same-origin `Origin`; GET changes nothing; no CORS header is ever sent;
- every answer carries a strict Content-Security-Policy (scripts and styles from this server
  only, nothing inline), so escaped sidecar text could not run even if escaping failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECRET_FILE = "dashboard.secret"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecretUnsafe(Exception):
    """The secret file is not a private file of ours; the message says what to do."""


def secret_path(state_dir: Path) -> Path:
    return state_dir / SECRET_FILE


def load_or_create_secret(state_dir: Path) -> str:
    """The dashboard's secret, made on first use. Refuses a file others can read or that is
    not ours (a link, another user's file, a folder, a FIFO): whoever reads it controls the
    releases. A new secret is written whole before it appears under its name (a crash never
    leaves an empty one)."""
    path = secret_path(state_dir)
    if not os.path.lexists(path):
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".dashboard.secret.", suffix=".part")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # never over a file another process just made
        finally:
            os.unlink(tmp)
    return read_secret(state_dir)


def read_secret(state_dir: Path) -> str:
    path = secret_path(state_dir)
    try:
        # Non-blocking: a FIFO planted there must not hang the daemon in open().
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretUnsafe(f"{path}: cannot be read safely ({exc.strerror}); delete it") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise SecretUnsafe(f"{path}: is not a file of yours; delete it (it may be an attack)")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise SecretUnsafe(
                f"{path}: others can read it (mode {stat.S_IMODE(info.st_mode):04o}); delete it "
                "and restart the daemon to get a new one"
            )
        raw = os.read(fd, 200)
    finally:
        os.close(fd)
    try:
        secret = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        secret = ""
    if len(secret) < 32 or not secret.isprintable():
        raise SecretUnsafe(f"{path}: is not a dashboard secret; delete it and restart the daemon")
    return secret


def _derived(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


class Access:
    """The facts the guard checks, for one running dashboard."""

    def __init__(self, secret: str, port: int, extra_hosts: Iterable[str] = ()) -> None:
        self._secret = secret
        self.session = _derived(secret, "session")
        self.csrf_token = _derived(secret, "csrf")
        # Cookies are per host, not per port: the rehearsal's dashboard beside the real one
        # must not overwrite its session.
        self.cookie_name = f"releaseosd_{port}"
        names = [*LOOPBACK_NAMES, *extra_hosts]
        self.hosts = frozenset(f"{name}:{port}" for name in names)
        self.origins = frozenset(f"http://{host}" for host in self.hosts)

    def token_ok(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._secret.encode())

    def session_ok(self, headers: Headers) -> bool:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie_name and hmac.compare_digest(
                value.encode(), self.session.encode()
            ):
                return True
        return False

    def session_cookie(self) -> str:
        return f"{self.cookie_name}={self.session}; Path=/; HttpOnly; SameSite=Strict"


# Reached without a session: the token exchange and the files the "open it again" page needs.
_OPEN_PATHS = ("/login", "/static/")


class Guard:
    """ASGI middleware in front of every route: Host, session, CSRF and Origin, headers."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *(
                        (k, v)
                        for k, v in message.get("headers", [])
                        if not k.lower().startswith(b"access-control-")
                    ),
                    *_SECURITY_HEADERS,
                ]
            await send(message)

        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        access = self.access
        if headers.get("host", "").lower() not in access.hosts:
            return PlainTextResponse(
                "This address is not the dashboard's: open it with 'releaseosd ui'.", 403
            )
        path: str = scope["path"]
        method: str = scope["method"]
        if method not in ("GET", "HEAD", "POST"):
            return PlainTextResponse("Method not allowed.", 405)
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in _OPEN_PATHS):
            return None if method != "POST" else PlainTextResponse("Method not allowed.", 405)
        if not access.session_ok(headers):
            return PlainTextResponse(
                "Not signed in to the dashboard: run 'releaseosd ui' to open it.", 401
            )
        if method == "POST":
            if headers.get("origin", "") not in access.origins:
                return PlainTextResponse("Refused: the request did not come from this page.", 403)
            token = headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(token.encode(), access.csrf_token.encode()):
                return PlainTextResponse("Refused: the page's CSRF token is missing.", 403)
        return None
