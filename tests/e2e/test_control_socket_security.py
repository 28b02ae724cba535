"""The control socket's folder outside $XDG_RUNTIME_DIR is in the shared tmp dir, where another
user can get there first: nothing there is trusted by its name. A folder or socket that is not
ours, a link, or a plain file is refused, by the daemon (which then exits with a message, no
traceback) and by the CLI (which neither talks to it nor falls back to the store); a process
behind our socket that runs as someone else is refused too (SO_PEERCRED).

Another user is played by uid 12345: files are chowned to it, and the impostor's server runs as it
(the tests run as root)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from daemon_harness import daemon_env, wait_for, write_config
from sandbox_tools import TestSandbox

from releaseosd.app.control import (
    ControlServer,
    ControlSocketUnsafe,
    DaemonNotRunning,
    request,
    socket_path,
)
from releaseosd.model.config import Config

OTHER = 12345
ME = os.getuid()
FOLDER_FIX = "remove it (it may be an attack) or set XDG_RUNTIME_DIR to a private folder"
SOCKET_FIX = "remove it (it may be an attack) and start the daemon again"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user needs root")

IMPOSTOR = r"""
import json, os, socketserver, sys
from http.server import BaseHTTPRequestHandler

folder, name = sys.argv[1], sys.argv[2]
os.makedirs(folder, exist_ok=True)
os.chmod(folder, 0o777)
LIE = [{"id": "1mp0st0r0000", "state": "released", "title": "IMPOSTOR SAYS ALL IS WELL",
        "release_at": None, "error": None, "soundcloud": None}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _lie(self):
        with open(os.path.join(folder, "requests.log"), "a") as log:
            log.write(f"{self.command} {self.path}\n")
        answer = LIE if self.command == "GET" else {"message": "IMPOSTOR took the command"}
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _lie


server = socketserver.UnixStreamServer(os.path.join(folder, name), Handler)
os.chmod(os.path.join(folder, name), 0o777)
server.serve_forever()
"""


@pytest.fixture
def tmp_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private stand-in for /tmp (sticky, world-writable) as the only tmp dir, and no
    $XDG_RUNTIME_DIR. Short, under /tmp: AF_UNIX paths stop at 108 bytes."""
    base = Path(tempfile.mkdtemp(prefix="ros-", dir="/tmp"))
    base.chmod(0o1777)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(base))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its first answer
    yield base
    shutil.rmtree(base, ignore_errors=True)


class FakeCommands:
    def status(self) -> list[dict[str, Any]]:
        return [{"id": "ours"}]

    def status_json(self) -> str:
        return json.dumps(self.status())


def config_for(tmp_path: Path) -> Config:
    return Config.model_validate({"state_dir": str(tmp_path / "state")})


def server_for(config: Config) -> ControlServer:
    return ControlServer(config.state_dir, cast(Any, FakeCommands()))


def refusals(config: Config) -> tuple[str, str]:
    """What the daemon and the CLI say about the same socket path (both must refuse)."""
    with pytest.raises(ControlSocketUnsafe) as daemon_side:
        server_for(config)
    with pytest.raises(ControlSocketUnsafe) as cli_side:
        request(config, "GET", "/status")
    return str(daemon_side.value), str(cli_side.value)


def bind_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock


@cache
def python_for_other_user() -> str | None:
    """An interpreter uid 12345 can run (the venv's may sit in root's home)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-I", "-c", "import http.server, socketserver"],
                user=OTHER,
                group=OTHER,
                extra_groups=[],
                capture_output=True,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture
def impostor(tmp_base: Path) -> Iterator[Any]:
    """start(folder, name): the impostor's HTTP server, running as uid 12345, on folder/name
    (it makes the folder itself, mode 0777, as an attacker in /tmp would)."""
    python = python_for_other_user()
    if python is None:
        pytest.skip("no Python interpreter that uid 12345 can run")
    script = tmp_base / "impostor.py"
    script.write_text(IMPOSTOR, encoding="utf-8")
    script.chmod(0o644)
    procs: list[subprocess.Popen[bytes]] = []

    def start(folder: Path, name: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [python, "-I", str(script), str(folder), name],
            user=OTHER,
            group=OTHER,
            extra_groups=[],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        wait_for(
            lambda: proc.poll() is not None or (folder / name).is_socket(),
            timeout=30,
            what="the impostor's socket",
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def impostor_requests(folder: Path) -> list[str]:
    log = folder / "requests.log"
    return log.read_text().splitlines() if log.exists() else []


def ask_directly(sock: Path) -> Any:
    """GET /status on a socket with no checks at all: what the old CLI would have believed."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect(str(sock))
    http_conn = http.client.HTTPConnection("x")
    http_conn.sock = conn
    http_conn.request("GET", "/status")
    data = json.loads(http_conn.getresponse().read())
    http_conn.close()
    return data


