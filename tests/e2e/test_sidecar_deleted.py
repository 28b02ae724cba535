"""A deleted sidecar is an edit: what is left describes the track (found by the chaos run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    ThreadedDaemon,
    command,
    dump,
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


def test_a_sidecar_deleted_before_the_upload_leaves_the_folder_defaults_alone(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    """Seed 3: the own sidecar said public; deleted while queued, with the folder's release.yaml
    left (no sharing: private). The track went up public under the deleted sidecar's title."""
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "release.yaml").write_text("genre: Techno\n")
    sidecar = exports / "Kept Back.yaml"
    sidecar.write_text("title: Loud Title\ngenre: Dub\nsharing: public\n")
    make_audio(exports / "Kept Back.wav", freq=611)
    pause_before_start(state)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Loud Title", State.READY), what="queued")
        sidecar.unlink()
        wait_for(lambda: in_state(state, "Kept Back", State.READY), what="the folder's fields")
        command(config, "resume")
        done = wait_for(lambda: in_state(state, "Kept Back", State.PUBLISHED), what="uploaded")
    (copy,) = sandbox.tracks()
    assert (copy["title"], copy["genre"], copy["sharing"]) == ("Kept Back", "Techno", "private")
    assert done.soundcloud.sent_fields["title"] == "Kept Back"


def test_a_sidecar_deleted_before_the_upload_with_nothing_left_holds_the_track(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    sidecar = exports / "Withdrawn.yaml"
    sidecar.write_text("title: Withdrawn\nsharing: public\n")
    make_audio(exports / "Withdrawn.wav", freq=612)
    pause_before_start(state)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Withdrawn", State.READY), what="queued")
        sidecar.unlink()
        waiting = wait_for(
            lambda: (t := read_tracks(state)[0]).state == State.PENDING and t,
            what="waiting for its sidecar",
        )
        assert "waiting for its sidecar Withdrawn.yaml" in (waiting.last_error or ""), dump(state)
        command(config, "resume")
    assert sandbox.tracks() == []


def test_a_sidecar_deleted_after_the_upload_sends_what_the_folder_still_says(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    (exports / "release.yaml").write_text("genre: Techno\nsharing: public\n")
    sidecar = exports / "Up Now.yaml"
    sidecar.write_text("title: Own Title\ngenre: Dub\n")
    make_audio(exports / "Up Now.wav", freq=613)
    with ThreadedDaemon(config, token_store):
        wait_for(lambda: in_state(state, "Own Title", State.RELEASED), what="released")
        sidecar.unlink()
        wait_for(
            lambda: (t := in_state(state, "Up Now", State.RELEASED)) and t.sync is None and t,
            what="the folder's fields sent",
        )
    (copy,) = sandbox.tracks()
    assert (copy["title"], copy["genre"], copy["sharing"]) == ("Up Now", "Techno", "public")
