"""Schema 3: active tracks in store.json, finished ones in archive.jsonl, history in
history.jsonl. What each change writes, what a crash leaves, and the migrations to it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from releaseosd.model import store as store_module
from releaseosd.model.states import FINISHED, State
from releaseosd.model.store import (
    ARCHIVE_FILE,
    HISTORY_FILE,
    SCHEMA_VERSION,
    STORE_FILE,
    AtomicJSONStorage,
    Store,
    StoreError,
    read_docs,
    read_status,
    read_tracks,
)
from releaseosd.model.track import (
    ARTWORK_STALE,
    HELD_PRIVATE,
    AudioStat,
    HistoryEntry,
    Retrying,
    Track,
    doc_status_row,
)

DATA = Path(__file__).parent / "data"
FILES = (STORE_FILE, ARCHIVE_FILE, HISTORY_FILE)
TO_PUBLISHED = (State.BUILDING, State.READY, State.UPLOADING, State.PROCESSING, State.PUBLISHED)


def make_track(name: str, n: int = 0) -> Track:
    return Track(
        title=name,
        audio_path=f"/music/{name}.wav",
        sha256=f"{n:064x}",
        audio_digest=f"{n + 1000:064x}",
        audio_stat=AudioStat(size=100 + n, mtime_ns=n, inode=7000 + n, device=42),
    )


def published(store: Store, name: str, n: int = 0) -> Track:
    track = store.insert(make_track(name, n))
    for state in TO_PUBLISHED:
        store.transition(track.id, state)
    return track


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stamp(state_dir: Path) -> dict[str, tuple[int, int, int] | None]:
    out: dict[str, tuple[int, int, int] | None] = {}
    for name in FILES:
        try:
            st = (state_dir / name).stat()
        except FileNotFoundError:
            out[name] = None
        else:
            out[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def view(tracks: list[Track]) -> dict[str, tuple[Any, ...]]:
    """What must survive anything: each track's record and history."""
    return {
        t.id: (
            t.model_dump(mode="json", exclude={"history"}),
            [(h.at, h.state, h.previous, h.note) for h in t.history],
        )
        for t in tracks
    }


# --- where things are written -----------------------------------------------------------------