# --- the folder and socket, in-process ------------------------------------------------------------


def test_without_xdg_runtime_dir_the_folder_is_private_and_works(
    tmp_base: Path, tmp_path: Path
) -> None:
    config = config_for(tmp_path)
    sock = socket_path(config.state_dir)
    assert sock.parent == tmp_base / f"releaseosd-{ME}"
    server = server_for(config)
    server.start()
    try:
        folder = os.lstat(sock.parent)
        assert stat.S_ISDIR(folder.st_mode) and folder.st_uid == ME
        assert stat.S_IMODE(folder.st_mode) == 0o700
        info = os.lstat(sock)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert request(config, "GET", "/status") == [{"id": "ours"}]
    finally:
        server.stop()
    assert not sock.exists()
    with pytest.raises(DaemonNotRunning):
        request(config, "GET", "/status")


@needs_root
@pytest.mark.parametrize("mode", [0o700, 0o755, 0o777])
def test_a_folder_owned_by_another_user_is_refused(
    tmp_base: Path, tmp_path: Path, mode: int
) -> None:
    config = config_for(tmp_path)
    folder = socket_path(config.state_dir).parent
    folder.mkdir()
    folder.chmod(mode)
    os.chown(folder, OTHER, OTHER)
    expected = f"{folder} is owned by uid {OTHER}, not you; {FOLDER_FIX}"
    assert refusals(config) == (expected, expected)
    assert os.listdir(folder) == []


def test_our_folder_with_mode_0777_is_refused_by_the_cli_and_tightened_by_the_daemon(
    tmp_base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path)
    folder = socket_path(config.state_dir).parent
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(ControlSocketUnsafe) as cli_side:
        request(config, "GET", "/status")
    assert str(cli_side.value) == (
        f"{folder} has mode 0777, not 0700: other users can reach into it; "
        f"run chmod 700 {folder} (starting the daemon does this too)"
    )
    # The daemon may fix it: a real directory of ours, chmod-ed through the fd it checked.
    server = server_for(config)
    server.start()
    try:
        assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
        assert f"{folder} had mode 0777; set it to 0700" in caplog.text
        assert request(config, "GET", "/status") == [{"id": "ours"}]
    finally:
        server.stop()


def test_a_symlink_at_the_folder_path_is_refused_and_not_followed(
    tmp_base: Path, tmp_path: Path
) -> None:
    config = config_for(tmp_path)
    folder = socket_path(config.state_dir).parent
    bait = tmp_base / "bait"
    bait.mkdir(mode=0o700)  # even a private folder of ours: the link could be re-pointed
    folder.symlink_to(bait)
    expected = f"{folder} is a symbolic link, not a folder; {FOLDER_FIX}"
    assert refusals(config) == (expected, expected)
    assert folder.is_symlink() and os.listdir(bait) == []


def test_a_plain_file_at_the_folder_path_is_refused(tmp_base: Path, tmp_path: Path) -> None:
    config = config_for(tmp_path)
    folder = socket_path(config.state_dir).parent
    folder.write_text("not a folder")
    expected = f"{folder} is a regular file, not a folder; {FOLDER_FIX}"
    assert refusals(config) == (expected, expected)
    assert folder.read_text() == "not a folder"


def test_a_plain_file_at_the_socket_path_is_refused_and_kept(
    tmp_base: Path, tmp_path: Path
) -> None:
    config = config_for(tmp_path)
    sock = socket_path(config.state_dir)
    sock.parent.mkdir(mode=0o700)
    sock.write_text("not a socket")
    expected = f"{sock} is a regular file, not the daemon's socket; {SOCKET_FIX}"
    assert refusals(config) == (expected, expected)
    assert sock.read_text() == "not a socket"


