"""Folders moved at awkward moments (found by the chaos run, seed 10)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    ThreadedDaemon,
    by_id,
    command,
    dump,
    eventually,
    in_state,
    make_audio,
    pause_before_start,
    read_tracks,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.media import build as build_module
from releaseosd.model.states import State

pytestmark = pytest.mark.usefixtures("runtime_dir")


def test_a_removed_track_whose_folder_is_renamed_stays_removed(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """`remove --remote`, then the producer tidies the folders: the removed file, moved, went up
    again as a new track."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Taken Down.yaml").write_text("title: Taken Down\nsharing: public\n")
    make_audio(session / "Taken Down.wav", freq=721)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Taken Down", State.RELEASED), what="released")
        command(config, "remove", track="Taken Down", remote=True)
        wait_for(lambda: sandbox.tracks() == [], what="deleted on SoundCloud")
        session.rename(exports / "Session (old)")
        (exports / "Session (old)").rename(exports / "Archive")
        left = wait_for(
            lambda: (
                (ts := read_tracks(state))
                and all(t.audio_path.startswith(str(exports / "Archive")) for t in ts)
                and ts
            ),
            what="the removed record following its file",
        )
        assert eventually(lambda: sandbox.tracks(), timeout=3) is None, dump(state)
    assert [t.state for t in left] == [State.REMOVED], dump(state)
    assert [r for r in sandbox.requests if r.method == "POST" and r.path == "/tracks"][1:] == []


