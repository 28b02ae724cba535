"""A hostile producer moving, renaming, swapping and deleting folders at the worst moments."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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

from releaseosd.model.states import State

pytestmark = pytest.mark.usefixtures("runtime_dir")


def _session(folder: Path, name: str, title: str, freq: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(f"title: {title}\nsharing: public\n")
    return make_audio(folder / f"{name}.wav", freq=freq)


def _rename_at_once(*moves: tuple[Path, Path]) -> None:
    """The renames from another process, one right after the other (a script, a file manager's
    swap): none is handled before the last one is done."""
    script = "import os, sys\nargs = sys.argv[1:]\nfor i in range(0, len(args), 2):\n"
    script += "    os.rename(args[i], args[i + 1])\n"
    subprocess.run(
        [sys.executable, "-c", script, *(str(p) for move in moves for p in move)], check=True
    )


def _titles_by_urn(sandbox: TestSandbox) -> dict[str, str]:
    return {str(t["urn"]): str(t["title"]) for t in sandbox.tracks()}


def _nothing_changes(
    state: Path, sandbox: TestSandbox, titles: dict[str, str], *, within: float
) -> None:
    """No track is taken for re-exported and no title on SoundCloud changes, for `within` s."""
    changed = eventually(
        lambda: (
            any(t.local_change for t in read_tracks(state)) or _titles_by_urn(sandbox) != titles
        ),
        timeout=within,
    )
    assert changed is None, dump(state)


def test_two_released_folders_whose_names_are_swapped_keep_their_own_tracks(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """A -> tmp, B -> A, tmp -> B, with a 'Master.wav' in each (a DAW's default export name).
    By the time the moves are handled the first one's destination is gone again: the record of
    A stayed at A's path, the record of B could not take it, and each record then took the
    other's audio and sidecar as its own re-export and edit: the SoundCloud track of one song
    was renamed after the other."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    a, b = exports / "A", exports / "B"
    _session(a, "Master", "Alpha", 751)
    _session(b, "Master", "Beta", 752)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (
                in_state(state, "Alpha", State.RELEASED) and in_state(state, "Beta", State.RELEASED)
            ),
            timeout=60,
            what="both released",
        )
        before = {t.title: t for t in read_tracks(state)}
        titles = _titles_by_urn(sandbox)
        _rename_at_once((a, exports / "tmp"), (b, a), (exports / "tmp", b))
        swapped = eventually(
            lambda: (
                (ts := {t.id: t for t in read_tracks(state)})
                and ts[before["Alpha"].id].audio_path == str(b / "Master.wav")
                and ts[before["Beta"].id].audio_path == str(a / "Master.wav")
                and ts
            ),
            timeout=10,
        )
        assert swapped, dump(state)
        # Nothing is reported re-exported, and no title on SoundCloud changes.
        _nothing_changes(state, sandbox, titles, within=3)
    assert len(read_tracks(state)) == 2 and len(sandbox.tracks()) == 2
    assert _titles_by_urn(sandbox) == titles


