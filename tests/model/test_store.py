from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
from pathlib import Path

import pytest

from releaseosd.model.states import ALLOWED, State, TransitionError, can_move
from releaseosd.model.store import (
    SCHEMA_VERSION,
    STORE_FILE,
    AtomicJSONStorage,
    OwnerLock,
    StateDirBusy,
    Store,
    StoreError,
)
from releaseosd.model.track import Track

DATA = Path(__file__).parent / "data"


def make_track(name: str = "Night Drive") -> Track:
    return Track(title=name, audio_path=f"/music/{name}.wav")


def test_state_dir_and_file_permissions(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = Store.open(state_dir)
    store.insert(make_track())
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / STORE_FILE).stat().st_mode) == 0o600
    leftovers = [p.name for p in state_dir.iterdir() if p.name.startswith(".store-")]
    assert leftovers == []


def test_insert_update_find(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    track = store.insert(make_track())
    store.transition(track.id, State.BUILDING)
    store.transition(track.id, State.READY, note="built")
    again = Store.open(tmp_path).get(track.id)
    assert again is not None and again.state == State.READY
    assert [h.state for h in again.history] == [State.PENDING, State.BUILDING, State.READY]
    assert again.history[-1].note == "built" and again.history[-1].previous == State.BUILDING
    assert store.find(track.id[:4]) == [again]
    assert store.find("night drive") == [again]
    assert store.find("/music/Night Drive.wav")[0].id == track.id
    assert store.find("zzz") == []


def test_forbidden_transition_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    track = store.insert(make_track())
    with pytest.raises(TransitionError, match="cannot go from pending to released"):
        store.transition(track.id, State.RELEASED)
    assert store.get(track.id).state == State.PENDING  # type: ignore[union-attr]


def test_transition_table_is_complete_and_consistent() -> None:
    assert set(ALLOWED) == set(State)
    for source, targets in ALLOWED.items():
        assert source not in targets, f"{source} lists itself"
        for target in targets:
            assert can_move(source, target)
    # Nothing that may be on SoundCloud can fall back to a state that would upload it afresh
    # without going through READY (which does the machine-tag lookup first).
    for remote in (State.PROCESSING, State.SCHEDULED, State.PUBLISHED, State.RELEASED):
        assert State.PENDING not in ALLOWED[remote]
        assert State.BUILDING not in ALLOWED[remote]
    assert ALLOWED[State.REMOVED] == frozenset()
    # A released track only ends, or is taken back private by its sidecar ('sharing: private').
    assert ALLOWED[State.RELEASED] == frozenset({State.PUBLISHED, State.REMOVED})


def test_second_owner_is_refused(tmp_path: Path) -> None:
    first = OwnerLock(tmp_path)
    first.acquire()
    with pytest.raises(StateDirBusy, match=f"pid {os.getpid()}"):
        OwnerLock(tmp_path).acquire()
    first.release()
    second = OwnerLock(tmp_path)
    second.acquire()
    second.release()


def test_migration_from_version_1(tmp_path: Path) -> None:
    shutil.copy(DATA / "store-v1.json", tmp_path / STORE_FILE)
    store = Store.open(tmp_path)
    tracks = {t.audio_path: t for t in store.all()}
    live = tracks["/home/nova/Music/Exports/Night Drive.wav"]
    assert live.state == State.RELEASED
    assert live.soundcloud.urn == "soundcloud:tracks:308946187"
    assert live.soundcloud.permalink_url == "https://soundcloud.com/nova/night-drive"
    assert live.metadata["bpm"] == 124
    assert live.history[0].note == "migrated from v1"
    failed = tracks["/home/nova/Music/Exports/Dawn.wav"]
    assert failed.state == State.FAILED and failed.attempts == 10
    assert failed.title == "Dawn" and failed.last_error == "HTTP 500 from SoundCloud"
    queued = tracks["/home/nova/Music/Exports/Sketch.wav"]
    assert queued.state == State.READY and queued.release_at is not None
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert next(iter(raw["meta"].values()))["schema_version"] == SCHEMA_VERSION
    assert (tmp_path / f"{STORE_FILE}.v1.bak").read_text() != ""
    # Running again is a no-op: migrations run once.
    assert {t.id for t in Store.open(tmp_path).all()} == {t.id for t in tracks.values()}


def test_store_from_the_future_is_refused(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_text(json.dumps({"meta": {"1": {"schema_version": 99}}}))
    with pytest.raises(StoreError, match="newer releaseosd"):
        Store.open(tmp_path)


def test_corrupt_store_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_text('{"tracks": {"1": ')
    with pytest.raises(StoreError, match="not valid JSON"):
        Store.open(tmp_path)


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    import threading

    store = Store.open(tmp_path)
    track = store.insert(make_track())

    def bump() -> None:
        for _ in range(50):
            store.update(track.id, lambda t: setattr(t, "attempts", t.attempts + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(track.id).attempts == 200  # type: ignore[union-attr]


def _writer(state_dir: Path, report_fd: int) -> None:
    """Child: rewrite one record forever, reporting each completed write."""
    store = Store.open(state_dir)
    track_id = store.all()[0].id
    i = 0
    while True:
        i += 1
        # Varying sizes, so a torn write could not look like a whole one.
        store.update(
            track_id,
            lambda t, i=i: (setattr(t, "attempts", i), t.metadata.update(pad="x" * (i % 4000))),
        )
        os.write(report_fd, f"{i}\n".encode())


def test_sigkill_at_random_moments_never_breaks_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.insert(make_track())
    store.close()
    rng = random.Random(1234)
    for _ in range(100):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(read_fd)
            try:
                _writer(tmp_path, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        # Wait for the child to be writing, then kill it at a random moment.
        first = os.read(read_fd, 64)
        assert first, "writer child died before its first write"
        target = rng.randint(1, 40)
        reported = [int(x) for x in first.decode().split()]
        while reported[-1] < target:
            chunk = os.read(read_fd, 4096)
            reported += [int(x) for x in chunk.decode().split() if x]
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        rest = b""
        while chunk := os.read(read_fd, 4096):
            rest += chunk
        os.close(read_fd)
        reported += [int(x) for x in rest.decode().split() if x]
        last_confirmed = reported[-1]
        data = AtomicJSONStorage(tmp_path / STORE_FILE).read()
        assert data is not None
        (doc,) = data["tracks"].values()
        # The record is the last confirmed write or the one in flight: never anything else.
        assert doc["attempts"] in (last_confirmed, last_confirmed + 1)
        reopened = Store.open(tmp_path)
        assert reopened.all()[0].attempts == doc["attempts"]
        reopened.close()
        assert not list(tmp_path.glob(".store-*.tmp")), "opening the store clears torn temp files"
        # Reset for the next round so each child starts from a known record.
        reopened = Store.open(tmp_path)
        reopened.update(reopened.all()[0].id, lambda t: setattr(t, "attempts", 0))
        reopened.close()