def test_a_folder_moved_while_its_track_is_built_keeps_one_record_that_follows_it(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The move landed while the preview was being made: the build's record stayed `pending`
    with no reason at the old path, and a second record took the file at the new one."""
    building, go = threading.Event(), threading.Event()
    original = build_module.build_assets

    def slow(*args: Any, **kwargs: Any) -> Any:
        if not go.is_set():
            building.set()
            go.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(build_module, "build_assets", slow)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Wanderer.yaml").write_text("title: Wanderer\nsharing: public\n")
    make_audio(session / "Wanderer.wav", freq=722)
    with ThreadedDaemon(config, token_store):
        assert building.wait(30)
        session.rename(exports / "Moved")
        # The new place is seen (and must be recognised) while the build still runs.
        eventually(lambda: len(read_tracks(state)) > 1, timeout=2)
        go.set()
        done = wait_for(lambda: in_state(state, "Wanderer", State.RELEASED), what="released")
    assert [t.id for t in read_tracks(state)] == [done.id], dump(state)
    assert done.audio_path == str(exports / "Moved" / "Wanderer.wav")
    assert len(sandbox.tracks()) == 1


def test_an_export_deleted_while_it_is_built_says_it_is_gone(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    building, go = threading.Event(), threading.Event()
    original = build_module.build_assets

    def slow(*args: Any, **kwargs: Any) -> Any:
        building.set()
        go.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(build_module, "build_assets", slow)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Brief.yaml").write_text("title: Brief\nsharing: public\n")
    audio = make_audio(exports / "Brief.wav", freq=723)
    with ThreadedDaemon(config, token_store):
        assert building.wait(30)
        kept = audio.read_bytes()
        audio.unlink()
        go.set()
        waiting = wait_for(
            lambda: (t := in_state(state, "Brief", State.PENDING)) and t.last_error and t,
            what="waiting for its file",
        )
        assert "Brief.wav is gone" in (waiting.last_error or "")
        audio.write_bytes(kept)
        wait_for(lambda: in_state(state, "Brief", State.RELEASED), what="back and released")
    assert len(read_tracks(state)) == 1 and len(sandbox.tracks()) == 1


def test_a_track_re_exported_after_upload_follows_its_folder_when_it_moves(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Seed 7: the record knew only the stat of the audio it uploaded, so once the export was
    re-exported (reported, not uploaded) a moved folder made the file a new track."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Second Mix.yaml").write_text("title: Second Mix\nsharing: public\n")
    make_audio(session / "Second Mix.wav", freq=724)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Second Mix", State.RELEASED), what="released")
        make_audio(session / "Second Mix.wav", freq=725)
        wait_for(lambda: (t := read_tracks(state)[0]).local_change and t, what="reported")
        session.rename(exports / "Final")
        moved = wait_for(
            lambda: (
                (t := read_tracks(state)[0]).audio_path.startswith(str(exports / "Final")) and t
            ),
            what="the record following its file",
        )
        assert eventually(lambda: len(read_tracks(state)) > 1, timeout=3) is None, dump(state)
    assert moved.id == first.id and moved.local_change is not None
    assert len(sandbox.tracks()) == 1


def test_a_folder_moved_and_its_export_saved_again_meanwhile_is_still_one_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1001: the folder moved and the DAW wrote a new mix into the new place before
    the daemon looked: no inode led there, so a second record uploaded the new mix as a second
    track. The sidecar, moved unchanged, says whose export it is."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Carried.yaml").write_text("title: Carried\nsharing: public\n")
    make_audio(session / "Carried.wav", freq=726)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Carried", State.RELEASED), what="released")
    session.rename(exports / "Later")
    make_audio(exports / "Later" / "Carried.wav", freq=727)  # a new file, a new inode
    with ThreadedDaemon(config, token_store):
        moved = wait_for(
            lambda: (
                (t := read_tracks(state)[0]).local_change
                and t.audio_path.startswith(str(exports / "Later"))
                and t
            ),
            what="the record following, the new mix reported",
        )
        assert eventually(lambda: len(read_tracks(state)) > 1, timeout=3) is None, dump(state)
    assert moved.id == first.id
    assert len(sandbox.tracks()) == 1


def test_a_queued_track_moved_and_saved_again_goes_up_once_as_the_new_mix(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Queued.yaml").write_text("title: Queued\nsharing: public\n")
    make_audio(session / "Queued.wav", freq=728)
    pause_before_start(state)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Queued", State.READY), what="queued")
    session.rename(exports / "Later")
    new_mix = make_audio(exports / "Later" / "Queued.wav", freq=729)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (
                (t := in_state(state, "Queued", State.READY))
                and t.audio_path.startswith(str(exports / "Later"))
                and t.audio_stat is not None
                and t.audio_stat.inode == new_mix.stat().st_ino
            ),
            what="rebuilt from the new mix",
        )
        command(config, "resume")
        done = wait_for(lambda: in_state(state, "Queued", State.RELEASED), what="released")
    assert [t.id for t in read_tracks(state)] == [first.id] and done.id == first.id
    assert len(sandbox.tracks()) == 1
    assert done.soundcloud.sha256 == done.sha256 != first.sha256


def test_a_track_removed_while_its_bounce_is_being_written_stays_removed(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1004: `remove` while the DAW rewrote the file in place; the finished bounce
    then went up as a new track. A later export at that path is still a new track."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Cut.yaml").write_text("title: Cut\nsharing: public\n")
    audio = make_audio(exports / "Cut.wav", freq=730)
    bounce = make_audio(tmp_path / "bounce" / "Cut.wav", freq=731).read_bytes()
    pause_before_start(state)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Cut", State.READY), what="queued")
        with audio.open("r+b") as fh:  # the DAW starts the new bounce in place
            fh.truncate(0)
            fh.write(bounce[: len(bounce) // 3])
            fh.flush()
            command(config, "remove", track="Cut", remote=False)
            fh.write(bounce[len(bounce) // 3 :])
        command(config, "resume")
        wait_for(
            lambda: (
                (t := read_tracks(state)[0]).audio_stat is not None
                and t.audio_stat.size == len(bounce)
                and t
            ),
            what="the finished bounce taken as removed",
        )
        assert eventually(lambda: len(read_tracks(state)) > 1, timeout=3) is None, dump(state)
        later = make_audio(exports / "Cut.wav", freq=732)  # a new export, later
        new = wait_for(
            lambda: next(
                (
                    t
                    for t in read_tracks(state)
                    if t.state != State.REMOVED and t.audio_stat is not None
                ),
                None,
            ),
            what="a new track for the later export",
        )
    assert new.audio_stat is not None and new.audio_stat.inode == later.stat().st_ino
    assert [t.state for t in read_tracks(state)].count(State.REMOVED) == 1


def test_an_export_waiting_for_its_sidecar_moved_away_and_back_says_it_waits_for_its_sidecar(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1 (45 operations): a folder moved while its export had no sidecar yet; the
    record followed the file but still said the file was gone."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    make_audio(session / "Bare.wav", freq=742)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (t := read_tracks(state)) and "sidecar" in (t[0].last_error or ""), what="waits"
        )
        (session / "Bare.wav").rename(tmp_path / "Bare.wav")  # gone for a moment
        wait_for(lambda: "is gone" in (read_tracks(state)[0].last_error or ""), what="gone")
        (exports / "Moved").mkdir()
        (tmp_path / "Bare.wav").rename(exports / "Moved" / "Bare.wav")
        back = wait_for(
            lambda: (
                (t := read_tracks(state)[0]).audio_path.endswith("Moved/Bare.wav")
                and "waiting for its sidecar" in (t.last_error or "")
                and t
            ),
            what="waiting for its sidecar again, where it is now",
        )
    assert back.state == State.PENDING and len(read_tracks(state)) == 1


@pytest.mark.parametrize("also", ["its sidecar edited", "its release.yaml deleted"])
def test_a_folder_moved_while_its_export_and_sidecar_changed_is_still_one_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, also: str
) -> None:
    """Chaos seeds 1005 and 1017: the folder moved, and before the daemon looked the DAW saved
    a new mix and the sidecar (or the folder's release.yaml) changed too. No inode, and no
    unchanged sidecar, led to the new place: the new mix went up as a second track. The folder
    itself (the same directory, renamed) says whose export it is."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "release.yaml").write_text("release: Session EP\n")
    (session / "Followed.yaml").write_text("title: Followed\nsharing: public\n")
    make_audio(session / "Followed.wav", freq=743)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Followed", State.RELEASED), what="released")
    later = exports / "Archive" / "Later"
    later.parent.mkdir()
    session.rename(later)
    make_audio(later / "Followed.wav", freq=744)  # a new file, a new inode
    if also == "its sidecar edited":
        (later / "Followed.yaml").write_text("title: Followed\nsharing: public\ngenre: Dub\n")
    else:
        (later / "release.yaml").unlink()
    with ThreadedDaemon(config, token_store):
        moved = wait_for(
            lambda: (
                (t := read_tracks(state)[0]).local_change
                and t.audio_path == str(later / "Followed.wav")
                and t
            ),
            what="the record following, the new mix reported",
        )
        assert eventually(lambda: len(read_tracks(state)) > 1, timeout=3) is None, dump(state)
    assert moved.id == first.id
    assert len(sandbox.tracks()) == 1


def test_a_queued_track_moved_with_a_new_mix_and_no_sidecar_is_still_one_record(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1014: a track not uploaded yet, its folder moved while the DAW saved a new
    mix and the sidecar was deleted: the old record waited for its file for ever beside a
    second record that went up."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Waiting.yaml").write_text("title: Waiting\nsharing: public\n")
    make_audio(session / "Waiting.wav", freq=745)
    pause_before_start(state)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Waiting", State.READY), what="queued")
    session.rename(exports / "Moved")
    new_mix = make_audio(exports / "Moved" / "Waiting.wav", freq=746)
    (exports / "Moved" / "Waiting.yaml").unlink()
    with ThreadedDaemon(config, token_store):
        waits = wait_for(
            lambda: (
                (ts := read_tracks(state))
                and "waiting for its sidecar" in (ts[0].last_error or "")
                and ts[0].audio_path == str(exports / "Moved" / "Waiting.wav")
                and ts[0]
            ),
            what="the record following, waiting for its sidecar",
        )
        assert eventually(lambda: len(read_tracks(state)) > 1, timeout=3) is None, dump(state)
        (exports / "Moved" / "Waiting.yaml").write_text("title: Waiting\nsharing: public\n")
        command(config, "resume")
        done = wait_for(lambda: in_state(state, "Waiting", State.RELEASED), what="released")
    assert waits.id == first.id == done.id
    assert [t.id for t in read_tracks(state)] == [first.id], dump(state)
    assert done.audio_stat is not None and done.audio_stat.inode == new_mix.stat().st_ino
    assert len(sandbox.tracks()) == 1


def test_a_moved_folder_keeps_its_track_and_its_refused_copy_stays_a_copy(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1000: the original's folder was renamed while a refused copy lay elsewhere.
    The old path was reported gone first, the copy took the track over ("whose file is gone;
    it moved here"), and the original, found at its new place, was refused as a copy of its own
    copy: `remove --remote` on it then said nothing of it was on SoundCloud and left the track
    up. A folder renamed is followed by the records in it before anything is gone."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Kept.yaml").write_text("title: Kept\nsharing: public\n")
    original = make_audio(session / "Kept.wav", freq=747)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Kept", State.RELEASED), what="released")
        (exports / "Copy of Kept.yaml").write_text("title: Copy of Kept\nsharing: public\n")
        (exports / "Copy of Kept.wav").write_bytes(original.read_bytes())
        copy = wait_for(
            lambda: next((t for t in read_tracks(state) if t.duplicate_of == first.id), None),
            what="the copy refused",
        )
        for n in range(3):  # each rename is a race between the gone report and the new place
            session = session.rename(exports / f"Session {n}")
            wanted = str(session / "Kept.wav")
            wait_for(
                lambda: (
                    (t := by_id(state, first.id)).audio_path == wanted  # noqa: B023 (waited for within the iteration)
                    and t
                ),
                what=f"the track following rename {n}",
            )
            assert (
                eventually(
                    lambda: next(
                        (t for t in read_tracks(state) if t.id == copy.id and not t.duplicate_of),
                        None,
                    ),
                    timeout=1,
                )
                is None
            ), dump(state)
        said = command(config, "remove", track=str(session / "Kept.wav"), remote=True)
    assert "deleted on SoundCloud" in said, said
    assert sandbox.tracks() == [], dump(state)
