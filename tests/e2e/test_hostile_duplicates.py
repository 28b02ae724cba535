"""One master, several files: a DAW's 'export WAV + FLAC/MP3' leaves two audio files beside one
sidecar."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    ThreadedDaemon,
    by_id,
    dump,
    make_audio,
    read_tracks,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")

SETTLED = (State.RELEASED, State.PUBLISHED, State.INVALID, State.FAILED)


def _flac_of(wav: Path, flac: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "flac", str(flac)], check=True
    )
    return flac


def test_the_same_samples_as_wav_and_flac_are_one_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """README: 'Audio is recognised by its decoded samples, not its file bytes.' A lossless FLAC
    of the very WAV holds the same samples; it is not uploaded a second time."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    wav = make_audio(tmp_path / "src" / "Master.wav", freq=515)
    flac = _flac_of(wav, tmp_path / "src" / "Master Copy.flac")
    with ThreadedDaemon(config, token_store):
        (exports / "Master.yaml").write_text("title: Master\nsharing: public\n")
        (exports / "Master.wav").write_bytes(wav.read_bytes())
        wait_for(
            lambda: [t for t in read_tracks(state) if t.state in SETTLED], what="first settled"
        )
        (exports / "Master Copy.yaml").write_text("title: Master Copy\nsharing: public\n")
        (exports / "Master Copy.flac").write_bytes(flac.read_bytes())
        wait_for(
            lambda: len([t for t in read_tracks(state) if t.state in SETTLED]) == 2,
            timeout=60,
            what="both settled",
        )
    assert len(sandbox.tracks()) == 1, "the same samples went up twice:\n" + dump(state)


def test_export_wav_and_mp3_beside_one_sidecar_is_one_upload(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Ableton/Logic/Bitwig can write 'Night Drive.wav' and 'Night Drive.mp3' in one export. Both
    match 'Night Drive.yaml'; one sidecar is one track, so only one of them goes up."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Night Drive.yaml").write_text("title: Night Drive\nsharing: public\n")
    make_audio(exports / "Night Drive.wav", freq=525)
    make_audio(exports / "Night Drive.mp3", freq=525, codec="libmp3lame")
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: len([t for t in read_tracks(state) if t.state in SETTLED]) == 2,
            timeout=60,
            what="both settled",
        )
    titles = [t["title"] for t in sandbox.tracks()]
    assert len(titles) == 1, f"one export, {len(titles)} uploads {titles}:\n" + dump(state)


def test_a_copy_of_a_re_export_made_after_upload_is_a_copy_not_a_new_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 7: 'Tide' went up, was re-exported (reported, not uploaded), and the new file
    was copied, retagged, into another folder with a sidecar of its own: that copy went up as a
    second track, though the same audio is in an export that already has one."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Tide.yaml").write_text("title: Tide\nsharing: public\n")
    make_audio(exports / "Tide.wav", freq=531)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: (t := read_tracks(state)) and t[0].state == State.RELEASED, what="up")
        make_audio(exports / "Tide.wav", freq=532)  # the new mix, in place
        wait_for(lambda: read_tracks(state)[0].local_change, what="re-export reported")
        (exports / "backup").mkdir()
        (exports / "backup" / "Tide Copy.yaml").write_text("title: Tide Copy\nsharing: public\n")
        make_audio(
            exports / "backup" / "Tide Copy.wav", freq=532, options=("-metadata", "title=Other")
        )
        copy = wait_for(
            lambda: next((t for t in read_tracks(state) if t.title != "Tide"), None),
            what="the copy's record",
        )
        refused = wait_for(
            lambda: (
                (t := next(x for x in read_tracks(state) if x.id == copy.id)).state in SETTLED and t
            ),
            what="the copy settled",
        )
    assert refused.state == State.INVALID and refused.duplicate_of, dump(state)
    assert "Tide.wav" in (refused.last_error or "")
    assert len(sandbox.tracks()) == 1


def test_a_copy_of_a_re_export_whose_original_is_gone_does_not_take_over_the_upload(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1005: the original export (re-exported after its upload) was deleted, and the
    record that is up with the first mix followed a copy of the second: its record then named a
    file that never held the audio SoundCloud has. The copy is a track of its own."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Tide.yaml").write_text("title: Tide\nsharing: public\n")
    make_audio(exports / "Tide.wav", freq=533)
    with ThreadedDaemon(config, token_store):
        up = wait_for(
            lambda: (t := read_tracks(state)) and t[0].state == State.RELEASED and t[0], what="up"
        )
        make_audio(exports / "Tide.wav", freq=534)
        wait_for(lambda: read_tracks(state)[0].local_change, what="re-export reported")
        (exports / "Tide.wav").unlink()
        (exports / "backup").mkdir()
        (exports / "backup" / "Tide Copy.yaml").write_text("title: Tide Copy\nsharing: public\n")
        make_audio(exports / "backup" / "Tide Copy.wav", freq=534, options=("-metadata", "title=x"))
        copy = wait_for(
            lambda: next(
                (t for t in read_tracks(state) if t.id != up.id and t.state in SETTLED), None
            ),
            what="the copy settled",
        )
    original = by_id(state, up.id)
    assert original.audio_path == str(exports / "Tide.wav"), dump(state)
    assert copy.state == State.RELEASED and copy.title == "Tide Copy", dump(state)
    assert len(sandbox.tracks()) == 2


def test_a_refused_copy_whose_sidecar_is_deleted_is_still_shown_as_a_copy(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1015: the sidecar of a refused copy was deleted and the copy then said it
    waited for its sidecar, as if one would make it a track of its own; it is the same audio as
    a track, sidecar or not."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Master.yaml").write_text("title: Master\nsharing: public\n")
    master = make_audio(exports / "Master.wav", freq=748)
    with ThreadedDaemon(config, token_store):
        first = wait_for(
            lambda: next((t for t in read_tracks(state) if t.state == State.RELEASED), None),
            what="released",
        )
        (exports / "Copy.yaml").write_text("title: Copy\nsharing: public\n")
        (exports / "Copy.wav").write_bytes(master.read_bytes())
        copy = wait_for(
            lambda: next((t for t in read_tracks(state) if t.duplicate_of == first.id), None),
            what="the copy refused",
        )
        (exports / "Copy.yaml").unlink()
        after = wait_for(
            lambda: next(
                (
                    t
                    for t in read_tracks(state)
                    if t.id == copy.id and (t.sidecar_digest is None or t.state != State.INVALID)
                ),
                None,
            ),
            what="the deleted sidecar taken in",
        )
    assert after.state == State.INVALID and after.duplicate_of == first.id, dump(state)
    assert "the same audio as 'Master'" in (after.last_error or ""), dump(state)
    assert len(sandbox.tracks()) == 1
