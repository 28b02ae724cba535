"""Fixtures for doctor / init / upload tests: the SoundCloud sandbox over loopback HTTP, a real
keyring backend (keyrings.alt's file keyring in tmp), and a private D-Bus session bus with a
stand-in notification server. The helpers come from the daemon and notifier tests, unchanged."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for _folder in ("daemon", "notify"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

from daemon_harness import CLIENT_ID, CLIENT_SECRET  # noqa: E402
from fake_notification_server import NotificationServer, SessionBus  # noqa: E402
from setup_helpers import file_token_store, keyring_file, log_in  # noqa: E402

from releaseosd.soundcloud.sandbox import Sandbox  # noqa: E402


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(
        data_dir=tmp_path / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        processing_seconds=0.2,
    )
    box.start()
    yield box
    box.stop()


@pytest.fixture
def token_store(tmp_path: Path, sandbox: Sandbox) -> Any:
    """The file keyring that `daemon_env(tmp_path)` selects, holding a sandbox login."""
    store = file_token_store(keyring_file(tmp_path))
    log_in(store, sandbox)
    return store


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
