"""Sidecar edits after upload, moved release times, failed processing and remote removal, end to
end against the sandbox."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from daemon_harness import (
    ThreadedDaemon,
    by_title,
    daemon_env,
    local,
    make_audio,
    read_tracks,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.model.track import doc_status_row


def _puts(sandbox: TestSandbox, urn: str) -> list[dict[str, Any]]:
    return [
        r.json_body["track"]
        for r in sandbox.requests
        if r.method == "PUT" and r.path.endswith(urn) and isinstance(r.json_body, dict)
    ]


def test_sidecar_edit_after_upload_sends_only_what_changed(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Edit.yaml"
    sidecar.write_text("title: Edit Me\nsharing: public\ngenre: House\nbpm: 120\n")
    make_audio(exports / "Edit.wav", freq=480)
    with ThreadedDaemon(config, token_store):
        track = wait_for(
            lambda: (t := by_title(state).get("Edit Me")) and t.state == State.RELEASED and t,
            what="released",
        )
        urn = track.soundcloud.urn
        assert urn is not None
        sidecar.write_text("title: Edit Me\nsharing: public\ngenre: Techno\nbpm: 120\n")
        wait_for(
            lambda: any(
                h.note.startswith("sent changed fields") for h in by_title(state)["Edit Me"].history
            ),
            what="changes sent",
        )
        assert _puts(sandbox, urn) == [{"genre": "Techno"}]
        remote = next(t for t in sandbox.tracks() if t["urn"] == urn)
        assert remote["genre"] == "Techno"
        # Editing the bpm changes the description (bpm has no field of its own).
        sidecar.write_text("title: Edit Me\nsharing: public\ngenre: Techno\nbpm: 128\n")
        wait_for(lambda: len(_puts(sandbox, urn)) == 2, what="second change")
        second = _puts(sandbox, urn)[1]
        assert set(second) == {"description"} and "BPM: 128" in second["description"]
        assert len(sandbox.tracks()) == 1


def test_moving_and_removing_the_release_time(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    far = local(3600)
    (exports / "Move.yaml").write_text(
        f"title: Move Me\nsharing: public\nrelease_at: {far.isoformat()}\n"
    )
    make_audio(exports / "Move.wav", freq=510)
    (exports / "Drop.yaml").write_text(
        f"title: Drop Time\nsharing: public\nrelease_at: {far.isoformat()}\n"
    )
    make_audio(exports / "Drop.wav", freq=530)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: (
                (ts := by_title(state))
                and all(
                    ts.get(n) and ts[n].state == State.SCHEDULED for n in ("Move Me", "Drop Time")
                )
            ),
            what="both scheduled",
        )
        soon = local(4)
        (exports / "Move.yaml").write_text(
            f"title: Move Me\nsharing: public\nrelease_at: {soon.isoformat()}\n"
        )
        (exports / "Drop.yaml").write_text("title: Drop Time\nsharing: public\n")
        # Taking the time out says nothing about when: it stays private (never early) and
        # status says what to do.
        dropped = wait_for(
            lambda: (t := by_title(state)["Drop Time"]).state == State.PUBLISHED and t,
            what="release time removed: kept private",
        )
        assert dropped.release_at is None and dropped.hold_private
        assert "release_at" in (doc_status_row(dropped.model_dump(mode="json"))["warning"] or "")
        moved = wait_for(
            lambda: (t := by_title(state)["Move Me"]).state == State.RELEASED and t,
            timeout=20,
            what="moved release",
        )
        assert moved.soundcloud.published_at is not None
        assert soon <= moved.soundcloud.published_at <= soon + dt.timedelta(seconds=2)
    assert sorted(t["sharing"] for t in sandbox.tracks()) == ["private", "public"]


def test_failed_processing_is_deleted_then_uploaded_again(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sandbox.faults.update(processing_outcome="failed")
    (exports / "P.yaml").write_text("title: Process Me\nsharing: public\n")
    make_audio(exports / "P.wav", freq=560)
    with ThreadedDaemon(config, token_store):
        wait_for(
            lambda: any(r.method == "DELETE" for r in sandbox.requests), what="failed copy deleted"
        )
        sandbox.faults.update(processing_outcome="finished")
        track = wait_for(
            lambda: (t := by_title(state)["Process Me"]).state == State.RELEASED and t,
            what="released after re-upload",
        )
    remote = sandbox.tracks()
    assert [t["urn"] for t in remote] == [track.soundcloud.urn]
    posts = [r for r in sandbox.requests if r.method == "POST" and r.path == "/tracks"]
    deletes = [r for r in sandbox.requests if r.method == "DELETE"]
    # Never two copies at once: every new upload came after the failed one was deleted.
    assert len(posts) == len(deletes) + 1
    for delete, later_post in zip(deletes, posts[1:], strict=True):
        assert delete.seq < later_post.seq


def test_remove_remote_deletes_on_soundcloud(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, monkeypatch: Any
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "R.yaml").write_text("title: Remove Me\nsharing: private\n")
    make_audio(exports / "R.wav", freq=590)
    with ThreadedDaemon(config, token_store):
        track = wait_for(
            lambda: (t := by_title(state).get("Remove Me")) and t.state == State.PUBLISHED and t,
            what="published",
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "releaseosd",
                "--config",
                str(config),
                "remove",
                "Remove Me",
                "--remote",
                "--yes",
            ],
            env=daemon_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "deleted on SoundCloud" in result.stdout
        assert by_title(state)["Remove Me"].state == State.REMOVED
    assert sandbox.tracks() == []
    assert track.soundcloud.urn is not None


def test_a_re_export_after_upload_is_reported_not_uploaded_again(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "Again.yaml").write_text("title: Again\nsharing: public\n")
    make_audio(exports / "Again.wav", freq=610)
    with ThreadedDaemon(config, token_store):
        first = wait_for(
            lambda: (t := by_title(state).get("Again")) and t.state == State.RELEASED and t,
            what="released",
        )
        make_audio(exports / "Again.wav", freq=620)  # the producer exports a new mix over it
        changed = wait_for(
            lambda: (t := by_title(state)["Again"]).local_change and t, what="local change"
        )
        # A copy of the released audio under another name is not a new track either.
        original = make_audio(tmp_path / "orig" / "o.wav", freq=610).read_bytes()
        (exports / "Again (copy).wav").write_bytes(original)
        # Identified on the build pool (a full read): it may show as pending for a moment.
        copy = wait_for(
            lambda: next(
                (
                    t
                    for t in read_tracks(state)
                    if t.audio_path.endswith("Again (copy).wav") and t.state != State.PENDING
                ),
                None,
            ),
            what="the copy noticed",
        )
    assert changed.state == State.RELEASED
    assert changed.sha256 == first.sha256, "the record keeps what was uploaded"
    assert changed.local_change["sha256"] != first.sha256  # type: ignore[index]
    assert copy.state == State.INVALID and "the same audio as 'Again'" in (copy.last_error or "")
    assert len(sandbox.tracks()) == 1
