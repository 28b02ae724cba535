"""releaseosd.app.sdnotify against a real AF_UNIX datagram socket, as systemd would listen."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sd_notify_listener import NotifySocket

from releaseosd.app import sdnotify

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sdnotify, "_failure_logged", False)


def test_without_notify_socket_nothing_is_sent(notify_socket: NotifySocket) -> None:
    assert sdnotify.ready() is False
    assert sdnotify.watchdog_ping() is False
    assert sdnotify.stopping() is False
    assert notify_socket.messages() == []


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_messages_arrive_with_this_process_as_sender(
    abstract: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    with NotifySocket.bind(abstract=abstract) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
        assert sdnotify.ready("watching 2 folders\nnext upload 18:00")
        assert sdnotify.status("uploading Night Drive")
        assert sdnotify.watchdog_ping()
        assert sdnotify.stopping()
        got = sock.messages()
    assert [m.raw for m in got] == [
        "READY=1\nSTATUS=watching 2 folders next upload 18:00",
        "STATUS=uploading Night Drive",
        "WATCHDOG=1",
        "STOPPING=1",
    ]
    assert got[0].fields == {"READY": "1", "STATUS": "watching 2 folders next upload 18:00"}
    assert {m.pid for m in got} == {os.getpid()}


def test_a_child_process_notifies_as_a_daemon_would(notify_socket: NotifySocket) -> None:
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.address, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", "from releaseosd.app import sdnotify; sdnotify.ready()"], env=env
    )
    assert child.wait(30) == 0
    assert notify_socket.wait_for("READY=1").pid == child.pid


def test_a_vanished_socket_fails_quietly_and_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gone = Path(tempfile.mkdtemp(prefix="rosd-gone-")) / "notify"
    monkeypatch.setenv("NOTIFY_SOCKET", str(gone))
    assert sdnotify.watchdog_ping() is False
    assert sdnotify.watchdog_ping() is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(gone) in warnings[0].getMessage()
    gone.parent.rmdir()


def test_an_unsupported_address_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("30000000", None, 30.0),
        ("1500000", "SELF", 1.5),
        ("30000000", "1", None),  # meant for another process (a parent that exec'd us, say)
        ("30000000", "not-a-pid", None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(
    usec: str | None, pid: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "SELF" else pid)
    assert sdnotify.watchdog_interval() == expected
