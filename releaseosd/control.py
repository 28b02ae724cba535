"""The control channel between the CLI and a running daemon: HTTP over a Unix socket (0600) in
the user's runtime dir. The daemon is the store's only writer while it runs; without a daemon the
CLI applies the same commands to the store itself, holding the owner lock."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from releaseosd.commands import CommandError, Commands
from releaseosd.config import Config
from releaseosd.store import STORE_FILE, AtomicJSONStorage, OwnerLock, Store
from releaseosd.track import Track, status_rows

log = logging.getLogger("releaseosd.control")


class DaemonNotRunning(Exception):
    pass


def socket_path(state_dir: Path) -> Path:
    """One socket per state dir, short enough for AF_UNIX's 108-byte limit."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    folder = base / f"releaseosd-{os.getuid()}" if not runtime else base / "releaseosd"
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return folder / f"{digest}.sock"


def read_rows(config: Config) -> list[dict[str, Any]]:
    """Status rows, oldest first: from the daemon when one runs, else from the store file (safe
    without the lock: the file is only ever replaced whole)."""
    with contextlib.suppress(DaemonNotRunning):
        rows = request(config, "GET", "/status")
        return list(rows)
    data = AtomicJSONStorage(config.state_dir / STORE_FILE).read() or {}
    return status_rows(Track.model_validate(doc) for doc in (data.get("tracks") or {}).values())


def dispatch(commands: Commands, name: str, body: dict[str, Any]) -> Any:
    """One command by name with its JSON body: the daemon's socket and the daemon-less CLI."""
    if name == "retry":
        return commands.retry(str(body["track"]))
    if name == "release":
        when = dt.datetime.fromisoformat(body["at"]) if body.get("at") else None
        return commands.release(str(body["track"]), when)
    if name == "remove":
        return commands.remove(str(body["track"]), bool(body.get("remote")))
    if name == "pause":
        return commands.pause()
    if name == "resume":
        return commands.resume()
    raise CommandError(f"unknown command {name}")


# --- server (in the daemon) ----------------------------------------------------------------------


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    commands: Commands
    extra: dict[str, Callable[[dict[str, Any]], Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control: " + format, *args)

    def do_GET(self) -> None:
        if self.path == "/status":
            self._answer(200, self.server.commands.status())
        else:
            self._answer(404, {"error": f"unknown path {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            result = self._dispatch(self.path.strip("/"), body)
        except CommandError as exc:
            self._answer(409, {"error": str(exc)})
        except (ValueError, KeyError, TypeError) as exc:
            self._answer(400, {"error": f"bad request: {exc}"})
        except Exception as exc:
            log.exception("control command %s failed", self.path)
            self._answer(500, {"error": str(exc)})
        else:
            self._answer(200, {"message": result})

    def _dispatch(self, name: str, body: dict[str, Any]) -> Any:
        if name in self.server.extra:
            return self.server.extra[name](body)
        return dispatch(self.server.commands, name, body)

    def _answer(self, status: int, data: Any) -> None:
        raw = json.dumps(data, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class ControlServer:
    def __init__(
        self,
        state_dir: Path,
        commands: Commands,
        extra: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
    ) -> None:
        self.path = socket_path(state_dir)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crash; the owner lock says we own it
        old_umask = os.umask(0o177)
        try:
            self._server = _Server(str(self.path), _Handler)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._server.commands = commands
        self._server.extra = extra or {}
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="control", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --- client (in the CLI) -------------------------------------------------------------------------


def request(config: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import httpx

    sock = socket_path(config.state_dir)
    if not sock.exists():
        raise DaemonNotRunning(str(sock))
    transport = httpx.HTTPTransport(uds=str(sock))
    try:
        with httpx.Client(transport=transport, base_url="http://releaseosd", timeout=30) as client:
            response = client.request(method, path, json=body)
    except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError):
        raise DaemonNotRunning(str(sock)) from None
    data = response.json()
    if response.status_code != 200:
        raise CommandError(data.get("error", f"daemon answered {response.status_code}"))
    return data.get("message") if isinstance(data, dict) and "message" in data else data


@contextlib.contextmanager
def direct(config: Config) -> Iterator[Commands]:
    """Commands on the store itself, for when no daemon runs (holding its owner lock)."""
    from releaseosd.store import prepare_state_dir

    prepare_state_dir(config.state_dir)
    lock = OwnerLock(config.state_dir)
    lock.acquire("cli")
    store = Store.open(config.state_dir)
    try:
        yield Commands(store)
    finally:
        store.close()
        lock.release()


def run_command(config: Config, name: str, body: dict[str, Any]) -> str:
    """Through the daemon when it runs, else directly on the store."""
    try:
        return str(request(config, "POST", f"/{name}", body))
    except DaemonNotRunning:
        pass
    with direct(config) as commands:
        said = str(dispatch(commands, name, body))
    # Without a daemon nothing is uploaded or released until one runs.
    return said + " (when the daemon runs)" if name in ("retry", "release") else said