def test_a_symlink_at_the_socket_path_is_refused(tmp_base: Path, tmp_path: Path) -> None:
    config = config_for(tmp_path)
    sock = socket_path(config.state_dir)
    sock.parent.mkdir(mode=0o700)
    elsewhere = bind_socket(tmp_base / "elsewhere.sock")
    try:
        sock.symlink_to(tmp_base / "elsewhere.sock")
        expected = f"{sock} is a symbolic link, not the daemon's socket; {SOCKET_FIX}"
        assert refusals(config) == (expected, expected)
        assert sock.is_symlink()
    finally:
        elsewhere.close()


@needs_root
def test_a_socket_owned_by_another_user_is_refused_and_kept(tmp_base: Path, tmp_path: Path) -> None:
    config = config_for(tmp_path)
    sock = socket_path(config.state_dir)
    sock.parent.mkdir(mode=0o700)
    theirs = bind_socket(sock)
    try:
        os.chown(sock, OTHER, OTHER)
        inode = os.lstat(sock).st_ino
        expected = f"{sock} is owned by uid {OTHER}, not you; {SOCKET_FIX}"
        assert refusals(config) == (expected, expected)
        assert os.lstat(sock).st_ino == inode  # the daemon did not remove it
    finally:
        theirs.close()


def test_a_stale_socket_of_ours_means_no_daemon_and_is_replaced(
    tmp_base: Path, tmp_path: Path
) -> None:
    config = config_for(tmp_path)
    sock = socket_path(config.state_dir)
    sock.parent.mkdir(mode=0o700)
    bind_socket(sock).close()  # a crashed daemon's socket: the file stays, nobody listens
    assert sock.is_socket()
    with pytest.raises(DaemonNotRunning):
        request(config, "GET", "/status")
    server = server_for(config)
    server.start()
    try:
        assert request(config, "GET", "/status") == [{"id": "ours"}]
    finally:
        server.stop()


@needs_root
def test_a_peer_running_as_another_user_is_refused_before_anything_is_sent(
    tmp_base: Path, tmp_path: Path, impostor: Any
) -> None:
    """Folder and socket file pass (ours, 0700, a socket owned by us), but the process behind
    the socket runs as uid 12345: only SO_PEERCRED can tell."""
    if sys.platform != "linux":
        pytest.skip("SO_PEERCRED is Linux's")
    config = config_for(tmp_path)
    sock = socket_path(config.state_dir)
    sock.parent.mkdir(mode=0o700)
    theirs = tmp_base / "theirs"
    proc = impostor(theirs, sock.name)
    os.rename(theirs / sock.name, sock)  # the bound socket keeps working under its new name
    os.chown(sock, ME, os.getgid())
    with pytest.raises(ControlSocketUnsafe) as cli_side:
        request(config, "POST", "/remove", {"track": "Alone", "remote": True})
    assert str(cli_side.value) == (
        f"the process answering on {sock} (pid {proc.pid}) runs as uid {OTHER}, not you: "
        f"it is not your daemon; {SOCKET_FIX}"
    )
    assert impostor_requests(theirs) == []


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "No such file or directory"),
        (lambda p: p.write_text("x"), "it is a regular file, not a folder"),
        (lambda p: p.mkdir(mode=0o755), "it has mode 0755, not 0700"),
        (lambda p: (p.mkdir(mode=0o700), os.chown(p, OTHER, OTHER)), f"owned by uid {OTHER}"),
    ],
    ids=["missing", "file", "too-open", "not-ours"],
)
def test_an_unusable_xdg_runtime_dir_falls_back_to_the_checked_tmp_folder(
    tmp_base: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make: Any,
    problem: str,
) -> None:
    if "uid" in problem and os.geteuid() != 0:
        pytest.skip("playing another user needs root")
    runtime = tmp_path / "runtime"
    make(runtime)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert socket_path(tmp_path).parent == tmp_base / f"releaseosd-{ME}"
    assert f"not using XDG_RUNTIME_DIR={runtime}" in caplog.text and problem in caplog.text


