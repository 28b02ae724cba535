"""`releaseosd upload FILE` end to end: real audio made with ffmpeg, the sandbox over loopback
HTTP, the real store and a real (file) keyring; plus the progress bar's output on its own."""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path
from typing import Any

from daemon_harness import make_audio, read_tracks, write_config
from sandbox_tools import TestSandbox
from setup_helpers import cli

from releaseosd.app.oneshot import EXIT_BUSY, ProgressBar, progress_line, run_upload
from releaseosd.model.config import load_config
from releaseosd.model.states import State
from releaseosd.model.store import OwnerLock

SIDECAR = """\
title: Night Drive
genre: Techno
tags: [night, drive]
sharing: public
description: Late one.
"""


def _setup(tmp_path: Path, sandbox: TestSandbox, sidecar: str = SIDECAR) -> tuple[Any, Path]:
    config_path = write_config(tmp_path, sandbox.base_url)
    config = load_config(config_path)[0]
    folder = tmp_path / "elsewhere"  # not a watched folder: no daemon would see it
    (folder / "Night Drive.yaml").parent.mkdir(parents=True, exist_ok=True)
    (folder / "Night Drive.yaml").write_text(sidecar, encoding="utf-8")
    return config, make_audio(folder / "Night Drive.wav", seconds=3.0, freq=610)


def _remote(sandbox: TestSandbox, urn: str) -> dict[str, Any]:
    return next(t for t in sandbox.tracks() if t["urn"] == urn)


def test_upload_now_goes_public_with_the_sidecars_metadata(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config, audio = _setup(tmp_path, sandbox)
    err = io.StringIO()

    outcome = run_upload(config, audio, tokens=token_store, err=err, is_tty=False)

    assert outcome.code == 0, outcome.message
    track = outcome.track
    assert track is not None and track.state == State.RELEASED
    remote = _remote(sandbox, str(track.soundcloud.urn))
    assert remote["sharing"] == "public"
    assert remote["title"] == "Night Drive"
    assert remote["genre"] == "Techno"
    assert "Late one." in remote["description"]
    assert str(remote["permalink_url"]) in outcome.message
    # The record is in the store like a daemon-made one, with its preview and artwork.
    [stored] = read_tracks(config.state_dir)
    assert (
        stored.state == State.RELEASED
        and stored.sha256
        and Path(str(stored.preview_path)).is_file()
    )
    lines = err.getvalue().splitlines()
    progress = [line for line in lines if line.startswith("uploading ")]
    assert progress[-1].startswith("uploading ") and "100%" in progress[-1]
    assert 2 <= len(progress) <= 5, "not a terminal: a line per quarter, no flood"
    # The owner lock is free again: a daemon can start.
    lock = OwnerLock(config.state_dir)
    lock.acquire()
    lock.release()


def test_upload_with_future_time_stays_private_and_is_scheduled(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config, audio = _setup(tmp_path, sandbox)
    when = (dt.datetime.now().astimezone() + dt.timedelta(days=2)).replace(microsecond=0)

    outcome = run_upload(config, audio, at=when, tokens=token_store, err=io.StringIO())

    assert outcome.code == 0, outcome.message
    assert outcome.track is not None
    remote = _remote(sandbox, str(outcome.track.soundcloud.urn))
    assert remote["sharing"] == "private"
    [stored] = read_tracks(config.state_dir)
    assert stored.state == State.SCHEDULED
    assert stored.release_at == when
    assert (
        "daemon" in outcome.message and f"releaseosd release {stored.id} --now" in outcome.message
    )


def test_same_audio_again_is_refused_with_the_url(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config, audio = _setup(tmp_path, sandbox)
    first = run_upload(config, audio, tokens=token_store, err=io.StringIO())
    assert first.code == 0, first.message
    uploads = len(sandbox.tracks())
    # The same bytes under another name are the same audio.
    copy = audio.with_name("Night Drive (copy).wav")
    copy.write_bytes(audio.read_bytes())

    again = run_upload(config, copy, tokens=token_store, err=io.StringIO())

    assert again.code == 1
    assert "already on SoundCloud" in again.message
    assert str(first.url) in again.message
    assert len(sandbox.tracks()) == uploads
    assert len(read_tracks(config.state_dir)) == 1


def test_refuses_while_a_daemon_owns_the_state_dir(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config, audio = _setup(tmp_path, sandbox)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    daemon = OwnerLock(config.state_dir)
    daemon.acquire("daemon")
    try:
        outcome = run_upload(config, audio, tokens=token_store, err=io.StringIO())
    finally:
        daemon.release()
    assert outcome.code == EXIT_BUSY
    assert "watched folder" in outcome.message and str(tmp_path / "exports") in outcome.message
    assert sandbox.tracks() == []


def test_bad_sidecar_is_reported_before_anything_is_sent(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config, audio = _setup(tmp_path, sandbox, sidecar="title: X\nkey: H minor\n")
    outcome = run_upload(config, audio, tokens=token_store, err=io.StringIO())
    assert outcome.code == 1
    assert "Night Drive.yaml:2" in outcome.message and "key" in outcome.message
    assert sandbox.tracks() == []


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    out = io.StringIO()
    now = [0.0]
    bar = ProgressBar(out, is_tty=True, clock=lambda: now[0])
    total = 8 << 20
    for step in range(1, 9):
        now[0] = step * 0.5
        bar(step << 20, total)
    text = out.getvalue()
    assert text.count("\r") == 8 and text.endswith("\n") and text.count("\n") == 1
    assert "8.0 MiB / 8.0 MiB  100%" in text


def test_progress_line_shows_rate_and_time_left() -> None:
    line = progress_line(3 << 20, 12 << 20, 2.0)
    assert line == "uploading  3.0 MiB / 12.0 MiB   25%  1.5 MiB/s  0:06 left"


# --- the command line (needs the `upload` command from /tmp/cli_snippets.py wired in) -------------


def test_cli_upload_prints_progress_and_the_url_and_refuses_a_repeat(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    sidecar = folder / "meta.yaml"
    sidecar.write_text(SIDECAR, encoding="utf-8")
    audio = make_audio(folder / "take 3.wav", seconds=3.0, freq=640)

    done = cli(
        tmp_path, "--config", str(config_path), "upload", str(audio), "--sidecar", str(sidecar)
    )

    assert done.returncode == 0, done.stderr
    assert "is public: http" in done.stdout
    assert "uploading " in done.stderr and "100%" in done.stderr
    [remote] = sandbox.tracks()
    assert remote["title"] == "Night Drive" and remote["sharing"] == "public"

    again = cli(tmp_path, "--config", str(config_path), "upload", str(audio))
    assert again.returncode == 1
    assert remote["permalink_url"] in again.stderr + again.stdout
    assert len(sandbox.tracks()) == 1


def test_cli_upload_at_rejects_a_bad_time(tmp_path: Path, sandbox: TestSandbox) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    audio = make_audio(tmp_path / "a.wav")
    done = cli(tmp_path, "--config", str(config_path), "upload", str(audio), "--at", "soon")
    assert done.returncode == 2
    assert "--at" in done.stderr
    assert not os.path.exists(tmp_path / "state" / "store.json")
