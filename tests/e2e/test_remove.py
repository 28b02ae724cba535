"""`releaseosd remove` takes a track's built files (preview, artwork) with it, through the running
daemon and on the store directly alike, and leaves every other track's files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon_harness import (
    ThreadedDaemon,
    by_title,
    command,
    eventually,
    make_audio,
    pause_before_start,
    wait_for,
    write_config,
)
from sandbox_tools import TestSandbox

from releaseosd.model.states import State
from releaseosd.model.track import Track, built_dir


def _built(state: Path, title: str) -> Track | None:
    """The track once it is ready with its preview and artwork on disk."""
    found = by_title(state).get(title)
    if found is None or found.state != State.READY or not found.preview_path:
        return None
    files = [found.preview_path, found.artwork_path]
    return found if all(f and Path(f).is_file() for f in files) else None


def test_remove_deletes_the_tracks_built_files_and_no_others(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, runtime_dir: Path
) -> None:
    config = write_config(tmp_path, sandbox.base_url)
    exports, state = tmp_path / "exports", tmp_path / "state"
    pause_before_start(state)  # built and ready, never uploaded: nothing else touches them
    for name, freq in (("Gone", 440), ("Kept", 550), ("Later", 660)):
        (exports / f"{name}.yaml").write_text(f"title: {name}\nsharing: public\n")
        make_audio(exports / f"{name}.wav", freq=freq)

    with ThreadedDaemon(config, token_store):
        tracks = {
            name: wait_for(lambda n=name: _built(state, n), timeout=60, what=f"{name} built")
            for name in ("Gone", "Kept", "Later")
        }
        dirs = {name: built_dir(state, t.id) for name, t in tracks.items()}
        assert Path(tracks["Gone"].preview_path or "").parent == dirs["Gone"]

        # The daemon holds the state dir's lock: this goes through its control socket.
        said = command(config, "remove", track=tracks["Gone"].id, remote=False)
        assert "removed" in said
        assert by_title(state)["Gone"].state == State.REMOVED
        assert not dirs["Gone"].exists()
        assert eventually(lambda: dirs["Gone"].exists(), 2.5) is None, "built again"
        for name in ("Kept", "Later"):
            assert _built(state, name) is not None, f"{name}'s files went too"

    # No daemon: the same command on the store directly.
    said = command(config, "remove", track=tracks["Later"].id, remote=False)
    assert "removed" in said
    assert by_title(state)["Later"].state == State.REMOVED
    assert not dirs["Later"].exists()
    assert _built(state, "Kept") is not None
    assert sorted(p.name for p in dirs["Kept"].iterdir()) == [
        "artwork.png",
        "preview.mp3",
        "waveform.json",
    ]
