"""A sidecar's artwork stays inside the folder its track was found in, even after a reload
drops that folder from the config."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from releaseosd.model.config import Config, WatchFolder
from releaseosd.model.store import Store
from releaseosd.model.track import Track
from releaseosd.pipeline.ingest import Ingest


def test_a_folder_dropped_by_a_reload_still_bounds_its_tracks_artwork(tmp_path: Path) -> None:
    dropped, kept = tmp_path / "dropped", tmp_path / "kept"
    dropped.mkdir()
    kept.mkdir()
    Image.new("RGB", (900, 900), "red").save(tmp_path / "private.png")
    Image.new("RGB", (900, 900), "blue").save(dropped / "cover.png")
    audio = dropped / "Song.wav"
    audio.write_bytes(b"")  # only its name matters here
    state = tmp_path / "state"
    store = Store.open(state)
    try:
        store.insert(Track(audio_path=str(audio), title="Song", watch_root=str(dropped)))
        config = Config(watch=[WatchFolder(path=kept)], state_dir=state)
        with ThreadPoolExecutor(1) as pool:
            ingest = Ingest(config, store, pool)
            (dropped / "Song.yaml").write_text(f"artwork: {tmp_path / 'private.png'}\n")
            read = ingest.read_sidecar(audio)
            sidecar, problems = read.sidecar, read.problems
            assert sidecar is None
            assert problems is not None and "outside the watched folder" in problems
            assert str(dropped) in problems

            (dropped / "Song.yaml").write_text("artwork: cover.png\n")
            read = ingest.read_sidecar(audio)
            sidecar, problems = read.sidecar, read.problems
            assert problems is None and sidecar is not None
            assert sidecar.artwork == (dropped / "cover.png").resolve()
    finally:
        store.close()


def test_a_moved_track_is_bounded_by_its_new_folder(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    Image.new("RGB", (900, 900), "blue").save(second / "cover.png")
    audio = second / "Song.wav"
    audio.write_bytes(b"")
    state = tmp_path / "state"
    store = Store.open(state)
    try:
        # Recorded where it was found; since moved to a folder a reload then dropped.
        track = store.insert(Track(audio_path=str(audio), title="Song", watch_root=str(first)))
        config = Config(watch=[], state_dir=state)
        with ThreadPoolExecutor(1) as pool:
            ingest = Ingest(config, store, pool)
            (second / "Song.yaml").write_text("artwork: cover.png\n")
            read = ingest.read_sidecar(audio)
            sidecar, problems = read.sidecar, read.problems
            assert problems is None and sidecar is not None
            assert sidecar.artwork == (second / "cover.png").resolve()

            # A move seen by ingest records the new folder with the track.
            moved = Config(watch=[WatchFolder(path=second)], state_dir=state)
            ingest.config = moved
            updated = store.update(track.id, ingest._moved_to(audio), note="moved")
            assert updated.watch_root == str(second)
    finally:
        store.close()
