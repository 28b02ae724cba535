"""The control channel between the CLI and a running daemon: HTTP over a Unix socket (0600) in a
folder only the user can enter (0700): `$XDG_RUNTIME_DIR/releaseosd`, else
`<tmp>/releaseosd-<uid>`. The daemon is the store's only writer while it runs; without a daemon
the CLI applies the same commands to the store itself, holding the owner lock.

The tmp folder is shared with every other user, so nothing found there is trusted by its name:
the folder must be a real directory (never a link) that we own with mode 0700 (the daemon
tightens one of ours that is too open), the socket in it a socket we own, and (on Linux) the
process answering on it must run as us. Anything else is refused with a message that names the
path and what to do (`ControlSocketUnsafe`)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import socket
import stat
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from releaseosd.app.commands import CommandError, Commands, dispatch, json_lines
from releaseosd.model.config import Config
from releaseosd.model.store import OwnerLock, Store, read_status
from releaseosd.web.served import ServedApp

log = logging.getLogger("releaseosd.app.control")


class DaemonNotRunning(Exception):
    pass


class ControlSocketError(Exception):
    """The control socket cannot be made or used; the message says why and what to do."""


class ControlSocketUnsafe(ControlSocketError):
    """Something at the socket's folder or path that is not ours: it may be an attack."""


_FOLDER_FIX = "remove it (it may be an attack) or set XDG_RUNTIME_DIR to a private folder"
_SOCKET_FIX = "remove it (it may be an attack) and start the daemon again"


def socket_path(state_dir: Path) -> Path:
    """One socket per state dir, short enough for AF_UNIX's 108-byte limit. Only computes the
    path: `ControlServer` and `request` check what is there."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return _socket_folder() / f"{digest}.sock"


def _socket_folder() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    fallback = Path(tempfile.gettempdir()) / f"releaseosd-{os.getuid()}"
    if runtime:
        problem = _runtime_dir_problem(runtime)
        if problem is None:
            return Path(runtime) / "releaseosd"
        # Only the spec's promise (ours, 0700) makes it a runtime dir; anything else set there
        # (a `su` that kept another user's variable, a stale path) gets the fallback, which is
        # checked like every folder. CLI and daemon see the same variable, so they agree.
        log.warning(
            "not using XDG_RUNTIME_DIR=%s: %s; the control socket is in %s",
            runtime,
            problem,
            fallback,
        )
    return fallback


def _runtime_dir_problem(runtime: str) -> str | None:
    if not os.path.isabs(runtime):
        return "not an absolute path"
    try:
        info = os.lstat(runtime)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISDIR(info.st_mode):
        return f"it is {_kind(info.st_mode)}, not a folder"
    if info.st_uid != os.getuid():
        return f"it is owned by uid {info.st_uid}, not you"
    if stat.S_IMODE(info.st_mode) & 0o077:
        return f"it has mode {stat.S_IMODE(info.st_mode):04o}, not 0700"
    return None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "an unknown kind of file"


def _folder_problem(folder: Path, info: os.stat_result) -> str | None:
    """What is wrong with the socket folder, mode aside (the daemon may fix that)."""
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is {_kind(info.st_mode)}, not a folder; {_FOLDER_FIX}"
    if info.st_uid != os.getuid():
        return f"{folder} is owned by uid {info.st_uid}, not you; {_FOLDER_FIX}"
    return None


def _mode_problem(folder: Path, info: os.stat_result) -> str | None:
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (
            f"{folder} has mode {mode:04o}, not 0700: other users can reach into it; "
            f"run chmod 700 {folder} (starting the daemon does this too)"
        )
    return None


def _open_folder(folder: Path, *, create: bool) -> int:
    """An fd on the socket folder once it is checked: a real directory (a link there is refused,
    never followed), ours, 0700. The daemon (`create`) makes it if missing and tightens a folder
    of ours that is too open; the CLI only reports that. FileNotFoundError: there is none."""
    if create:
        try:
            # Atomic: either we make it, 0700 from the start, or whatever is there already is
            # checked below like any folder we did not make.
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ControlSocketError(
                f"cannot create {folder}: {exc.strerror}; set XDG_RUNTIME_DIR to a private folder"
            ) from None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # ELOOP: a link; ENOTDIR: not a folder; EACCES: someone else's. lstat says which.
        problem = _folder_problem(folder, os.lstat(folder))
        raise ControlSocketUnsafe(
            problem or f"cannot open {folder}: {exc.strerror}; {_FOLDER_FIX}"
        ) from None
    try:
        # fstat: the very folder we hold, not whatever the path names a moment later.
        info = os.fstat(fd)
        problem = _folder_problem(folder, info)
        if problem:
            raise ControlSocketUnsafe(problem)
        problem = _mode_problem(folder, info)
        if problem and not create:
            raise ControlSocketUnsafe(problem)
        if problem:
            # Safe to fix: the fd is a real directory we own (checked above, no link followed),
            # and fchmod acts on it, not on a path. Whatever others put in it meanwhile is not
            # trusted either: our socket's name is checked on its own before it is used.
            log.warning("%s had mode %04o; set it to 0700", folder, stat.S_IMODE(info.st_mode))
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _socket_problem(path: Path, info: os.stat_result) -> str | None:
    if not stat.S_ISSOCK(info.st_mode):
        return f"{path} is {_kind(info.st_mode)}, not the daemon's socket; {_SOCKET_FIX}"
    if info.st_uid != os.getuid():
        return f"{path} is owned by uid {info.st_uid}, not you; {_SOCKET_FIX}"
    return None


def _lstat_in(fd: int, name: str) -> os.stat_result | None:
    """The entry `name` in the folder held by `fd` (not followed if a link), None if absent."""
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def status_json(config: Config) -> str:
    """`status --json`: a JSON array of status rows, oldest track first, one a line. From the
    daemon when one runs (as it sent it), else from the store's files (safe without the lock:
    see `store.read_status`). An unsafe socket is refused, not read around (see `request`)."""
    with contextlib.suppress(DaemonNotRunning):
        return str(request(config, "GET", "/status", raw=True))
    return json_lines(read_status(config.state_dir))


# --- server (in the daemon) ----------------------------------------------------------------------


def control_app(commands: Commands, extra: dict[str, Callable[[dict[str, Any]], Any]]) -> Starlette:
    """The daemon's side of the control socket: `GET /status` and `POST /<command>`.

    Commands run in the thread pool: one that waits (a hold on a track being uploaded) never
    stalls the socket's other requests."""

    def status(_request: Request) -> Response:
        return Response(commands.status_json(), media_type="application/json")

    def run(name: str, body: dict[str, Any]) -> Any:
        return extra[name](body) if name in extra else dispatch(commands, name, body)

    async def command(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        try:
            raw = await request.body()
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result = await run_in_threadpool(run, name, body)
        except CommandError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        except Exception as exc:
            log.exception("control command %s failed", name)
            return JSONResponse({"error": str(exc)}, status_code=500)
        return JSONResponse({"message": result})

    def unknown(request: Request) -> JSONResponse:
        return JSONResponse({"error": f"unknown path {request.url.path}"}, status_code=404)

    return Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/{name}", command, methods=["POST"]),
            Route("/{rest:path}", unknown, methods=["GET", "POST"]),
        ]
    )