def test_two_queued_folders_whose_names_are_swapped_keep_their_own_records(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """The same swap before upload: each record was rebuilt from the other folder's export, so
    what the producer did to one track (`release` at a time, its history) went to the other."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    a, b = exports / "A", exports / "B"
    _session(a, "Master", "Alpha", 753)
    _session(b, "Master", "Beta", 754)
    pause_before_start(state)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: in_state(state, "Alpha", State.READY) and in_state(state, "Beta", State.READY),
            timeout=60,
            what="both queued",
        )
        before = {t.title: t.id for t in read_tracks(state)}
        _rename_at_once((a, exports / "tmp"), (b, a), (exports / "tmp", b))
        assert eventually(
            lambda: (
                (ts := {t.id: t for t in read_tracks(state)})
                and ts[before["Alpha"]].audio_path == str(b / "Master.wav")
                and ts[before["Beta"]].audio_path == str(a / "Master.wav")
            ),
            timeout=10,
        ), dump(state)
        # Settled again, each record still describes its own song.
        wait_for(
            lambda: in_state(state, "Alpha", State.READY) and in_state(state, "Beta", State.READY),
            what="both queued again",
        )
    assert {t.title: t.id for t in read_tracks(state)} == before, dump(state)


def test_a_folder_renamed_twice_quickly_keeps_its_track_and_its_copy_stays_a_copy(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Session -> Session 1 -> Session 2 within the watcher's pairing delay: by the time the
    first move is handled its destination is gone, so the record stays at the old path, which
    is then reported gone; a refused copy elsewhere takes the track over (chaos seed 1000
    again), and the original is refused as a copy of its own copy."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    original = _session(session, "Kept", "Kept", 755)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Kept", State.RELEASED), what="released")
        (exports / "Copy of Kept.yaml").write_text("title: Copy of Kept\nsharing: public\n")
        (exports / "Copy of Kept.wav").write_bytes(original.read_bytes())
        copy = wait_for(
            lambda: next((t for t in read_tracks(state) if t.duplicate_of == first.id), None),
            what="the copy refused",
        )
        _rename_at_once(
            (session, exports / "Session 1"), (exports / "Session 1", exports / "Session 2")
        )
        wanted = str(exports / "Session 2" / "Kept.wav")
        wait_for(
            lambda: by_id(state, first.id).audio_path == wanted,
            timeout=10,
            what="the track following both renames",
        )
        # The copy may be looked at again; it never takes the track over.
        assert (
            eventually(
                lambda: any(
                    (t.id == first.id and t.duplicate_of)
                    or (t.id == copy.id and t.state not in (State.INVALID, State.BUILDING))
                    for t in read_tracks(state)
                ),
                timeout=3,
            )
            is None
        ), dump(state)
        wait_for(
            lambda: by_id(state, copy.id).duplicate_of == first.id,
            what="the copy refused as a copy",
        )
    kept = by_id(state, first.id)
    assert not kept.duplicate_of and kept.state == State.RELEASED, dump(state)


def test_a_new_folder_in_a_deleted_ones_place_on_disk_is_a_new_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """ext4 hands a deleted directory's inode to the next one made: a folder deleted, and a new
    project folder holding another song exported under the same default name, was taken for
    the old folder moved. The new song was never uploaded ('re-exported with new audio after
    upload') and its sidecar renamed the old song on SoundCloud. Here while the daemon is down
    (while it runs, its inotify watch keeps the inode taken a little longer)."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    old = exports / "Old Project"
    _session(old, "Mixdown", "Old Song", 756)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Old Song", State.RELEASED), what="released")
    old_inode = os.stat(old).st_ino
    shutil.rmtree(old)
    new = exports / "New Project"

    def made_in_its_place() -> bool:
        # The inode is free once nothing holds it any more (the last daemon's inotify watch).
        new.mkdir()
        if os.stat(new).st_ino == old_inode:
            return True
        new.rmdir()
        return False

    if not eventually(made_in_its_place, timeout=5):
        pytest.skip("this filesystem did not hand the deleted directory's inode on")
    _session(new, "Mixdown", "New Song", 757)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: in_state(state, "New Song", State.RELEASED),
            timeout=20,
            what="the new song uploaded",
        )
    tracks = {t.title: t for t in read_tracks(state)}
    assert tracks["Old Song"].id == first.id and tracks["Old Song"].local_change is None
    assert sorted(_titles_by_urn(sandbox).values()) == ["New Song", "Old Song"]


def test_a_folder_renamed_to_a_deleted_released_folders_name_keeps_its_own_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """'Demo' deleted (its song stays on SoundCloud), then 'New Idea' renamed to 'Demo': the
    moved record must not leave its export to the old record at that path."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    _session(exports / "Demo", "Master", "Old", 758)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Old", State.RELEASED), what="released")
        shutil.rmtree(exports / "Demo")
        _session(exports / "New Idea", "Master", "New", 759)
        new = wait_for(lambda: in_state(state, "New", State.RELEASED), what="the new released")
        titles = _titles_by_urn(sandbox)
        (exports / "New Idea").rename(exports / "Demo")
        wait_for(
            lambda: by_id(state, new.id).audio_path == str(exports / "Demo" / "Master.wav"),
            what="the new track following its folder",
        )
        _nothing_changes(state, sandbox, titles, within=4)
    assert {t.title for t in read_tracks(state)} == {"Old", "New"}, dump(state)


def test_a_queued_folder_moved_out_of_the_watch_folder_and_back_goes_up_once(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    _session(session, "Away", "Away", 760)
    pause_before_start(state)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Away", State.READY), what="queued")
        session.rename(tmp_path / "Session")
        wait_for(lambda: "is gone" in (read_tracks(state)[0].last_error or ""), what="said gone")
        (tmp_path / "Session").rename(exports / "Back")
        wait_for(
            lambda: (
                (t := in_state(state, "Away", State.READY))
                and t.audio_path == str(exports / "Back" / "Away.wav")
            ),
            what="queued again where it is now",
        )
        from daemon_harness import command

        command(config, "resume")
        done = wait_for(lambda: in_state(state, "Away", State.RELEASED), what="released")
    assert [t.id for t in read_tracks(state)] == [first.id] == [done.id], dump(state)
    assert len(sandbox.tracks()) == 1


def test_a_folder_moved_between_two_watch_folders_keeps_its_record(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    second = tmp_path / "second"
    second.mkdir()
    text = config.read_text()
    config.write_text(
        text.replace(f"  - path: {exports}\n", f"  - path: {exports}\n  - path: {second}\n")
    )
    session = exports / "Session"
    _session(session, "Across", "Across", 761)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Across", State.RELEASED), what="released")
        session.rename(second / "Session")
        moved = wait_for(
            lambda: (
                (t := read_tracks(state)[0]).audio_path == str(second / "Session" / "Across.wav")
                and t
            ),
            what="the record following into the other watch folder",
        )
        assert eventually(lambda: len(read_tracks(state)) > 1, timeout=3) is None, dump(state)
    assert moved.id == first.id and moved.watch_root == str(second) and not moved.local_change
    assert len(sandbox.tracks()) == 1


def test_a_folder_renamed_while_its_track_uploads_goes_up_once_and_follows(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    sandbox.faults.update(upload_bytes_per_second=200_000)
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    session = exports / "Session"
    session.mkdir()
    (session / "Slow.yaml").write_text("title: Slow\nsharing: public\n")
    make_audio(session / "Slow.wav", seconds=8.0, freq=762)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Slow", State.UPLOADING), what="uploading")
        session.rename(exports / "Renamed")
        done = wait_for(
            lambda: in_state(state, "Slow", State.RELEASED), timeout=60, what="released"
        )
        assert eventually(lambda: len(read_tracks(state)) > 1, timeout=3) is None, dump(state)
    assert done.audio_path == str(exports / "Renamed" / "Slow.wav"), dump(state)
    assert len(sandbox.tracks()) == 1 and done.local_change is None


def test_a_folder_renamed_onto_a_deleted_scheduled_folders_name_keeps_the_edits_its_own(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """'Demo' (scheduled, privately on SoundCloud) deleted, 'New Idea' renamed to 'Demo': both
    records then named that path. Releasing the old one wrote it last, so the path became its
    own again, and a new mix saved there counted as the old song's re-export. The record that
    moved there holds the path."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Demo").mkdir()
    (exports / "Demo" / "Master.yaml").write_text(
        "title: Old\nsharing: public\nrelease_at: 2031-06-01T20:00:00\n"
    )
    make_audio(exports / "Demo" / "Master.wav", freq=760)
    with ThreadedDaemon(config, token_store):
        old = wait_for(lambda: in_state(state, "Old", State.SCHEDULED), what="scheduled")
        shutil.rmtree(exports / "Demo")
        _session(exports / "New Idea", "Master", "New", 761)
        new = wait_for(lambda: in_state(state, "New", State.RELEASED), what="the new released")
        (exports / "New Idea").rename(exports / "Demo")
        wait_for(
            lambda: by_id(state, new.id).audio_path == str(exports / "Demo" / "Master.wav"),
            what="the new track following its folder",
        )
        command(config, "release", track=old.id)
        wait_for(lambda: in_state(state, "Old", State.RELEASED), what="the old one released")
        make_audio(exports / "Demo" / "Master.wav", freq=762)  # a new mix of the new song
        changed = wait_for(
            lambda: next((t for t in read_tracks(state) if t.local_change), None),
            what="the re-export seen",
        )
        (exports / "Demo" / "Master.yaml").write_text("title: New Edit\nsharing: public\n")
        wait_for(
            lambda: _titles_by_urn(sandbox).get(str(new.soundcloud.urn)) == "New Edit",
            what="the edit on the new track",
        )
    assert changed.id == new.id, dump(state)
    assert _titles_by_urn(sandbox)[str(old.soundcloud.urn)] == "Old", dump(state)


