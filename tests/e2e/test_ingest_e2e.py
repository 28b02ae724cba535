"""Ingest end to end in the real daemon: files made by ffmpeg land in a watched folder and end
`ready` (or `invalid` with a reason), with a decodable preview and square artwork. Uploads are
paused here: this is about everything before SoundCloud."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest
from daemon_harness import ThreadedDaemon, make_audio, read_tracks, wait_for, write_config
from PIL import Image

from releaseosd.model.states import State
from releaseosd.model.store import Store

FORMATS = {
    "wav16": (".wav", ["-c:a", "pcm_s16le"]),
    "wav24": (".wav", ["-c:a", "pcm_s24le"]),
    "aiff": (".aiff", ["-c:a", "pcm_s16be"]),
    "flac": (".flac", ["-c:a", "flac"]),
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
    "ogg": (".ogg", ["-c:a", "libvorbis", "-q:a", "3"]),
}


def ffmpeg_audio(path: Path, seconds: float, channels: int, freq: int, opts: list[str]) -> Path:
    codec, *rest = opts[1:]  # ["-c:a", CODEC, *more]
    return make_audio(path, seconds, freq, codec, channels, tuple(rest))


def duration_of(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout)["format"]["duration"])


def decodes_cleanly(path: Path) -> bool:
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0 and result.stderr.strip() == ""


def paused_config(tmp_path: Path) -> Path:
    config = write_config(tmp_path, "http://127.0.0.1:9")  # never reached: uploads are paused
    store = Store.open(tmp_path / "state")
    store.set_flag("paused", True)
    store.close()
    return config


def test_every_format_mono_and_stereo_reaches_ready(tmp_path: Path) -> None:
    config = paused_config(tmp_path)
    exports = tmp_path / "exports"
    expected: dict[str, float] = {}
    for i, (name, (suffix, opts)) in enumerate(FORMATS.items()):
        for channels in (1, 2):
            stem = f"{name}-{channels}ch"
            seconds = 2.5 + 0.25 * i
            (exports / f"{stem}.yaml").write_text(f"title: {stem}\n")
            ffmpeg_audio(
                exports / f"{stem}{suffix}", seconds, channels, 200 + 40 * i + channels, opts
            )
            expected[stem] = seconds
    with ThreadedDaemon(config, None):
        tracks = wait_for(
            lambda: (
                len(ts := read_tracks(tmp_path / "state")) == len(expected)
                and all(t.state == State.READY for t in ts)
                and ts
            ),
            timeout=90,
            what="all formats ready",
        )
    for track in tracks:
        probe = track.probe or {}
        assert abs(probe["duration"] - expected[track.title]) <= 0.05, (track.title, probe)
        preview = Path(track.preview_path or "")
        assert preview.is_file() and preview.is_relative_to(tmp_path / "state")
        assert decodes_cleanly(preview), track.title
        # The config's preview is 1 s long; every test track is longer.
        assert abs(duration_of(preview) - 1.0) <= 0.1, track.title
        with Image.open(track.artwork_path or "") as art:
            assert art.format == "PNG" and art.size == (800, 800)
    # Built files live under the state dir, never beside the exports.
    assert sorted(p.suffix for p in exports.iterdir()) == sorted(
        [".yaml"] * len(expected) + [FORMATS[n.rsplit("-", 1)[0]][0] for n in expected]
    )


def test_slow_writer_is_never_probed_early(tmp_path: Path) -> None:
    config = paused_config(tmp_path)
    exports = tmp_path / "exports"
    (exports / "Slow.yaml").write_text("title: Slow Export\n")
    source = ffmpeg_audio(tmp_path / "source.wav", 4.0, 2, 300, ["-c:a", "pcm_s16le"])
    data = source.read_bytes()
    with ThreadedDaemon(config, None):
        target = exports / "Slow.wav"
        chunks = [data[i : i + len(data) // 16] for i in range(0, len(data), len(data) // 16)]
        with target.open("wb") as out:
            for chunk in chunks:  # a DAW writing over ~3.2 s, each pause shorter than 0.3 s
                out.write(chunk)
                out.flush()
                time.sleep(0.2)
        last_write = time.time()
        track = wait_for(
            lambda: (
                (ts := read_tracks(tmp_path / "state")) and ts[0].state == State.READY and ts[0]
            ),
            timeout=30,
            what="slow export ready",
        )
    assert [h.state for h in track.history if h.state == State.INVALID] == []
    assert track.history[0].at.timestamp() >= last_write, "recorded before the export finished"
    assert abs((track.probe or {})["duration"] - 4.0) <= 0.05


@pytest.mark.parametrize("sidecar_first", [True, False])
def test_sidecar_before_or_after_the_audio(tmp_path: Path, sidecar_first: bool) -> None:
    config = paused_config(tmp_path)
    exports = tmp_path / "exports"
    sidecar = exports / "Pair.yaml"
    with ThreadedDaemon(config, None):
        if sidecar_first:
            sidecar.write_text("title: The Pair\n")
        ffmpeg_audio(exports / "Pair.wav", 2.0, 2, 440, ["-c:a", "pcm_s16le"])
        if not sidecar_first:
            waiting = wait_for(
                lambda: (ts := read_tracks(tmp_path / "state")) and ts[0],
                what="track waiting for its sidecar",
            )
            assert waiting.state == State.PENDING and "sidecar" in (waiting.last_error or "")
            sidecar.write_text("title: The Pair\n")
        track = wait_for(
            lambda: (
                (ts := read_tracks(tmp_path / "state")) and ts[0].state == State.READY and ts[0]
            ),
            what="pair ready",
        )
        assert track.title == "The Pair"
        # A later edit before upload re-validates and updates the record.
        sidecar.write_text("title: The Pair (Edit)\n")
        wait_for(lambda: read_tracks(tmp_path / "state")[0].title == "The Pair (Edit)", what="edit")
        sidecar.write_text("title: The Pair\nbpm: lots\n")
        bad = wait_for(
            lambda: (t := read_tracks(tmp_path / "state")[0]).state == State.INVALID and t,
            what="edit with a mistake",
        )
        assert "Pair.yaml:2: bpm:" in (bad.last_error or "")


def test_burst_of_200_files_all_ready_none_twice(tmp_path: Path) -> None:
    config = paused_config(tmp_path)
    exports = tmp_path / "exports"
    staging = tmp_path / "staging"
    staging.mkdir()
    # One short source, made unique per file by a different sample in its data.
    base = bytearray(
        ffmpeg_audio(staging / "base.wav", 0.5, 1, 500, ["-c:a", "pcm_s16le"]).read_bytes()
    )
    (exports / "release.yaml").write_text("genre: Burst\n")
    with ThreadedDaemon(config, None, reconcile_seconds=60.0):
        for i in range(200):
            unique = bytearray(base)
            struct.pack_into("<H", unique, len(unique) - 2, i)
            (staging / f"b{i:03}.wav").write_bytes(unique)
        for i in range(200):  # all at once, by rename
            os.replace(staging / f"b{i:03}.wav", exports / f"b{i:03}.wav")
        tracks = wait_for(
            lambda: (
                len(ts := read_tracks(tmp_path / "state")) >= 200
                and all(t.state == State.READY for t in ts)
                and ts
            ),
            timeout=180,
            what="200 ready",
        )
    assert len(tracks) == 200
    assert len({t.audio_path for t in tracks}) == 200
    assert len({t.sha256 for t in tracks}) == 200
    assert {t.metadata.get("genre") for t in tracks} == {"Burst"}


def test_files_added_while_the_daemon_was_down_are_found_at_start(tmp_path: Path) -> None:
    config = paused_config(tmp_path)
    exports = tmp_path / "exports"
    with ThreadedDaemon(config, None):
        pass
    (exports / "Offline.yaml").write_text("title: Added Offline\n")
    ffmpeg_audio(exports / "Offline.wav", 1.5, 2, 620, ["-c:a", "pcm_s16le"])
    with ThreadedDaemon(config, None):
        wait_for(
            lambda: (ts := read_tracks(tmp_path / "state")) and ts[0].state == State.READY,
            what="found at start",
        )


def test_bad_audio_corpus_is_invalid_and_a_good_track_goes_through(tmp_path: Path) -> None:
    config = paused_config(tmp_path)
    exports = tmp_path / "exports"
    good = ffmpeg_audio(tmp_path / "good.wav", 2.0, 2, 700, ["-c:a", "pcm_s16le"]).read_bytes()
    flac = ffmpeg_audio(tmp_path / "x.flac", 2.0, 2, 710, ["-c:a", "flac"]).read_bytes()
    mp3 = ffmpeg_audio(tmp_path / "x.mp3", 2.0, 2, 720, ["-c:a", "libmp3lame"]).read_bytes()
    png = bytes.fromhex("89504e470d0a1a0a") + b"\0" * 200
    corpus = {
        "empty.wav": b"",
        "text.wav": b"this is not audio, it is a note to self\n" * 20,
        "random.wav": os.urandom(4096),
        "header-only.wav": good[:44],
        "truncated.wav": good[: len(good) // 3],
        "png.wav": png,
        "garbage.flac": b"fLaC" + os.urandom(2000),
        "cut.flac": flac[:200],
        "garbage.mp3": b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\x00" * 3000,
        "cut.aiff": b"FORM\x00\x01\x00\x00AIFFCOMM" + b"\x00" * 30,
        "noise.ogg": b"OggS" + os.urandom(3000),
        "mislabelled.wav": mp3,
    }
    (exports / "release.yaml").write_text("genre: Corpus\n")
    for name, data in corpus.items():
        (exports / name).write_bytes(data)
    (exports / "Good.yaml").write_text("title: The Good One\n")
    (exports / "Good.wav").write_bytes(good)
    with ThreadedDaemon(config, None):
        tracks = wait_for(
            lambda: (
                len(ts := read_tracks(tmp_path / "state")) == len(corpus) + 1
                and all(t.state in (State.READY, State.INVALID) for t in ts)
                and ts
            ),
            timeout=90,
            what="corpus sorted out",
        )
    by_file = {Path(t.audio_path).name: t for t in tracks}
    assert by_file["Good.wav"].state == State.READY
    for name in corpus:
        track = by_file[name]
        if name == "mislabelled.wav":
            # An MP3 named .wav is real audio: it may be taken for what it is, or refused clearly.
            assert track.state in (State.READY, State.INVALID)
            continue
        assert track.state == State.INVALID, (name, track.state)
        assert name in (track.last_error or ""), (name, track.last_error)
        assert len(track.last_error or "") > len(name) + 10