class ControlServer:
    def __init__(
        self,
        state_dir: Path,
        commands: Commands,
        extra: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
    ) -> None:
        self.path = socket_path(state_dir)
        name = self.path.name
        # Held until stop(): the stale-socket check, the unlink and the check after bind all
        # act on this checked folder, whatever its path names meanwhile.
        self._dir_fd: int | None = _open_folder(self.path.parent, create=True)
        try:
            old = _lstat_in(self._dir_fd, name)
            if old is not None:
                problem = _socket_problem(self.path, old)
                if problem:
                    raise ControlSocketUnsafe(problem)
                # A stale socket of ours from a crash: the owner lock, taken before this, says
                # no other daemon of ours serves this state dir.
                os.unlink(name, dir_fd=self._dir_fd)
            old_umask = os.umask(0o177)
            listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listening.bind(str(self.path))
                listening.listen(64)
            except OSError as exc:
                listening.close()
                raise ControlSocketError(
                    f"cannot create the control socket {self.path}: {exc.strerror or exc}; "
                    "set XDG_RUNTIME_DIR to a private folder with a short path"
                ) from None
            finally:
                os.umask(old_umask)
            # bind() went by path: make sure it landed in the folder we checked (a swapped
            # folder would not hold it), as a socket of ours.
            bound = _lstat_in(self._dir_fd, name)
            if bound is None or _socket_problem(self.path, bound):
                listening.close()
                raise ControlSocketUnsafe(
                    f"{self.path.parent} changed while the control socket was made; {_FOLDER_FIX}"
                )
            self._bound = (bound.st_dev, bound.st_ino)
            os.chmod(name, 0o600, dir_fd=self._dir_fd)  # a socket of ours, just checked
        except BaseException:
            os.close(self._dir_fd)
            self._dir_fd = None
            raise
        self._served = ServedApp(control_app(commands, extra or {}), [listening], "control")

    def start(self) -> None:
        self._served.start()

    def stop(self) -> None:
        self._served.stop()
        if self._dir_fd is None:
            return
        try:
            # Only the socket this server bound: never an entry someone put there since.
            now = _lstat_in(self._dir_fd, self.path.name)
            if now is not None and (now.st_dev, now.st_ino) == self._bound:
                os.unlink(self.path.name, dir_fd=self._dir_fd)
        finally:
            os.close(self._dir_fd)
            self._dir_fd = None