def test_a_deleted_export_does_not_follow_its_folder_and_a_new_file_there_is_a_new_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1000: 'Tide 016.flac' was deleted (its track stays on SoundCloud), then its
    folder was renamed three times; the record followed each rename to a file that never was,
    so a new song saved under that name there would have been taken for its re-export."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    _session(exports / "Glass", "Tide", "Deleted Song", 763)
    _session(exports / "Glass", "Kept", "Kept Song", 764)
    with ThreadedDaemon(config, token_store):
        gone = wait_for(lambda: in_state(state, "Deleted Song", State.RELEASED), what="released")
        kept = wait_for(lambda: in_state(state, "Kept Song", State.RELEASED), what="released")
        (exports / "Glass" / "Tide.wav").unlink()
        (exports / "Glass" / "Tide.yaml").unlink()
        folder = exports / "Glass"
        for n in range(2):
            folder = folder.rename(exports / f"Glass m{n}")
            moved = folder / "Kept.wav"
            wait_for(
                lambda: (
                    by_id(state, kept.id).audio_path == str(moved)  # noqa: B023 (waited for within the iteration)
                ),
                what=f"the kept track following rename {n}",
            )
        old = by_id(state, gone.id)
        assert old.audio_path == str(exports / "Glass" / "Tide.wav"), dump(state)
        # Another song saved under the deleted one's name in the moved folder: a track of its own.
        _session(folder, "Tide", "Another Song", 765)
        wait_for(lambda: in_state(state, "Another Song", State.RELEASED), what="the new song up")
    titles = sorted(t["title"] for t in sandbox.tracks())
    assert titles == ["Another Song", "Deleted Song", "Kept Song"], dump(state)


