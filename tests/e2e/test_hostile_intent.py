"""What the producer asked for, against what SoundCloud ends up with: defaults reloaded mid-upload,
a released track made private by its sidecar, releases while paused, the original of a refused
copy deleted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
    local,
    make_audio,
    pause_before_start,
    read_tracks,
    track,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.soundcloud import client as client_module

# The CLI reaches the in-process daemon over its control socket.
pytestmark = pytest.mark.usefixtures("runtime_dir")


def test_defaults_reloaded_while_an_upload_runs_are_not_sent_with_a_later_edit(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload carries the defaults of its start (genre Old); a SIGHUP lands while it runs
    (genre New). The track keeps the defaults it went up with, so the producer's next unrelated
    edit (a new title) sends the title only."""
    reached, go = threading.Event(), threading.Event()
    original = client_module._verified_chunks

    def held(part: Any) -> Iterator[bytes]:
        if part.name == "track[asset_data]" and not go.is_set():
            reached.set()
            go.wait(30)
        yield from original(part)

    monkeypatch.setattr(client_module, "_verified_chunks", held)
    config = write_config(tmp_path, sandbox.base_url)
    base = config.read_text()
    config.write_text(base + "defaults:\n  genre: Old\n")
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Frozen.yaml"
    sidecar.write_text("title: Frozen\nsharing: public\n")
    make_audio(exports / "Frozen.wav", freq=801)
    with ThreadedDaemon(config, token_store) as running:
        assert reached.wait(30)
        config.write_text(base + "defaults:\n  genre: New\n")
        running.daemon.request_reload()
        wait_for(lambda: running.daemon.config.defaults.genre == "New", what="reloaded")
        go.set()
        wait_for(
            lambda: (t := in_state(state, "Frozen", State.RELEASED)) and t.sync is None,
            what="released",
        )
        assert sandbox.tracks()[0]["genre"] == "Old"
        mark = len(sandbox.requests)
        sidecar.write_text("title: Frozen (Remaster)\nsharing: public\n")
        wait_for(
            lambda: (t := track(state, "Frozen (Remaster)")) and t.sync is None,
            what="the title edit sent",
        )
    puts = [r.json_body for r in sandbox.requests[mark:] if r.method == "PUT"]
    assert [set((b or {}).get("track", {})) for b in puts] == [{"title"}], puts
    assert sandbox.tracks()[0]["genre"] == "Old"