def test_a_private_xdg_runtime_dir_is_used(
    tmp_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    config = config_for(tmp_path)
    assert socket_path(config.state_dir).parent == runtime / "releaseosd"
    server = server_for(config)
    server.start()
    try:
        assert request(config, "GET", "/status") == [{"id": "ours"}]
    finally:
        server.stop()


# --- end to end: `releaseosd run` and the CLI as child processes -----------------------------------


def env_without_xdg(root: Path, base: Path) -> dict[str, str]:
    env = daemon_env(root)
    del env["XDG_RUNTIME_DIR"]
    env["TMPDIR"] = str(base)
    return env


def releaseosd(
    config: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _other_users_folder(folder: Path, sock: Path, base: Path) -> None:
    folder.mkdir()
    folder.chmod(0o777)
    os.chown(folder, OTHER, OTHER)


def _symlink_to_their_folder(folder: Path, sock: Path, base: Path) -> None:
    bait = base / "bait"
    bait.mkdir()
    bait.chmod(0o777)
    os.chown(bait, OTHER, OTHER)
    folder.symlink_to(bait)


def _file_at_folder(folder: Path, sock: Path, base: Path) -> None:
    folder.write_text("x")


def _file_at_socket(folder: Path, sock: Path, base: Path) -> None:
    folder.mkdir(mode=0o700)
    sock.write_text("x")


@needs_root
@pytest.mark.parametrize(
    ("hostile", "problem"),
    [
        (_other_users_folder, "{folder} is owned by uid 12345, not you; " + FOLDER_FIX),
        (_symlink_to_their_folder, "{folder} is a symbolic link, not a folder; " + FOLDER_FIX),
        (_file_at_folder, "{folder} is a regular file, not a folder; " + FOLDER_FIX),
        (_file_at_socket, "{sock} is a regular file, not the daemon's socket; " + SOCKET_FIX),
    ],
    ids=["other-users-folder", "symlink", "file-at-folder", "file-at-socket"],
)
def test_run_exits_with_a_clear_message_on_a_hostile_folder(
    tmp_path: Path,
    tmp_base: Path,
    sandbox: TestSandbox,
    token_store: Any,
    hostile: Any,
    problem: str,
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    sock = socket_path(tmp_path / "state")
    hostile(sock.parent, sock, tmp_base)
    result = releaseosd(config_path, env_without_xdg(tmp_path, tmp_base), "run")
    assert result.returncode == 1, result.stderr
    expected = problem.format(folder=sock.parent, sock=sock)
    assert f"cannot start the control socket: {expected}" in result.stderr
    assert "Traceback" not in result.stderr
    if hostile is _other_users_folder:
        assert os.listdir(sock.parent) == []


@needs_root
def test_the_cli_refuses_an_impostor_in_another_users_folder(
    tmp_path: Path, tmp_base: Path, impostor: Any
) -> None:
    config_path = write_config(tmp_path, "http://127.0.0.1:9")
    sock = socket_path(tmp_path / "state")
    impostor(sock.parent, sock.name)  # uid 12345 got to /tmp/releaseosd-<our uid> first
    assert os.lstat(sock.parent).st_uid == OTHER
    # The impostor is live: a CLI that trusted the path would have printed this.
    assert ask_directly(sock)[0]["title"] == "IMPOSTOR SAYS ALL IS WELL"
    asked = impostor_requests(sock.parent)
    env = env_without_xdg(tmp_path, tmp_base)
    expected = f"{sock.parent} is owned by uid {OTHER}, not you; {FOLDER_FIX}"
    for args in (
        ("status",),
        ("status", "--json"),
        ("remove", "Alone", "--remote", "--yes"),
        ("release", "Alone", "--now"),
        ("pause",),
    ):
        result = releaseosd(config_path, env, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert expected in result.stderr, args
        assert "IMPOSTOR" not in result.stdout + result.stderr, args
        assert "Traceback" not in result.stderr, args
    assert impostor_requests(sock.parent) == asked  # not one command reached it
    assert not (tmp_path / "state").exists()  # and none fell back to the store


def test_without_xdg_runtime_dir_run_and_the_cli_meet_in_the_tmp_folder(
    tmp_path: Path, tmp_base: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    sock = socket_path(tmp_path / "state")
    env = env_without_xdg(tmp_path, tmp_base)
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "releaseosd", "--config", str(config_path), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_for(lambda: proc.poll() is not None or sock.is_socket(), timeout=60, what="the socket")
        assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
        folder = os.lstat(sock.parent)
        assert folder.st_uid == ME and stat.S_IMODE(folder.st_mode) == 0o700
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        result = releaseosd(config_path, env, "status", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == []
        # Only through the daemon: the store's owner lock is the daemon's (exit 3 otherwise).
        result = releaseosd(config_path, env, "pause")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("uploads paused")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
