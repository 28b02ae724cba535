"""Fixtures: a real private D-Bus session bus and a stand-in notification server.

API (for any test under tests/listeners/; to reuse elsewhere, e.g. in the daemon's end-to-end tests,
import the helpers and write the same three-line fixture, or move these fixtures up a level):

    session_bus         -> SessionBus: a running dbus-daemon with no notification server.
        .address            value for DBUS_SESSION_BUS_ADDRESS
        .env(base=None)     copy of os.environ (or `base`) with that address set, for subprocesses

    notification_bus    -> NotificationBus: session bus + fake org.freedesktop.Notifications.
        .address, .env()    as above
        .received()         list of dicts, one per Notify call so far: summary, body, app_name,
                            icon, hints, actions, replaces_id, expire_timeout
        .wait_for(n, timeout=10.0)
                            polls until n notifications arrived and returns them all;
                            AssertionError (listing what did arrive) after the timeout

    hanging_notification_bus -> NotificationBus whose server owns the name but never answers.

Both fixtures also set DBUS_SESSION_BUS_ADDRESS in this process (monkeypatch), so in-process code
that reads the variable at send time, such as releaseosd.listeners.desktop.DBusSender, uses the private bus.
Code that binds its backend at import time (notify-py) must run in a subprocess with `.env()`.

Helpers, importable by other test folders: `SessionBus.start(workdir)`,
`NotificationServer.start(bus, record_file, hang=False)` and `NotificationBus(bus, server)` in
tests/listeners/fake_notification_server.py (importable as `fake_notification_server` from tests in
this folder; elsewhere add tests/listeners to sys.path). Never import from a conftest module: with
several conftest.py files, `import conftest` finds whichever came first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_notification_server import NotificationBus, NotificationServer, SessionBus


@pytest.fixture
def session_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SessionBus]:
    workdir = tmp_path / "session-bus"
    workdir.mkdir()
    bus = SessionBus.start(workdir)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    try:
        yield bus
    finally:
        bus.stop()


def _with_server(bus: SessionBus, tmp_path: Path, hang: bool) -> Iterator[NotificationBus]:
    server = NotificationServer.start(bus, tmp_path / "notifications.jsonl", hang=hang)
    try:
        yield NotificationBus(bus, server)
    finally:
        server.stop()


@pytest.fixture
def notification_bus(session_bus: SessionBus, tmp_path: Path) -> Iterator[NotificationBus]:
    yield from _with_server(session_bus, tmp_path, hang=False)


@pytest.fixture
def hanging_notification_bus(session_bus: SessionBus, tmp_path: Path) -> Iterator[NotificationBus]:
    yield from _with_server(session_bus, tmp_path, hang=True)
