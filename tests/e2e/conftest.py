"""Fixtures for end-to-end daemon tests (sandbox, token_store and runtime_dir are in tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The stand-in notification server lives with the notifier's own tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "listeners"))
from fake_notification_server import (
    NotificationBus,
    NotificationServer,
    SessionBus,
)


@pytest.fixture
def notification_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotificationBus]:
    """A private D-Bus session bus with a recording org.freedesktop.Notifications server."""
    workdir = tmp_path / "session-bus"
    workdir.mkdir()
    bus = SessionBus.start(workdir)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    server = NotificationServer.start(bus, tmp_path / "notifications.jsonl")
    try:
        yield NotificationBus(bus, server)
    finally:
        server.stop()
        bus.stop()
