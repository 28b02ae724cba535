"""Fixtures for doctor / init / upload tests: a private D-Bus session bus with a stand-in
notification server (yielding its address). `sandbox` and `token_store` come from
tests/conftest.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[2]
for _folder in ("e2e", "listeners"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

from fake_notification_server import NotificationServer, SessionBus  # noqa: E402


@pytest.fixture
def notification_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private session bus whose org.freedesktop.Notifications is owned; yields its address."""
    workdir = tmp_path / "session-bus"
    workdir.mkdir()
    bus = SessionBus.start(workdir)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    server = NotificationServer.start(bus, tmp_path / "notifications.jsonl")
    try:
        yield bus.address
    finally:
        server.stop()
        bus.stop()
