"""Faults end to end: a flaky SoundCloud (30 % errors, 429 with Retry-After, uploads cut off
mid-body, tokens expiring early) still ends with every track released exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    ThreadedDaemon,
    make_audio,
    read_tracks,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State


class SendLog:
    """Every request the daemon's httpx clients send: when it left and, for 429s, when the
    answer came back and what Retry-After said. Undercutting Retry-After means sending after
    having been told to wait; a request already on its way when a 429 went out does not."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[float, str]] = []
        self.limits: list[tuple[float, float, str]] = []

    def install(self, monkeypatch: Any) -> None:
        import httpx

        original = httpx.Client.send

        def send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            started = time.monotonic()
            with self.lock:
                self.sent.append((started, f"{request.method} {request.url.path}"))
            response = original(client, request, **kwargs)
            if response.status_code == 429 and response.headers.get("retry-after"):
                with self.lock:
                    self.limits.append(
                        (time.monotonic(), float(response.headers["retry-after"]), request.url.path)
                    )
            return response

        monkeypatch.setattr(httpx.Client, "send", send)

    def violations(self) -> list[str]:
        return [
            f"{what} sent {sent - told:.3f} s after a 429 on {path} said wait {wait} s"
            for told, wait, path in self.limits
            for sent, what in self.sent
            if told < sent < told + wait
        ]


def test_twenty_tracks_through_a_flaky_soundcloud(tmp_path: Path, monkeypatch: Any) -> None:
    import keyring  # noqa: F401  (the real backend below is keyrings.alt's file keyring)
    from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

    from releaseosd.soundcloud.tokens import TokenSet, TokenStore

    sandbox = TestSandbox(
        data_dir=tmp_path / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        processing_seconds=0.2,
        token_ttl=4,
    )
    sandbox.start()
    try:
        backend = PlaintextKeyring()
        backend.file_path = str(tmp_path / "keyring.cfg")
        tokens = TokenStore(backend=backend)
        pair = sandbox.issue_tokens(CLIENT_ID)
        tokens.set_client_secret(CLIENT_ID, CLIENT_SECRET)
        tokens.set_tokens(
            CLIENT_ID, TokenSet(pair.access_token, pair.refresh_token, time.time() + 4)
        )
        sandbox.faults.update(
            error_rate=0.3,
            rate_limit_every=20,
            retry_after=1,
            drop_upload_after_bytes=20_000,
            drop_upload_times=4,
            seed=7,
        )
        config_path = write_config(
            tmp_path, sandbox.base_url, uploads={"max_attempts": 60, "concurrency": 2}
        )
        exports = tmp_path / "exports"
        for i in range(20):
            (exports / f"T{i:02}.yaml").write_text(f"title: Track {i:02}\nsharing: public\n")
            make_audio(exports / f"T{i:02}.wav", seconds=1.0, freq=200 + 37 * i)

        send_log = SendLog()
        send_log.install(monkeypatch)
        stop_expiring = threading.Event()

        def expire_tokens_now_and_then() -> None:
            while not stop_expiring.wait(1.5):
                sandbox.expire_access_tokens()

        expirer = threading.Thread(target=expire_tokens_now_and_then, daemon=True)
        expirer.start()
        state = tmp_path / "state"
        with ThreadedDaemon(config_path, tokens):
            done = wait_for(
                lambda: (
                    (ts := read_tracks(state))
                    and len(ts) == 20
                    and all(t.state in (State.RELEASED, State.FAILED) for t in ts)
                    and ts
                ),
                timeout=150,
                what="20 tracks to finish",
            )
        stop_expiring.set()
        failed = [(t.title, t.last_error) for t in done if t.state != State.RELEASED]
        assert failed == []
        remote = sandbox.tracks()
        assert sorted(t["title"] for t in remote) == [f"Track {i:02}" for i in range(20)]
        assert len({t["urn"] for t in remote}) == 20
        assert send_log.limits, "the test should have seen 429s with Retry-After"
        assert send_log.violations() == []
        assert sandbox.refresh_count >= 1, "tokens should have been refreshed"
        attempts = sum(t.attempts for t in done)
        print(f"attempts counted over 20 tracks: {attempts}; refreshes: {sandbox.refresh_count}")
    finally:
        sandbox.stop()