# --- client (in the CLI) -------------------------------------------------------------------------


class _Connection(http.client.HTTPConnection):
    """HTTP on a Unix socket that is already connected and checked."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__("releaseosd", timeout=30)
        self.sock = sock

    def connect(self) -> None:
        # Never a second connection that nobody checked.
        raise ConnectionError("the control connection is closed")


def _connect(sock: Path) -> socket.socket:
    """A connection to our daemon's socket, after checking the folder, the socket file and the
    process behind it. DaemonNotRunning when there is nothing (or nobody) there;
    ControlSocketUnsafe when something there is not ours."""
    try:
        fd = _open_folder(sock.parent, create=False)
    except FileNotFoundError:
        raise DaemonNotRunning(str(sock)) from None
    try:
        info = _lstat_in(fd, sock.name)
        if info is None:
            raise DaemonNotRunning(str(sock))
        problem = _socket_problem(sock, info)
        if problem:
            raise ControlSocketUnsafe(problem)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(30)
        try:
            # By path, but inside a folder only we can change (checked above); the peer check
            # below covers the rest.
            conn.connect(str(sock))
        except TimeoutError:
            conn.close()
            raise
        except OSError:
            conn.close()  # refused: a stale socket from a crash; no daemon listens
            raise DaemonNotRunning(str(sock)) from None
    finally:
        os.close(fd)
    try:
        _check_peer(conn, sock)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_peer(conn: socket.socket, sock: Path) -> None:
    """The process that accepted must run as us. A second check, before a byte is sent: the
    folder and socket checks already keep other users out."""
    if sys.platform != "linux":
        return  # SO_PEERCRED is Linux's (its layout differs on the BSDs); the file checks stand
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    if uid != os.getuid():
        raise ControlSocketUnsafe(
            f"the process answering on {sock} (pid {pid}) runs as uid {uid}, not you: it is not "
            f"your daemon; {_SOCKET_FIX}"
        )


def request(
    config: Config,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    raw: bool = False,
) -> Any:
    """One command to the running daemon. DaemonNotRunning when none runs. With `raw`, a
    successful answer is its text as sent (not decoded).

    ControlSocketUnsafe is raised, never turned into DaemonNotRunning: falling back to the store
    would be safe for the store (the owner lock keeps a running daemon's store to itself), but
    it would hide from the user that someone else controls where CLI and daemon meet, and the
    user's daemon cannot start there either. Refusing says what is wrong and how to fix it."""
    sock = socket_path(config.state_dir)
    conn = _connect(sock)
    http_conn = _Connection(conn)
    try:
        sent = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if sent is not None else {}
        try:
            http_conn.request(method, path, body=sent, headers=headers)
            response = http_conn.getresponse()
            payload = response.read()
        except http.client.HTTPException:
            # It closed without an answer (as httpx's RemoteProtocolError was taken before).
            raise DaemonNotRunning(str(sock)) from None
    finally:
        http_conn.close()
    if raw and response.status == 200:
        return payload.decode("utf-8")
    try:
        data = json.loads(payload)
    except ValueError:
        raise CommandError(f"the daemon's answer is not JSON ({response.status})") from None
    if response.status != 200:
        error = data.get("error") if isinstance(data, dict) else None
        raise CommandError(error or f"daemon answered {response.status}")
    return data.get("message") if isinstance(data, dict) and "message" in data else data


@contextlib.contextmanager
def direct(config: Config) -> Iterator[Commands]:
    """Commands on the store itself, for when no daemon runs (holding its owner lock)."""
    from releaseosd.model.store import prepare_state_dir

    prepare_state_dir(config.state_dir)
    lock = OwnerLock(config.state_dir)
    lock.acquire("cli")
    store = Store.open(config.state_dir)
    try:
        yield Commands(store, state_dir=config.state_dir)
    finally:
        store.close()
        lock.release()


def ask(config: Config, name: str, body: dict[str, Any]) -> Any:
    """A command's answer as data (e.g. `show`), from the daemon when it runs, else the store."""
    try:
        return request(config, "POST", f"/{name}", body)
    except DaemonNotRunning:
        pass
    with direct(config) as commands:
        return dispatch(commands, name, body)


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