def test_a_released_track_whose_sidecar_says_private_goes_private_or_says_why_not(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Hide.yaml"
    sidecar.write_text("title: Hide\nsharing: public\n")
    make_audio(exports / "Hide.wav", freq=811)
    with ThreadedDaemon(config, token_store):
        first = wait_for(lambda: in_state(state, "Hide", State.RELEASED), what="released")
        sidecar.write_text("title: Hide\nsharing: private\n")
        taken = wait_for(
            lambda: (
                (t := track(state, "Hide"))
                and t.sidecar_digest != first.sidecar_digest
                and t.sync is None
                and t
            ),
            what="the edit taken",
        )
    [remote] = sandbox.tracks()
    assert remote["sharing"] == "private" or taken.last_error or taken.warning, (
        "sidecar says private; SoundCloud keeps it public and nothing says so "
        f"(state {taken.state}, last_error={taken.last_error!r}, "
        f"notes={[h.note for h in taken.history[-3:]]})"
    )


def test_a_release_due_while_uploads_are_paused_still_happens(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Due.yaml").write_text(
        f"title: Due\nsharing: public\nrelease_at: {local(4).isoformat()}\n"
    )
    make_audio(exports / "Due.wav", freq=821)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Due", State.SCHEDULED), what="scheduled")
        command(config, "pause")
        wait_for(lambda: in_state(state, "Due", State.RELEASED), timeout=30, what="released")
        # release --at in the past for a scheduled one: public now.
        (exports / "Past.yaml").write_text(
            f"title: Past\nsharing: public\nrelease_at: {local(3600).isoformat()}\n"
        )
        make_audio(exports / "Past.wav", freq=822)
        command(config, "resume")
        wait_for(lambda: in_state(state, "Past", State.SCHEDULED), what="scheduled")
        command(config, "release", track="Past", at=local(-3600).isoformat())
        wait_for(lambda: in_state(state, "Past", State.RELEASED), what="past release")


def test_deleting_the_original_of_a_refused_copy_lets_the_copy_take_over(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """The refusal says 'Delete one of the copies.' The producer deletes the original file (the
    uploaded one), keeping the copy in its new folder; the record follows the copy, which is no
    longer called invalid."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Orig.yaml").write_text("title: Orig\nsharing: public\n")
    make_audio(exports / "Orig.wav", freq=831)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Orig", State.RELEASED), what="released")
        (exports / "keep").mkdir()
        (exports / "keep" / "Orig.yaml").write_text("title: Orig\nsharing: public\n")
        make_audio(exports / "keep" / "Orig.wav", freq=831)
        wait_for(lambda: any(t.duplicate_of for t in read_tracks(state)), what="copy refused")
        (exports / "Orig.wav").unlink()
        (exports / "Orig.yaml").unlink()
        followed = eventually(
            lambda: (
                [t for t in read_tracks(state) if t.state == State.INVALID] == []
                and "keep" in ((track(state, "Orig") or first_of(state)).audio_path)
            ),
            timeout=12,
        )
        assert followed, "after 12 s (6 reconciles):\n" + dump(state)
    assert len(sandbox.tracks()) == 1


def first_of(state: Path) -> Any:
    return read_tracks(state)[0]


def test_plain_status_shows_a_re_export_that_was_not_uploaded(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """README: 'Re-exporting different audio for a track that is already up is reported
    (`status` shows it)': the plain table says so, not only `status --json`."""
    import subprocess
    import sys

    from daemon_harness import daemon_env

    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Fix.yaml").write_text(
        f"title: Fix\nsharing: public\nrelease_at: {local(7200).isoformat()}\n"
    )
    make_audio(exports / "Fix.wav", freq=841)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Fix", State.SCHEDULED), what="scheduled")
        make_audio(exports / "Fix.wav", freq=842)  # the fixed mix, before the release
        wait_for(lambda: (t := track(state, "Fix")) and t.local_change, what="local change")
        shown = subprocess.run(
            [sys.executable, "-m", "releaseosd", "--config", str(config), "status"],
            env=daemon_env(tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    row = next(line for line in shown.stdout.splitlines() if " Fix " in f" {line} ")
    assert any(w in row.lower() for w in ("re-export", "changed", "not uploaded", "local")), (
        f"status row says nothing of the unsent re-export: {row!r}"
    )


def test_a_half_written_sidecar_does_not_release_a_scheduled_track_early(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """An editor or sync client rewriting the sidecar in place stalls after the first line (a
    slow share, a full disk) for longer than stable_seconds. A cut sidecar is valid (every field
    is optional) and says nothing about when: the track stays private, and the rest of the file
    puts the release time back."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Tomorrow.yaml"
    full = f"title: Tomorrow\nsharing: public\nrelease_at: {local(86400).isoformat()}\n"
    sidecar.write_text(full)
    make_audio(exports / "Tomorrow.wav", freq=851)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Tomorrow", State.SCHEDULED), what="scheduled")
        with sidecar.open("r+") as fh:  # rewritten in place, slowly
            fh.truncate(0)
            cut = "title: Tomorrow\nsharing: public\n"  # cut before its last line
            fh.write(cut)
            fh.flush()
            released = eventually(lambda: in_state(state, "Tomorrow", State.RELEASED), 3)
            fh.write(full[len(cut) :])
        wait_for(lambda: (t := track(state, "Tomorrow")) and t.sync is None, what="settled")
    [remote] = sandbox.tracks()
    assert released is None and remote["sharing"] == "private", (
        "public a day early after a partial save: " + dump(state)
    )


def test_an_autosave_while_retyping_the_release_time_does_not_release_early(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """The producer moves the release by a day: selects the value after 'release_at:' and types
    the new one. An editor's autosave (VS Code 'afterDelay', 1 s) writes 'release_at:' with no
    value in between, which YAML reads as null: the track stays private until the new time
    lands."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Moving.yaml"
    sidecar.write_text(f"title: Moving\nsharing: public\nrelease_at: {local(86400).isoformat()}\n")
    make_audio(exports / "Moving.wav", freq=861)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Moving", State.SCHEDULED), what="scheduled")
        sidecar.write_text("title: Moving\nsharing: public\nrelease_at:\n")  # autosave
        released = eventually(lambda: in_state(state, "Moving", State.RELEASED), 3)
        sidecar.write_text(
            f"title: Moving\nsharing: public\nrelease_at: {local(2 * 86400).isoformat()}\n"
        )
        wait_for(lambda: (t := track(state, "Moving")) and t.sync is None, what="settled")
    [remote] = sandbox.tracks()
    assert released is None and remote["sharing"] == "private", (
        "public a day early after an autosave mid-edit: " + dump(state)
    )


def test_release_now_while_uploads_are_paused_does_not_claim_going_public_now(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    pause_before_start(state)
    (exports / "Held.yaml").write_text("title: Held\nsharing: public\n")
    make_audio(exports / "Held.wav", freq=871)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Held", State.READY), what="ready, paused")
        said = command(config, "release", track="Held")
        went = eventually(lambda: in_state(state, "Held", *DONE), 4)
    assert went or "now" not in said, (
        f"told {said!r}, but uploads are paused: it is still "
        f"{(track(state, 'Held') or first_of(state)).state}"
    )
