"""Fixtures for service installation and the sd_notify protocol.

API:

    notify_socket   -> NotifySocket (tests/app/service/sd_notify_listener.py), bound in a fresh temp
                       dir; NOTIFY_SOCKET is NOT set in this process (set it in the environment
                       of the process under test: {"NOTIFY_SOCKET": notify_socket.address}).
        .address                  value for NOTIFY_SOCKET
        .messages()               [Notification(pid, raw, fields)] received so far
        .wait_for("READY=1", timeout=10.0) -> Notification; polls, AssertionError on timeout
      For a daemon started under the Type=notify protocol, the lead's end-to-end test can do:
          proc = subprocess.Popen([... "releaseosd", "run" ...],
                                  env={**os.environ, "NOTIFY_SOCKET": notify_socket.address,
                                       "WATCHDOG_USEC": "2000000"})
          assert notify_socket.wait_for("READY=1").pid == proc.pid
          notify_socket.wait_for("WATCHDOG=1")
          proc.terminate(); notify_socket.wait_for("STOPPING=1")

    user_home       -> Path: HOME and XDG_CONFIG_HOME point into tmp_path (XDG_CONFIG_HOME is
                       user_home/.config); XDG_RUNTIME_DIR is a fresh 0700 dir.

    stub_tools      -> StubTools: fake `systemctl` and `launchctl` first on PATH that record
                       their argv and answer from a table.
        .calls()                  [[tool, arg, ...], ...] in order
        .answer(tool, verb, stdout="", stderr="", status=0)
                                  what `tool ... verb ...` prints and exits with
                                  (verb = first argument that does not start with "-")
        .bin                      the directory holding the stubs
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sd_notify_listener import NotifySocket
from stub_tools import StubTools


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    with NotifySocket.bind() as sock:
        yield sock


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("RELEASEOSD_CONFIG", raising=False)
    return home


@pytest.fixture
def stub_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StubTools:
    stubs = StubTools(tmp_path / "stubs")
    monkeypatch.setenv("PATH", f"{stubs.bin}{os.pathsep}{os.environ.get('PATH', '')}")
    return stubs
