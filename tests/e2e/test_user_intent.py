"""What the producer decided survives restarts and reloads: a copy is never a second upload, a
release time set with the CLI wins over the sidecar, a sharing change is carried out, and a
login problem waits quietly for the producer instead of looping."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    ThreadedDaemon,
    by_title,
    daemon_env,
    make_audio,
    read_tracks,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.soundcloud.tokens import TokenSet


def test_a_copy_of_the_same_audio_is_never_uploaded_even_after_restarts(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "release.yaml").write_text("sharing: public\ngenre: House\n")
    make_audio(exports / "Night Drive.wav", freq=700)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (t := by_title(state).get("Night Drive")) and t.state == State.RELEASED,
            what="original released",
        )
        make_audio(exports / "Night Drive (backup).wav", freq=700)
        wait_for(
            lambda: (t := by_title(state).get("Night Drive (backup)")) and t.state == State.INVALID,
            what="copy refused",
        )
    for _ in range(2):  # every start reports every file again
        with ThreadedDaemon(config, token_store):
            time.sleep(1.5)  # let the start-up scan and a few ticks run; nothing should change
    tracks = by_title(state)
    assert tracks["Night Drive (backup)"].state == State.INVALID
    assert "the same audio as 'Night Drive'" in (tracks["Night Drive (backup)"].last_error or "")
    assert len(sandbox.tracks()) == 1


def test_release_at_set_with_the_cli_survives_a_restart(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Keep.yaml").write_text("title: Keep My Date\nsharing: private\n")
    make_audio(exports / "Keep.wav", freq=710)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (t := by_title(state).get("Keep My Date")) and t.state == State.PUBLISHED,
            what="published privately",
        )
    when = (dt.datetime.now().astimezone() + dt.timedelta(days=3)).replace(microsecond=0)
    result = subprocess.run(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "release", "Keep My Date",
         "--at", when.isoformat()],
        env=daemon_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with ThreadedDaemon(config, token_store):
        time.sleep(1.5)  # the start-up scan re-reads the sidecar, which says nothing of a date
        track = by_title(state)["Keep My Date"]
    assert track.state == State.SCHEDULED
    assert track.release_at == when
    assert next(iter(sandbox.tracks()))["sharing"] == "private"


def test_a_published_track_whose_sidecar_turns_public_goes_public(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Flip.yaml"
    sidecar.write_text("title: Flip\nsharing: private\n")
    make_audio(exports / "Flip.wav", freq=720)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (t := by_title(state).get("Flip")) and t.state == State.PUBLISHED,
            what="published",
        )
        sandbox.faults.push(503, match="PUT /tracks/{track_urn}")  # the first try fails
        sidecar.write_text("title: Flip\nsharing: public\n")
        wait_for(lambda: by_title(state)["Flip"].state == State.RELEASED, what="retried release")
    assert next(iter(sandbox.tracks()))["sharing"] == "public"


def test_a_login_problem_waits_quietly_until_the_user_acts(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, notification_bus: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    # An expired token and no client secret: renewing is impossible until `auth setup`.
    pair = sandbox.issue_tokens(CLIENT_ID)
    token_store.set_tokens(
        CLIENT_ID, TokenSet(pair.access_token, pair.refresh_token, time.time() - 10)
    )
    token_store.backend().delete_password("releaseosd", f"client_secret:{CLIENT_ID}")
    (exports / "Wait.yaml").write_text("title: Waiting Song\nsharing: public\n")
    make_audio(exports / "Wait.wav", freq=730)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (t := by_title(state).get("Waiting Song")) and t.state == State.NEEDS_LOGIN,
            what="waiting for the user",
        )
        requests_then = len(sandbox.requests)
        time.sleep(2.0)  # many ticks: nothing may loop
        assert len(sandbox.requests) == requests_then
        assert len(notification_bus.received()) == 1
        assert by_title(state)["Waiting Song"].attempts == 0
        token_store.set_client_secret(CLIENT_ID, CLIENT_SECRET)  # the user runs `auth setup`
        wait_for(lambda: by_title(state)["Waiting Song"].state == State.RELEASED, what="carried on")
    assert len(read_tracks(state)) == 1 and len(sandbox.tracks()) == 1


def test_a_reload_puts_new_settings_into_effect_and_guards_a_new_folder(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, caplog: Any
) -> None:
    from PIL import Image

    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    second = tmp_path / "second-folder"
    second.mkdir()
    private = tmp_path / "private.png"  # not in any watched folder
    Image.new("RGB", (900, 900), "red").save(private)
    with ThreadedDaemon(config, token_store) as daemon:
        text = config.read_text()
        text = text.replace("watch:\n", f"watch:\n  - path: {second}\n")
        text = text.replace("  size: 800\n", "  size: 1000\n")
        text = text.replace("stable_seconds: 0.3\n", "stable_seconds: 0.4\n")
        config.write_text(text + "defaults:\n  genre: Techno\n")
        caplog.set_level("INFO", logger="releaseosd")
        daemon.daemon.request_reload()
        wait_for(
            lambda: any("configuration reloaded" in r.getMessage() for r in caplog.records),
            what="the reload",
        )

        # A folder added by the reload is a watched folder like the others: its sidecars may
        # not reach outside it for artwork.
        (second / "Leak.yaml").write_text(f"sharing: private\nartwork: {private}\n")
        make_audio(second / "Leak.wav", freq=520)
        # New builds use the new defaults and artwork size.
        (exports / "After.yaml").write_text("sharing: private\n")
        make_audio(exports / "After.wav", freq=530)
        wait_for(
            lambda: (t := by_title(state).get("Leak")) and t.state == State.INVALID,
            what="the sidecar reaching outside the new folder refused",
        )
        after = wait_for(
            lambda: (t := by_title(state).get("After")) and t.artwork_path and t,
            what="a track built after the reload",
        )
    leak = by_title(state)["Leak"]
    assert "outside the watched folder" in (leak.last_error or "")
    assert after.metadata["genre"] == "Techno"
    with Image.open(after.artwork_path) as artwork:
        assert artwork.size == (1000, 1000)
    assert not any(t["title"] == "Leak" for t in sandbox.tracks())
    messages = [r.getMessage() for r in caplog.records]
    assert "'stable_seconds' changed in the config; it takes effect after a restart" in messages
    assert any("now in effect: watch, defaults, artwork" in m for m in messages)


def test_upload_preview_sends_the_preview_as_built_not_the_export(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    import mutagen.mp3

    config = write_config(tmp_path, sandbox.base_url)  # preview length 1 s in the config
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Teaser.yaml").write_text(
        "sharing: public\nupload: preview\npreview:\n  start: 1\n  length: 2.5\n"
    )
    make_audio(exports / "Teaser.wav", seconds=6.0, freq=640)
    with ThreadedDaemon(config, token_store):
        track = wait_for(
            lambda: (t := by_title(state).get("Teaser")) and t.state == State.RELEASED and t,
            what="the teaser released",
        )
    urn = track.soundcloud.urn
    assert urn is not None
    stored = sandbox.upload_of(urn)
    assert stored.filename == "preview.mp3"
    assert mutagen.mp3.MP3(stored.path).info.length == pytest.approx(2.5, abs=0.1)
    (remote,) = sandbox.tracks()
    # SoundCloud measures what it got: the 2.5 s preview, neither the 6 s export nor the 1 s of
    # the config's preview length.
    assert remote["duration"] == pytest.approx(2500, abs=100)
    assert track.probe is not None and track.probe["duration"] == pytest.approx(6.0, abs=0.05)


def test_the_quota_check_counts_the_preview_as_built(tmp_path: Path) -> None:
    from releaseosd.model.config import Config
    from releaseosd.model.events import EventBus
    from releaseosd.model.store import Store
    from releaseosd.model.track import Track
    from releaseosd.pipeline.stage import Stage
    from releaseosd.pipeline.upload import Uploader

    preview = make_audio(tmp_path / "preview.mp3", seconds=2.5, codec="libmp3lame")
    store = Store.open(tmp_path / "state")
    try:
        stage = Stage(Config(), store, client=lambda: None, events=EventBus(), wake=None)  # type: ignore[arg-type]
        uploader = Uploader(stage, after_processed=lambda _id: None)
        teaser = Track(
            audio_path=str(tmp_path / "Teaser.wav"),
            title="Teaser",
            preview_path=str(preview),
            metadata={"upload": "preview"},
            probe={"duration": 360.0},
            sha256="a" * 64,
            preview_sha256="b" * 64,
        )
        # Not the config's 30 s, and not the 6-minute export: what will be sent.
        audio, digest, seconds = uploader._payload(teaser)
        assert audio == preview and digest == "b" * 64
        assert seconds == pytest.approx(2.5, abs=0.1)
        full = teaser.model_copy(update={"metadata": {}})
        assert uploader._payload(full) == (tmp_path / "Teaser.wav", "a" * 64, 360.0)
    finally:
        store.close()
