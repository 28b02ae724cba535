"""Notifications end to end: the daemon's Notify calls over a real D-Bus session bus."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from daemon_harness import (
    CLIENT_ID,
    ThreadedDaemon,
    by_title,
    local,
    make_audio,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.soundcloud.tokens import TokenSet


def _summaries(bus: Any) -> list[str]:
    return [n["summary"] for n in bus.received()]


def test_released_scheduled_failed_and_needs_login(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, notification_bus: Any
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    exports = tmp_path / "exports"
    state = tmp_path / "state"
    # One upload is refused for good (SoundCloud's 422 on the asset, soundcloud/api#326).
    sandbox.faults.push(
        422,
        body='{"code": 422, "message": "unable to process provided asset_data", "status": "422"}',
        match="POST /tracks",
    )
    (exports / "Refused.yaml").write_text("title: Refused Song\nsharing: public\n")
    make_audio(exports / "Refused.wav", freq=900)
    with ThreadedDaemon(config_path, token_store):
        wait_for(lambda: "Refused Song failed" in _summaries(notification_bus), what="failed")
        (exports / "Live.yaml").write_text("title: Live Song\nsharing: public\n")
        make_audio(exports / "Live.wav", freq=330)
        (exports / "Soon.yaml").write_text(
            f"title: Soon Song\nsharing: public\nrelease_at: {local(5).isoformat()}\n"
        )
        make_audio(exports / "Soon.wav", freq=440)
        wait_for(
            lambda: (
                {"Live Song is live", "Soon Song uploaded", "Soon Song is live"}
                <= set(_summaries(notification_bus))
            ),
            what="released and scheduled notifications",
        )
        # The login dies: the access token expires and the refresh token is refused.
        sandbox.expire_access_tokens()
        token_store.set_tokens(CLIENT_ID, TokenSet("dead-access", "dead-refresh", time.time() - 5))
        (exports / "Stuck.yaml").write_text("title: Stuck Song\nsharing: public\n")
        make_audio(exports / "Stuck.wav", freq=660)
        wait_for(
            lambda: "SoundCloud login expired" in _summaries(notification_bus),
            what="needs-login notification",
        )
        stuck = wait_for(lambda: by_title(state).get("Stuck Song"), what="stuck track")
        assert stuck.state == State.NEEDS_LOGIN
        assert stuck.attempts == 0, "a dead login must not burn upload attempts"
        # Logging in again resumes the track by itself.
        pair = sandbox.issue_tokens(CLIENT_ID)
        token_store.set_tokens(
            CLIENT_ID, TokenSet(pair.access_token, pair.refresh_token, time.time() + 3600)
        )
        wait_for(
            lambda: by_title(state)["Stuck Song"].state == State.RELEASED, what="resumed release"
        )
    by_summary = {n["summary"]: n for n in notification_bus.received()}
    live = by_title(state)["Live Song"]
    assert live.soundcloud.permalink_url in by_summary["Live Song is live"]["body"]
    assert "goes public" in by_summary["Soon Song uploaded"]["body"]
    refused = by_summary["Refused Song failed"]["body"]
    assert "unable to process provided asset_data" in refused
    refused_id = by_title(state)["Refused Song"].id
    assert f"releaseosd retry {refused_id}" in refused
    assert "releaseosd auth login" in by_summary["SoundCloud login expired"]["body"]


def test_no_session_bus_does_not_stop_a_release(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    config_path = write_config(tmp_path, sandbox.base_url)
    (tmp_path / "exports" / "A.yaml").write_text("title: Headless\nsharing: public\n")
    make_audio(tmp_path / "exports" / "A.wav", freq=345)
    with ThreadedDaemon(config_path, token_store):
        wait_for(
            lambda: (
                (t := by_title(tmp_path / "state").get("Headless")) and t.state == State.RELEASED
            ),
            what="release without a bus",
        )
