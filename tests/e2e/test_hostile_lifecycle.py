"""A producer's files coming and going: deleted then exported again, folders moved across devices
(copy, then delete), an original removed after its copy was refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    DONE,
    ThreadedDaemon,
    command,
    dump,
    eventually,
    in_state,
    make_audio,
    pause_before_start,
    read_tracks,
    track,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


def test_an_export_deleted_and_exported_again_at_the_same_path_is_picked_up(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Many DAWs delete the old bounce first and write the new one when the render ends (which
    can take longer than stable_seconds). The track waits for its export meanwhile, and the new
    export at the same path carries it on."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    pause_before_start(state)
    (exports / "Bounce.yaml").write_text("title: Bounce\nsharing: public\n")
    make_audio(exports / "Bounce.wav", freq=401)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Bounce", State.READY), what="ready (paused)")
        (exports / "Bounce.wav").unlink()
        gone = wait_for(
            lambda: (t := in_state(state, "Bounce", State.PENDING)) and t.last_error and t,
            what="waiting for its export",
        )
        assert "is gone" in (gone.last_error or "")
        make_audio(exports / "Bounce.wav", freq=402)  # the new render lands
        command(config, "resume")
        live = eventually(
            lambda: [t for t in read_tracks(state) if t.state != State.REMOVED], timeout=15
        )
        assert live, "the re-export was silently ignored:\n" + dump(state)
        wait_for(lambda: in_state(state, "Bounce", *DONE), what="released")
    assert len(sandbox.tracks()) == 1


def test_a_folder_moved_across_devices_before_upload_keeps_its_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """A move between file systems is a copy (new inodes) and then a delete. The copy is seen
    first and refused as a duplicate of the original; when the original goes, the record follows
    the copy (README: 'A folder moved or renamed is recognised too')."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    pause_before_start(state)
    old = exports / "EP1"
    old.mkdir()
    (old / "Mover.yaml").write_text("title: Mover\nsharing: public\n")
    make_audio(old / "Mover.wav", freq=411)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Mover", State.READY), what="ready (paused)")
        shutil.copytree(old, exports / "EP1 moved")  # cp -r, as a cross-device mv does
        wait_for(
            lambda: any(t.duplicate_of for t in read_tracks(state)),
            what="the copy recognised as the same audio",
        )
        shutil.rmtree(old)  # ... and then the delete
        command(config, "resume")
        done = eventually(lambda: in_state(state, "Mover", *DONE), timeout=15)
        assert done, "the moved track is never uploaded:\n" + dump(state)
    assert len(sandbox.tracks()) == 1


def test_edits_after_a_cross_device_move_of_an_uploaded_track_reach_soundcloud(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    old = exports / "EP1"
    old.mkdir()
    (old / "Moved Up.yaml").write_text("title: Moved Up\nsharing: public\n")
    make_audio(old / "Moved Up.wav", freq=421)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Moved Up", State.RELEASED), what="released")
        new = exports / "EP1 moved"
        shutil.copytree(old, new)
        wait_for(lambda: any(t.duplicate_of for t in read_tracks(state)), what="copy seen")
        shutil.rmtree(old)
        wait_for(
            lambda: (t := track(state, "Moved Up")) and t.audio_path.startswith(str(new)),
            what="the record following the copy",
        )
        (new / "Moved Up.yaml").write_text("title: Moved Up\nsharing: public\ngenre: Dub\n")
        sent = eventually(lambda: sandbox.tracks()[0].get("genre") == "Dub", timeout=15)
        assert sent, "an edit of the moved sidecar never reached SoundCloud:\n" + dump(state)


def test_following_the_advice_remove_remote_then_export_again_replaces_the_upload(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """The log's advice for a re-export after upload: 'To replace it: releaseosd remove ID
    --remote, then export again.' Doing exactly that uploads the new export: a removed record
    leaves alone only the very file that was removed."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Replace.yaml").write_text("title: Replace\nsharing: public\n")
    make_audio(exports / "Replace.wav", freq=431)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Replace", State.RELEASED), what="released")
        make_audio(exports / "Replace.wav", freq=432)  # the fixed mix
        wait_for(lambda: (t := track(state, "Replace")) and t.local_change, what="reported")
        command(config, "remove", track=first.id, remote=True)
        wait_for(lambda: sandbox.tracks() == [], what="deleted on SoundCloud")
        make_audio(exports / "Replace.wav", freq=433)  # "then export again"
        again = eventually(lambda: [t for t in read_tracks(state) if t.state in DONE], timeout=15)
        assert again, "the new export is ignored for good:\n" + dump(state)
    assert len(sandbox.tracks()) == 1


def test_a_watch_folder_that_disappears_for_a_moment_loses_no_queued_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """An external drive or SMB share holding the exports drops out (sleep, a loose cable) and
    comes back. Its tracks wait for their exports meanwhile and carry on when they are back."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    pause_before_start(state)
    for i, name in enumerate(("Queued One", "Queued Two")):
        (exports / f"{name}.yaml").write_text(f"title: {name}\nsharing: public\n")
        make_audio(exports / f"{name}.wav", freq=441 + i)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: len([t for t in read_tracks(state) if t.state == State.READY]) == 2,
            what="two queued (paused)",
        )
        exports.rename(tmp_path / "unmounted")  # the mount point is empty for a while
        wait_for(
            lambda: all(t.state == State.PENDING for t in read_tracks(state)),
            what="both waiting for their exports",
        )
        assert not any(t.state == State.REMOVED for t in read_tracks(state))
        (tmp_path / "unmounted").rename(exports)  # remounted
        command(config, "resume")
        back = eventually(
            lambda: len([t for t in read_tracks(state) if t.state in DONE]) == 2, timeout=20
        )
        assert back, dump(state)
