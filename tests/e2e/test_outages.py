"""SoundCloud unreachable for a while, and SoundCloud failing only when artwork is attached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    ThreadedDaemon,
    by_title,
    free_port,
    make_audio,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.pipeline.retry import OFFLINE_ATTEMPTS_COUNTED
from releaseosd.soundcloud.errors import ARTWORK_5XX_LIMIT


def test_offline_for_a_while_then_back_does_not_use_up_attempts(
    tmp_path: Path, token_store: Any, sandbox: TestSandbox
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Tokens were issued by the fixture's sandbox; this one plays the same account, later.
    config = write_config(tmp_path, url, uploads={"max_attempts": 4, "backoff_max_seconds": 0.5})
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "O.yaml").write_text("title: Offline Song\nsharing: public\n")
    make_audio(exports / "O.wav", freq=640)
    with ThreadedDaemon(config, token_store):
        # Nothing listens on the port: every attempt is a refused connection.
        waited = wait_for(
            lambda: (t := by_title(state).get("Offline Song")) and t.offline_attempts >= 8 and t,
            timeout=40,
            what="many offline attempts",
        )
        assert waited.state in (State.READY, State.UPLOADING)
        assert waited.attempts <= OFFLINE_ATTEMPTS_COUNTED < 4
        back = TestSandbox(
            data_dir=tmp_path / "later-sandbox",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            processing_seconds=0.2,
        )
        back.start(port=port)
        try:
            # The old access token means nothing to this sandbox: a refresh is refused, and the
            # track waits for a login instead of failing.
            wait_for(
                lambda: by_title(state)["Offline Song"].state == State.NEEDS_LOGIN,
                what="needs login against the new server",
            )
            from releaseosd.soundcloud.tokens import TokenSet

            pair = back.issue_tokens(CLIENT_ID)
            token_store.set_tokens(
                CLIENT_ID, TokenSet(pair.access_token, pair.refresh_token, 4_000_000_000)
            )
            done = wait_for(
                lambda: (t := by_title(state)["Offline Song"]).state == State.RELEASED and t,
                what="released once back online",
            )
            assert [t["title"] for t in back.tracks()] == ["Offline Song"]
        finally:
            back.stop()
    assert done.attempts <= OFFLINE_ATTEMPTS_COUNTED


def test_artwork_that_keeps_failing_is_dropped_and_the_user_told(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, notification_bus: Any
) -> None:
    sandbox.faults.update(artwork_fails=True)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Art.yaml").write_text("title: Art Song\nsharing: public\n")
    make_audio(exports / "Art.wav", freq=660)
    with ThreadedDaemon(config, token_store):
        track = wait_for(
            lambda: (t := by_title(state).get("Art Song")) and t.state == State.RELEASED and t,
            what="released without artwork",
        )
        notification_bus.wait_for(2)  # the artwork notice, then the release
    assert track.without_artwork
    posts = [r for r in sandbox.requests if r.method == "POST" and r.path == "/tracks"]
    with_art = [p for p in posts if any(f.field == "track[artwork_data]" for f in p.files)]
    assert len(with_art) == ARTWORK_5XX_LIMIT and len(posts) == ARTWORK_5XX_LIMIT + 1
    assert not any(f.field == "track[artwork_data]" for f in posts[-1].files)
    summaries = [n["summary"] for n in notification_bus.received()]
    assert summaries == ["Art Song: uploading without artwork", "Art Song is live"]