def test_an_export_deleted_while_the_daemon_is_down_does_not_follow_its_folder_later(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Chaos seed 1000: 'Drive 027.flac' (on SoundCloud) was deleted while the daemon was down;
    no deletion event ever came, so each later rename of its folder took the record along."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    _session(exports / "Night", "Drive", "Deleted While Down", 766)
    _session(exports / "Night", "Stays", "Stays", 767)
    with ThreadedDaemon(config, token_store):
        gone = wait_for(lambda: in_state(state, "Deleted While Down", State.RELEASED), what="up")
        stays = wait_for(lambda: in_state(state, "Stays", State.RELEASED), what="up")
    (exports / "Night" / "Drive.wav").unlink()
    (exports / "Night" / "Drive.yaml").unlink()
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: by_id(state, gone.id).left_its_folder,
            what="the deleted export said to have left its folder",
        )
        folder = (exports / "Night").rename(exports / "Night m1")
        wait_for(
            lambda: by_id(state, stays.id).audio_path == str(folder / "Stays.wav"),
            what="the other track following its folder",
        )
        _session(folder, "Drive", "Another Drive", 768)
        wait_for(lambda: in_state(state, "Another Drive", State.RELEASED), what="the new song up")
    old = by_id(state, gone.id)
    assert old.audio_path == str(exports / "Night" / "Drive.wav"), dump(state)
    titles = sorted(t["title"] for t in sandbox.tracks())
    assert titles == ["Another Drive", "Deleted While Down", "Stays"], dump(state)
