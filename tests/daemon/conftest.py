"""Fixtures for end-to-end daemon tests. See daemon_harness.py for the helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import CLIENT_ID, CLIENT_SECRET

from releaseosd.soundcloud.sandbox import RecordedRequest, Sandbox


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
    # Every request the daemon sent in the test must be one SoundCloud's own spec documents.
    if SPEC_PATH.exists():
        spec = load_spec()
        # A request the sandbox answered with an injected fault before parsing its body has no
        # fields on record; there is nothing to check in it.
        parsed = [r for r in box.requests if not _answered_by_a_fault(r)]
        problems = [f"{r.method} {r.path}: {p}" for r in parsed for p in check_request(r, spec)]
        assert problems == [], "requests that do not match openapi.yaml:\n" + "\n".join(problems)


def _answered_by_a_fault(rec: RecordedRequest) -> bool:
    """An injected 429/5xx answered before the body was parsed leaves no fields to check."""
    unparsed = (rec.content_type == "multipart/form-data" and not rec.form and not rec.files) or (
        rec.content_type == "application/json" and rec.json_body is None
    )
    return unparsed and (rec.status == 429 or rec.status >= 500 or rec.status == 422)


@pytest.fixture
def token_store(tmp_path: Path, sandbox: Sandbox) -> Any:
    """A real keyring backend (keyrings.alt's file keyring in tmp) holding a sandbox login."""
    import time

    from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

    from releaseosd.soundcloud.tokens import TokenSet, TokenStore

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring" / "keyring_pass.cfg")
    store = TokenStore(backend=backend)
    pair = sandbox.issue_tokens(CLIENT_ID)
    store.set_client_secret(CLIENT_ID, CLIENT_SECRET)
    store.set_tokens(
        CLIENT_ID,
        TokenSet(pair.access_token, pair.refresh_token, time.time() + float(pair.expires_in)),
    )
    return store


# The stand-in notification server and the spec checker live with their own tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notify"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soundcloud"))
from fake_notification_server import (  # noqa: E402
    NotificationBus,
    NotificationServer,
    SessionBus,
)
from spec_check import SPEC_PATH, check_request, load_spec  # noqa: E402


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