def test_finished_tracks_live_in_the_archive_and_active_ones_in_store_json(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    done = published(store, "Done")
    active = store.insert(make_track("Active", 1))
    store.close()
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert [d["id"] for d in raw["tracks"].values()] == [active.id]
    assert next(iter(raw["meta"].values()))["schema_version"] == SCHEMA_VERSION
    assert [line["id"] for line in lines(tmp_path / ARCHIVE_FILE)] == [done.id]
    history = lines(tmp_path / HISTORY_FILE)
    assert [h["state"] for h in history if h["id"] == done.id] == [
        "pending",
        *(s.value for s in TO_PUBLISHED),
    ]
    again = Store.open(tmp_path)
    assert [t.id for t in again.all()] == [done.id, active.id]
    assert [h.state for h in again.get(done.id).history][-1] == State.PUBLISHED  # type: ignore[union-attr]


def test_a_finished_tracks_change_appends_one_line_and_rewrites_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    tracks = [published(store, f"Track {i}", i) for i in range(20)]
    before = {name: (tmp_path / name).read_bytes() for name in FILES}
    stat = stamp(tmp_path)
    store.transition(tracks[7].id, State.RELEASED, note="public")
    after = {name: (tmp_path / name).read_bytes() for name in FILES}
    for name in (ARCHIVE_FILE, HISTORY_FILE):
        # Appended to: what was there is untouched, and exactly one line more.
        assert after[name].startswith(before[name]), name
        assert after[name][len(before[name]) :].count(b"\n") == 1, name
    assert stamp(tmp_path)[STORE_FILE] == stat[STORE_FILE], "store.json was written"
    last = json.loads(after[ARCHIVE_FILE].splitlines()[-1])
    assert (
        last["id"] == tracks[7].id
        and last["state"] == "released"
        and last["head"][0] == last["rev"]
    )
    assert Store.open(tmp_path).get(tracks[7].id).state == State.RELEASED  # type: ignore[union-attr]


def test_an_active_tracks_change_does_not_touch_the_archive(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for i in range(5):
        published(store, f"Done {i}", i)
    track = store.insert(make_track("Busy", 99))
    archive = stamp(tmp_path)[ARCHIVE_FILE]
    for state in (State.BUILDING, State.READY, State.UPLOADING):
        store.transition(track.id, state)
    store.update(track.id, lambda t: setattr(t, "attempts", 3))
    store.set_flag("paused", True)
    assert stamp(tmp_path)[ARCHIVE_FILE] == archive


def test_a_restart_with_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for i in range(5):
        published(store, f"Done {i}", i)
    store.insert(make_track("Busy", 51))
    # Deleted last: its history is the journal's tail, and must not look like a change lost.
    gone = store.insert(make_track("Copy", 50))
    store.delete(gone.id)
    store.close()
    before = stamp(tmp_path)
    for _ in range(2):
        again = Store.open(tmp_path)
        assert len(again.all()) == 6
        again.close()
    assert stamp(tmp_path) == before


def test_tracks_move_back_and_forth_between_the_files(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    track = published(store, "Mover")
    # A sidecar edit gives it a release time: scheduled again (active), then released.
    store.transition(track.id, State.SCHEDULED, note="release time set")
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert [d["id"] for d in raw["tracks"].values()] == [track.id]
    assert Store.open(tmp_path).get(track.id).state == State.SCHEDULED  # type: ignore[union-attr]
    store.transition(track.id, State.RELEASED)
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert raw["tracks"] == {}
    again = Store.open(tmp_path)
    moved = again.get(track.id)
    assert moved is not None and moved.state == State.RELEASED
    assert [h.state for h in moved.history][-3:] == [
        State.PUBLISHED,
        State.SCHEDULED,
        State.RELEASED,
    ]
    assert [t.id for t in read_tracks(tmp_path)] == [track.id]


def test_indexes_find_active_and_finished_tracks_alike(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    done = published(store, "Done", 1)
    busy = store.insert(make_track("Busy", 2))
    copy = store.insert(make_track("Done copy", 3))
    store.transition(copy.id, State.INVALID, duplicate_of=done.id)
    store.update(
        done.id,
        lambda t: setattr(t, "sync", Retrying(due_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))),
    )
    store.update(busy.id, lambda t: setattr(t, "warning", "log in"))
    for s in (store, Store.open(tmp_path)):
        assert [t.id for t in s.by_sha256(f"{1:064x}")] == [done.id]
        assert [t.id for t in s.by_audio_digest(f"{1002:064x}")] == [busy.id]
        assert [t.id for t in s.by_inode(42, 7001)] == [done.id]
        assert [t.id for t in s.duplicates_of(done.id)] == [copy.id]
        assert [t.id for t in s.in_folder(Path("/music"))] == [done.id, busy.id, copy.id]
        assert [t.id for t in s.in_folder(Path("/music"), "Done")] == [done.id]
        assert s.by_audio_path(Path("/music/Done.wav")).id == done.id  # type: ignore[union-attr]
        assert [t.id for t in s.in_states(State.PUBLISHED, State.PENDING)] == [done.id, busy.id]
        assert [t.id for t in s.owing()] == [done.id]
        assert [t.id for t in s.warned()] == [busy.id]
        assert [t.id for t in s.find("done")] == [done.id]


def test_delete_is_kept_deleted_and_the_id_may_come_back(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    done = published(store, "Done")
    store.delete(done.id)
    assert store.get(done.id) is None
    assert Store.open(tmp_path).get(done.id) is None
    assert read_docs(tmp_path) == [] and read_status(tmp_path) == []
    again = Store.open(tmp_path)
    fresh = again.insert(Track(id=done.id, title="Again", audio_path="/music/Again.wav"))
    reopened = Store.open(tmp_path).get(fresh.id)
    assert reopened is not None and reopened.title == "Again"
    assert [h.note for h in reopened.history] == ["seen"], "the old record's history came back"


def test_history_is_capped_per_track(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    track = store.insert(make_track("Busy"))
    for i in range(store_module.HISTORY_LIMIT + 20):
        store.update(track.id, lambda t: None, note=f"note {i}")
    for got in (store.get(track.id), Store.open(tmp_path).get(track.id), read_tracks(tmp_path)[0]):
        assert got is not None
        assert len(got.history) == store_module.HISTORY_LIMIT
        assert got.history[-1].note == f"note {store_module.HISTORY_LIMIT + 19}"


def test_journals_are_compacted_when_mostly_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 20)
    store = Store.open(tmp_path)
    tracks = [published(store, f"Track {i}", i) for i in range(5)]
    gone = published(store, "Gone", 9)
    store.delete(gone.id)
    for i in range(60):
        store.transition(tracks[i % 5].id, State.RELEASED if i % 2 == 0 else State.PUBLISHED)
    expected = view(store.all())
    assert len(lines(tmp_path / ARCHIVE_FILE)) <= 2 * 20 + 5
    live = sum(len(history) for _, history in expected.values())
    assert len(lines(tmp_path / HISTORY_FILE)) <= 2 * max(20, live) + 1
    for tracks_now in (Store.open(tmp_path).all(), read_tracks(tmp_path)):
        assert view(tracks_now) == expected
    assert not any(line["id"] == gone.id for line in lines(tmp_path / HISTORY_FILE))


# --- what `status` reads ----------------------------------------------------------------------


def varied_tracks() -> list[Track]:
    utc, plus2 = dt.UTC, dt.timezone(dt.timedelta(hours=2))
    base = dt.datetime(2026, 3, 1, 12, 0, 0, 123400, tzinfo=utc)
    tracks = [
        Track(title="Plain", audio_path="/m/Plain.wav", created_at=base),
        Track(
            title="Held",
            audio_path="/m/Held.wav",
            state=State.SCHEDULED,
            hold_private=True,
            release_at=dt.datetime(2026, 6, 1, 18, tzinfo=plus2),
            created_at=base - dt.timedelta(days=1),
        ),
        Track(
            title="Stale art",
            audio_path="/m/Art.wav",
            state=State.RELEASED,
            artwork_stale=True,
            local_change={"sha256": "ab", "seen_at": "2026-01-01T00:00:00Z"},
            created_at=base.replace(microsecond=0),
        ),
        Track(
            title="Warned — ünïcode",
            audio_path="/m/W.wav",
            warning="log in before 18:00",
            hold_private=True,
            next_attempt_at=dt.datetime(2026, 3, 1, 13, 0, 0, 5, tzinfo=utc),
            last_error="HTTP 503",
            attempts=4,
            created_at=base,
        ),
        Track(title="Naive", audio_path="/m/N.wav", release_at=dt.datetime(2026, 5, 1, 9, 30)),
        # What a head looks like, inside a title and inside the record: the real head is found.
        Track(
            id='id-"ü\\',
            title='x,"head":[1,"y",{"id":"z"}]}',
            audio_path="/m/H.wav",
            state=State.PUBLISHED,
            metadata={"head": [1, "2026-01-01T00:00:00Z", {"id": "evil"}]},
            created_at=base + dt.timedelta(hours=1),
        ),
    ]
    tracks[2].soundcloud.urn = "soundcloud:tracks:1"
    tracks[2].soundcloud.permalink_url = "https://soundcloud.com/a/b"
    tracks[2].soundcloud.sharing = "public"
    return tracks


def test_a_records_status_row_says_what_its_track_says() -> None:
    plain, held, stale, warned, naive, _ = varied_tracks()
    row = doc_status_row(stale.model_dump(mode="json"))
    assert row == {
        "id": stale.id,
        "title": "Stale art",
        "audio_path": "/m/Art.wav",
        "state": "released",
        "error": None,
        "release_at": None,
        "attempts": 0,
        "next_attempt_at": None,
        "soundcloud": {
            "urn": "soundcloud:tracks:1",
            "permalink_url": "https://soundcloud.com/a/b",
            "sharing": "public",
        },
        "local_change": {"sha256": "ab", "seen_at": "2026-01-01T00:00:00Z"},
        "warning": ARTWORK_STALE,
        "updated_at": stale.updated_at.isoformat(),
    }
    # Times as isoformat prints them, whatever their offset (or none); warnings by precedence.
    rows = {
        t.title: doc_status_row(t.model_dump(mode="json")) for t in (plain, held, warned, naive)
    }
    assert rows["Held"]["release_at"] == "2026-06-01T18:00:00+02:00"
    assert rows["Held"]["warning"] == HELD_PRIVATE.format(id=held.id)
    assert rows["Naive"]["release_at"] == "2026-05-01T09:30:00"
    warned_row = rows["Warned — ünïcode"]
    assert warned_row["warning"] == "log in before 18:00"
    assert warned_row["next_attempt_at"] == "2026-03-01T13:00:00.000005+00:00"
    assert (warned_row["error"], warned_row["attempts"]) == ("HTTP 503", 4)
    assert rows["Plain"]["warning"] is None and rows["Plain"]["state"] == "pending"


def test_read_status_gives_the_rows_of_status(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for track in varied_tracks():
        store.insert(track)  # the released one goes to the archive, the rest to store.json
    gone = published(store, "Gone", 5)
    store.delete(gone.id)
    tracks = sorted(store.all(), key=lambda t: (t.created_at, t.id))
    expected = [doc_status_row(t.model_dump(mode="json")) for t in tracks]
    assert [json.loads(t) for t in store.status_texts()] == expected
    assert [json.loads(t) for t in read_status(tmp_path)] == expected
    text = (tmp_path / ARCHIVE_FILE).read_text()
    starts = [0, *(i + 1 for i, c in enumerate(text) if c == "\n")][:-1]
    found = [store_module._head_of(text, a, text.index("\n", a)) for a in starts]
    assert [h is None for h in found] == [
        '"deleted":true' in text[a:].split("\n")[0] for a in starts
    ]
    assert {h[0] for h in found if h} >= {'id-"ü\\'}, "the fast path was not taken"
    # A line without a head (or one torn) is read the slow way, to the same rows.
    with (tmp_path / ARCHIVE_FILE).open("a") as fh:
        fh.write('{"id": "half')
    assert [json.loads(t) for t in read_status(tmp_path)] == expected


# --- crashes ----------------------------------------------------------------------------------


def test_a_torn_last_line_is_ignored_and_cut_on_open(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for i in range(3):
        published(store, f"Done {i}", i)
    store.close()
    expected = view(read_tracks(tmp_path))
    sizes = {name: (tmp_path / name).stat().st_size for name in (ARCHIVE_FILE, HISTORY_FILE)}
    with (tmp_path / ARCHIVE_FILE).open("ab") as fh:
        fh.write(b'{"head":[9,"2026-01-01T00:00:00Z",{"id":"abc')
    with (tmp_path / HISTORY_FILE).open("ab") as fh:
        fh.write(b'{"id":"xyz","rev":3,"at":"20')
    assert view(read_tracks(tmp_path)) == expected  # readers ignore it, and leave it be
    assert (tmp_path / ARCHIVE_FILE).stat().st_size > sizes[ARCHIVE_FILE]
    reopened = Store.open(tmp_path)
    assert view(reopened.all()) == expected
    assert {n: (tmp_path / n).stat().st_size for n in sizes} == sizes, "torn lines not cut"
    # And what is appended next starts on a line of its own.
    reopened.transition(reopened.all()[0].id, State.RELEASED)
    assert Store.open(tmp_path).all()[0].state == State.RELEASED


def test_a_broken_line_followed_by_records_is_an_error_that_says_what_to_do(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path)
    published(store, "One", 1)
    published(store, "Two", 2)
    store.close()
    archive = (tmp_path / ARCHIVE_FILE).read_text().splitlines()
    (tmp_path / ARCHIVE_FILE).write_text(archive[0][:40] + "\n" + archive[1] + "\n")
    with pytest.raises(StoreError, match=r"archive\.jsonl: line 1 is not a JSON record"):
        Store.open(tmp_path)


def test_a_history_entry_whose_record_was_never_saved_is_dropped(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    done = published(store, "Done")
    busy = store.insert(make_track("Busy", 1))
    store.close()
    expected = view(read_tracks(tmp_path))
    size = (tmp_path / HISTORY_FILE).stat().st_size
    rev = max(line["rev"] for line in lines(tmp_path / HISTORY_FILE) if line["id"] == done.id)
    with (tmp_path / HISTORY_FILE).open("a") as fh:
        # The entries of an update and of an insert, written before a crash took their records.
        fh.write(json.dumps({"id": done.id, "rev": rev + 1, "at": "2026-01-01T00:00:00Z", "state": "released"}) + "\n")  # fmt: skip
        fh.write(json.dumps({"id": "newtrack0001", "rev": 1, "at": "2026-01-01T00:00:00Z", "state": "pending", "note": "seen"}) + "\n")  # fmt: skip
    assert view(read_tracks(tmp_path)) == expected
    reopened = Store.open(tmp_path)
    assert view(reopened.all()) == expected
    assert (tmp_path / HISTORY_FILE).stat().st_size == size
    reopened.transition(done.id, State.RELEASED, note="for real")
    got = Store.open(tmp_path).get(done.id)
    assert got is not None and [h.note for h in got.history][-1] == "for real"
    assert len(got.history) == len(expected[done.id][1]) + 1
    assert Store.open(tmp_path).get(busy.id) is not None


@pytest.mark.parametrize(
    ("move", "crash_after"),
    [
        # Writes of a move: its history entry, the record in its new place (the commit), and
        # (leaving store.json) the record out of its old one.
        ("to_archive", 1),
        ("to_archive", 2),
        ("to_archive", 3),
        ("to_active", 1),
        ("to_active", 2),
    ],
)
def test_a_crash_after_each_write_of_a_move(
    tmp_path: Path, move: str, crash_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path)
    track = published(store, "Mover")
    if move == "to_archive":
        store.transition(track.id, State.SCHEDULED)
    store.close()
    before = view(read_tracks(tmp_path))
    target = State.RELEASED if move == "to_archive" else State.SCHEDULED
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            child = Store.open(tmp_path)
            writes = 0

            def counted(real: Any) -> Any:
                def write(*args: Any) -> Any:
                    nonlocal writes
                    result = real(*args)
                    writes += 1
                    if writes == crash_after:
                        os._exit(7)
                    return result

                return write

            monkeypatch.setattr(
                store_module.Journal, "append", counted(store_module.Journal.append)
            )
            monkeypatch.setattr(AtomicJSONStorage, "write", counted(AtomicJSONStorage.write))
            child.transition(track.id, target, note="moving")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 7, "the child did not crash where it was meant to"
    assert [t.id for t in read_tracks(tmp_path)] == [track.id]
    reopened = Store.open(tmp_path)
    (got,) = reopened.all()
    if crash_after == 1:
        assert view([got]) == before, "a change never saved left a trace"
    else:
        assert got.state == target and got.history[-1].note == "moving"
        assert len(got.history) == len(before[track.id][1]) + 1
    assert view(read_tracks(tmp_path)) == view([got])
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert [d["id"] for d in raw["tracks"].values()] == ([] if got.state in FINISHED else [got.id])


def _mover(state_dir: Path, report_fd: int) -> None:
    """Child: move tracks between the archive and store.json forever, reporting each move."""
    store = Store.open(state_dir)
    ids = [t.id for t in store.all() if t.title.startswith("Track")]
    i = max(t.attempts for t in store.all())
    while True:
        i += 1
        track = store.get(ids[i % len(ids)])
        assert track is not None
        to = State.SCHEDULED if track.state == State.PUBLISHED else State.PUBLISHED
        store.transition(track.id, to, note=f"move {i}", attempts=i)
        os.write(report_fd, f"{i}\n".encode())


def test_sigkill_mid_move_never_loses_or_doubles_a_track(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="releaseosd.model.store")
    store = Store.open(tmp_path)
    ids = [published(store, f"Track {i}", i).id for i in range(6)]
    for i in range(10):
        store.insert(make_track(f"Active {i}", 100 + i))
    store.close()
    everyone = {t.id for t in read_tracks(tmp_path)}
    assert len(everyone) == 16
    rng = random.Random(60)
    moved = 0
    for _ in range(60):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(read_fd)
            try:
                _mover(tmp_path, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        first = os.read(read_fd, 64)
        assert first, "mover child died before its first move"
        time.sleep(rng.uniform(0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        rest = first
        while chunk := os.read(read_fd, 4096):
            rest += chunk
        os.close(read_fd)
        confirmed = [int(x) for x in rest.decode().split()]
        moved += len(confirmed)
        last = confirmed[-1]
        # A reader, before anyone repairs anything, and the owner after opening: each track
        # exactly once, and every record agreeing with its history.
        for tracks in (read_tracks(tmp_path), Store.open(tmp_path).all()):
            assert sorted(t.id for t in tracks) == sorted(everyone)
            by_id = {t.id: t for t in tracks}
            # The move confirmed last is there; the one in flight is there whole, or not at all.
            assert by_id[ids[last % len(ids)]].attempts == last
            in_flight = by_id[ids[(last + 1) % len(ids)]]
            assert in_flight.attempts in (last + 1, max(last + 1 - len(ids), 0))
            for t in tracks:
                assert t.history[-1].state == t.state, t.id
                if t.id in ids and t.attempts:
                    assert t.history[-1].note == f"move {t.attempts}", t.id
        raw = json.loads((tmp_path / STORE_FILE).read_text())
        active = [d["id"] for d in raw["tracks"].values()]
        assert len(active) == len(set(active))
        assert not any(d["state"] in {s.value for s in FINISHED} for d in raw["tracks"].values())
        assert not list(tmp_path.glob(".store-*.tmp"))
    assert moved > 60, "the children hardly moved anything: the kills tested nothing"
    # Some kills must have landed inside a move (a copy in both files, or an entry whose
    # record was never written), or this tested only the easy moments.
    repairs = [r for r in caplog.records if "dropping" in r.getMessage()]
    assert len(repairs) >= 3, [r.getMessage() for r in caplog.records]


# --- migrations -------------------------------------------------------------------------------


def v2_expectations() -> tuple[dict[str, Any], dict[str, list[tuple[str, str, str | None, str]]]]:
    data = json.loads((DATA / "store-v2.json").read_text())
    records = {d["id"]: d for d in data["tracks"].values()}
    histories = {
        d["id"]: [(h["at"], h["state"], h["previous"], h["note"]) for h in d["history"]]
        for d in data["tracks"].values()
    }
    return records, histories


def check_migrated_v2(tracks: list[Track]) -> None:
    records, histories = v2_expectations()
    assert [t.id for t in tracks] == list(records), "every track, in the old order"
    for track in tracks:
        # As a Track reads the v2 record: fields added since v2 (failure_counts) at their default.
        old = Track.model_validate(records[track.id]).model_dump(mode="json", exclude={"history"})
        assert track.model_dump(mode="json", exclude={"history"}) == old
        assert [
            (h.model_dump(mode="json")["at"], h.state.value, h.previous, h.note)
            for h in track.history
        ] == histories[track.id]


def test_migration_from_version_2(tmp_path: Path) -> None:
    shutil.copy(DATA / "store-v2.json", tmp_path / STORE_FILE)
    original = (DATA / "store-v2.json").read_bytes()
    # Readers see a store not migrated yet as the owner will.
    check_migrated_v2(read_tracks(tmp_path))
    assert (tmp_path / STORE_FILE).read_bytes() == original
    store = Store.open(tmp_path)
    check_migrated_v2(store.all())
    assert store.flag("paused") is True
    assert [t.title for t in store.owing()] == ["Private Cut"]
    check_migrated_v2(read_tracks(tmp_path))
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert next(iter(raw["meta"].values()))["schema_version"] == SCHEMA_VERSION
    assert sorted(d["title"] for d in raw["tracks"].values()) == [
        "Dawn",
        "Night Drive (copy)",
        "Sketch",
    ]
    assert sorted(line["title"] for line in lines(tmp_path / ARCHIVE_FILE)) == [
        "Night Drive",
        "Old Demo",
        "Private Cut",
    ]
    assert json.loads((tmp_path / f"{STORE_FILE}.v2.bak").read_bytes()) == json.loads(original)
    store.close()
    before = stamp(tmp_path)
    check_migrated_v2(Store.open(tmp_path).all())
    assert stamp(tmp_path) == before, "a migrated store was migrated again"


def test_migration_from_version_1_writes_the_three_files(tmp_path: Path) -> None:
    shutil.copy(DATA / "store-v1.json", tmp_path / STORE_FILE)
    tracks = {t.title: t for t in Store.open(tmp_path).all()}
    assert sorted(tracks) == ["Dawn", "Night Drive", "Sketch"]
    assert [line["title"] for line in lines(tmp_path / ARCHIVE_FILE)] == ["Night Drive"]
    assert all(t.history[0].note == "migrated from v1" for t in tracks.values())
    assert {t.title for t in read_tracks(tmp_path)} == set(tracks)
    assert (tmp_path / f"{STORE_FILE}.v1.bak").exists()


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_a_migration_cut_short_loses_nothing_and_runs_again(
    tmp_path: Path, fail_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration replaces four files: the backup, history.jsonl, archive.jsonl and, last,
    store.json. Failing at any of them leaves store.json as it was; the next open migrates."""
    shutil.copy(DATA / "store-v2.json", tmp_path / STORE_FILE)
    # Left by an earlier attempt that crashed: must be replaced, not added to.
    (tmp_path / ARCHIVE_FILE).write_text('{"id":"leftover","rev":5,"state":"released"}\n')
    original = (tmp_path / STORE_FILE).read_bytes()
    real = store_module.replace_file
    calls: list[Path] = []

    def failing(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(store_module, "replace_file", failing)
    with pytest.raises(OSError, match="No space"):
        Store.open(tmp_path)
    assert (tmp_path / STORE_FILE).read_bytes() == original
    check_migrated_v2(read_tracks(tmp_path))
    monkeypatch.setattr(store_module, "replace_file", real)
    store = Store.open(tmp_path)
    check_migrated_v2(store.all())
    assert store.flag("paused") is True
    assert json.loads((tmp_path / f"{STORE_FILE}.v2.bak").read_bytes()) == json.loads(original)


def test_a_store_json_from_the_future_is_refused_by_readers_too(tmp_path: Path) -> None:
    AtomicJSONStorage(tmp_path / STORE_FILE).write({"meta": {"1": {"schema_version": 99}}})
    for read in (read_docs, read_tracks, read_status):
        with pytest.raises(StoreError, match="newer releaseosd"):
            read(tmp_path)


def test_history_entries_keep_their_fields(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    track = make_track("Given")
    track.history = [
        HistoryEntry(at=at, state=State.PENDING, note="seen"),
        HistoryEntry(at=at, state=State.PENDING, previous=State.PENDING),
    ]
    store.insert(track)
    got = Store.open(tmp_path).get(track.id)
    assert got is not None and got.history == track.history


def test_a_compaction_that_fails_fails_no_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 5)
    store = Store.open(tmp_path)
    track = published(store, "Busy")

    def full(self: Any, objects: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.Journal, "replace", full)
    for i in range(12):
        store.transition(track.id, State.RELEASED if i % 2 == 0 else State.PUBLISHED)
    expected = view(store.all())
    monkeypatch.undo()
    assert view(Store.open(tmp_path).all()) == expected
