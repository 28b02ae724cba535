"""A hostile review of the schema 3 store: kills mid-compaction and mid-migration, readers
racing a writer, journals edited by hand or cut short in the middle, a full disk, tracks that
go back and forth, two tracks on one path, a clock that goes back, and listeners that raise,
block or write back into the store from inside an event.

Tests of what held up are kept as regression tests; each of the others came with its fix."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from releaseosd.model import store as store_module
from releaseosd.model.events import Event, EventBus, StateChanged
from releaseosd.model.states import FINISHED, State
from releaseosd.model.store import (
    ARCHIVE_FILE,
    HISTORY_FILE,
    STORE_FILE,
    AtomicJSONStorage,
    Store,
    StoreError,
    read_docs,
    read_status,
    read_tracks,
)
from releaseosd.model.track import HistoryEntry, Track, doc_status_row

DATA = Path(__file__).parent / "data"
FILES = (STORE_FILE, ARCHIVE_FILE, HISTORY_FILE)
TO_PUBLISHED = (State.BUILDING, State.READY, State.UPLOADING, State.PROCESSING, State.PUBLISHED)
FINISHED_VALUES = {s.value for s in FINISHED}


def make_track(name: str, n: int = 0, **fields: Any) -> Track:
    return Track(title=name, audio_path=f"/music/{name}.wav", sha256=f"{n:064x}", **fields)


def published(store: Store, name: str, n: int = 0, **fields: Any) -> Track:
    track = store.insert(make_track(name, n, **fields))
    for state in TO_PUBLISHED:
        store.transition(track.id, state)
    return track


def view(tracks: list[Track]) -> dict[str, tuple[Any, ...]]:
    return {
        t.id: (
            t.model_dump(mode="json", exclude={"history"}),
            [(h.at, h.state, h.previous, h.note) for h in t.history],
        )
        for t in tracks
    }


def read_all(fd: int) -> str:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    return out.decode()


def fork_child(body: Any, *args: Any) -> tuple[int, int]:
    """Run body(*args, report_fd) in a forked child; (pid, read end of its report pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        try:
            body(*args, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def kill(pid: int) -> None:
    with_status = os.waitpid(pid, os.WNOHANG)
    if with_status == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


# --- SIGKILL during compaction ----------------------------------------------------------------

MOVERS = 6
CHURN_ID = "churn0000001"


def _compactor(state_dir: Path, report_fd: int) -> None:
    """Child: changes of every kind, forever, with journals so small that compaction comes
    every few dozen changes; each change reported once saved, each compaction as it starts."""
    store = Store.open(state_dir)
    real_compact = Store.compact

    def compact(self: Store) -> None:
        os.write(report_fd, b"C\n")
        real_compact(self)
        os.write(report_fd, b"c\n")

    Store.compact = compact  # type: ignore[method-assign]
    ids = sorted(t.id for t in store.all() if t.title.startswith("Mover"))
    i = max(t.attempts for t in store.all())
    while True:
        i += 1
        kind = i % 5
        if kind == 4:
            # A track deleted and its id inserted again: its old history must never come back.
            if store.get(CHURN_ID) is not None:
                store.delete(CHURN_ID)
                os.write(report_fd, f"d {i}\n".encode())
            else:
                store.insert(Track(id=CHURN_ID, title=f"Churn {i}", audio_path="/m/churn.wav"))
                os.write(report_fd, f"i {i}\n".encode())
            continue
        track = store.get(ids[i % len(ids)])
        assert track is not None
        if kind == 3:
            store.transition(track.id, track.state, note=f"move {i}", attempts=i)  # a note only
        else:
            to = State.SCHEDULED if track.state == State.PUBLISHED else State.PUBLISHED
            store.transition(track.id, to, note=f"move {i}", attempts=i)
        os.write(report_fd, f"m {i}\n".encode())


def _check_compacted(tracks: list[Track], movers: list[str], others: set[str]) -> None:
    ids = [t.id for t in tracks]
    assert len(ids) == len(set(ids)), "a track shows twice"
    assert set(movers) | others <= set(ids), "a track is missing"
    assert set(ids) <= set(movers) | others | {CHURN_ID}
    for t in tracks:
        assert t.history, t.id
        assert t.history[-1].state == t.state, (t.id, t.state, t.history[-1])
        assert len(t.history) <= store_module.HISTORY_LIMIT
        if t.id == CHURN_ID:
            assert [h.note for h in t.history] == ["seen"], "a deleted record's history came back"
        if t.id in movers and t.attempts:
            notes = [int(h.note.split()[1]) for h in t.history if h.note.startswith("move ")]
            assert notes and notes[-1] == t.attempts, (t.id, t.attempts, notes)
            assert notes == sorted(notes), "history out of order"
            if len(t.history) == store_module.HISTORY_LIMIT:
                assert len(notes) == len(t.history), "history older than its cap came back"


def test_sigkill_during_compaction_keeps_every_track_once_with_its_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 30)
    monkeypatch.setattr(store_module, "HISTORY_LIMIT", 8)
    caplog.set_level(logging.INFO, logger="releaseosd.model.store")
    store = Store.open(tmp_path)
    movers = sorted(published(store, f"Mover {i}", i).id for i in range(MOVERS))
    others = {store.insert(make_track(f"Active {i}", 100 + i)).id for i in range(4)}
    others.add(published(store, "Done", 99).id)
    store.close()
    rng = random.Random(7)
    mid_compaction = 0
    for round_ in range(40):
        pid, fd = fork_child(_compactor, tmp_path)
        if round_ % 2 == 0:
            # Killed as a compaction starts, or a little into it.
            got = b""
            while b"C" not in got:
                chunk = os.read(fd, 4096)
                assert chunk, "the child died before compacting"
                got += chunk
            time.sleep(rng.choice([0, 0, rng.uniform(0, 0.004)]))
        else:
            assert os.read(fd, 64)
            time.sleep(rng.uniform(0, 0.05))
        kill(pid)
        reports = (got.decode() if round_ % 2 == 0 else "") + read_all(fd)
        os.close(fd)
        lines = reports.split("\n")
        if lines and "C" in lines and "c" not in lines[lines.index("C") :]:
            mid_compaction += 1
        before_repair = read_tracks(tmp_path)
        _check_compacted(before_repair, movers, others)
        reopened = Store.open(tmp_path)
        _check_compacted(reopened.all(), movers, others)
        assert view(read_tracks(tmp_path)) == view(reopened.all())
        assert view(before_repair) == view(reopened.all()), "the reader and the owner disagree"
        done = [(x.split()[0], int(x.split()[1])) for x in lines if x[:1] in ("d", "i", "m")]
        churn = [kind for kind, _ in done if kind in ("d", "i")]
        if churn and (done[-1][1] + 1) % 5 != 4:
            # No churn in flight: the last one confirmed holds.
            assert (reopened.get(CHURN_ID) is not None) == (churn[-1] == "i")
        reopened.close()
        raw = json.loads((tmp_path / STORE_FILE).read_text())
        assert not any(d["state"] in FINISHED_VALUES for d in raw["tracks"].values())
    rewritten = [r for r in caplog.records if "journals rewritten" in r.getMessage()]
    assert mid_compaction >= 5, "too few kills landed inside a compaction"
    assert rewritten, "no compaction finished in the owner either"


# --- `status` without the daemon, while another process writes and compacts -------------------


def _status_config(root: Path) -> Path:
    config = root / "config.yaml"
    exports = root / "exports"
    exports.mkdir(exist_ok=True)
    config.write_text(
        f"watch:\n  - path: {exports}\nstate_dir: {root / 'state'}\nsoundcloud:\n  client_id: abc\n"
    )
    return config


def _check_rows(rows: list[dict[str, Any]], must: set[str]) -> None:
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"a track shows twice: {sorted(ids)}"
    missing = must - set(ids)
    assert not missing, f"status missed {missing}"
    assert set(ids) <= must | {CHURN_ID}


def test_status_while_another_process_writes_and_compacts_never_doubles_or_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 30)
    monkeypatch.setattr(store_module, "HISTORY_LIMIT", 8)
    state_dir = tmp_path / "state"
    store = Store.open(state_dir)
    movers = {published(store, f"Mover {i}", i).id for i in range(MOVERS)}
    others = {store.insert(make_track(f"Active {i}", 100 + i)).id for i in range(4)}
    others.add(published(store, "Done", 99).id)
    store.close()
    must = movers | others
    config = _status_config(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")  # no daemon socket there: the files are read
    (tmp_path / "run").mkdir(mode=0o700)
    pid, fd = fork_child(_compactor, state_dir)
    try:
        assert os.read(fd, 64)
        compactions_seen = 0
        inode = (state_dir / ARCHIVE_FILE).stat().st_ino
        deadline = time.monotonic() + 4
        reads = 0
        while time.monotonic() < deadline:
            rows = [json.loads(t) for t in read_status(state_dir)]
            _check_rows(rows, must)
            docs = read_docs(state_dir)
            _check_rows([doc_status_row(d) for d in docs], must)
            reads += 1
            now = (state_dir / ARCHIVE_FILE).stat().st_ino
            compactions_seen += now != inode
            inode = now
        for _ in range(3):
            done = subprocess.run(
                [sys.executable, "-m", "releaseosd", "--config", str(config), "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            _check_rows(json.loads(done.stdout), must)
    finally:
        kill(pid)
        os.close(fd)
    assert reads > 50 and compactions_seen > 3, (reads, compactions_seen)


# --- SIGKILL during the migration from v2 -----------------------------------------------------


def v2_data(extra: int) -> dict[str, Any]:
    """The v2 fixture, with `extra` more released tracks (a migration long enough to kill)."""
    data: dict[str, Any] = json.loads((DATA / "store-v2.json").read_text())
    template = data["tracks"]["1"]  # released, with history
    for n in range(extra):
        doc_id = str(100 + n)
        doc = json.loads(json.dumps(template))
        doc.update(id=f"x{n:011d}", title=f"Extra {n}", audio_path=f"/m/Extra {n}.wav")
        data["tracks"][doc_id] = doc
    return data


def migrated_view(data: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What each v2 record says, as a Track reads it (fields added since v2 at their default)."""
    out = {}
    for doc in data["tracks"].values():
        record = Track.model_validate(doc).model_dump(mode="json", exclude={"history"})
        history = [(h["at"], h["state"], h["previous"], h["note"]) for h in doc["history"]]
        out[doc["id"]] = (record, history)
    return out


def track_view(tracks: list[Track]) -> dict[str, tuple[Any, ...]]:
    return {
        t.id: (
            t.model_dump(mode="json", exclude={"history"}),
            [
                (h.model_dump(mode="json")["at"], h.state.value, h.previous, h.note)
                for h in t.history
            ],
        )
        for t in tracks
    }


def _opener(state_dir: Path, report_fd: int) -> None:
    os.write(report_fd, b"go\n")
    Store.open(state_dir).close()
    os.write(report_fd, b"done\n")
    time.sleep(60)


def test_sigkill_during_the_migration_from_v2_loses_nothing(tmp_path: Path) -> None:
    data = v2_data(600)
    expected = migrated_view(data)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / STORE_FILE).write_text(json.dumps(data))
    # How long one migration takes here, to kill at moments all over it.
    probe = tmp_path / "probe"
    shutil.copytree(state_dir, probe)
    started = time.monotonic()
    Store.open(probe).close()
    took = time.monotonic() - started
    rng = random.Random(3)
    finished_in_child = 0
    for _ in range(20):
        if json.loads((state_dir / STORE_FILE).read_text())["meta"]["1"]["schema_version"] == 3:
            # Migrated by a child that was not killed in time: start over from v2.
            for name in FILES:
                (state_dir / name).unlink(missing_ok=True)
            (state_dir / STORE_FILE).write_text(json.dumps(data))
        pid, fd = fork_child(_opener, state_dir)
        assert os.read(fd, 3) == b"go\n"
        time.sleep(rng.uniform(0, took * 1.2))
        kill(pid)
        finished_in_child += "done" in read_all(fd)
        os.close(fd)
        assert track_view(read_tracks(state_dir)) == expected
        reopened = Store.open(state_dir)
        assert track_view(reopened.all()) == expected
        assert reopened.flag("paused") is True
        reopened.close()
        backup = json.loads((state_dir / f"{STORE_FILE}.v2.bak").read_text())
        assert backup == data
    assert finished_in_child < 15, "hardly a kill landed inside the migration"


def test_a_migrated_store_is_never_migrated_again_from_its_backup(tmp_path: Path) -> None:
    """store.json.v2.bak stays beside the migrated store: later opens, crashes mid-open and
    readers never take it (or the v2 data) over what the store holds now."""
    shutil.copy(DATA / "store-v2.json", tmp_path / STORE_FILE)
    store = Store.open(tmp_path)
    newer = {t.title: t for t in store.all()}
    store.transition(newer["Sketch"].id, State.RELEASED, note="newer than the backup")
    store.transition(newer["Night Drive"].id, State.PUBLISHED, note="taken private")
    store.delete(newer["Old Demo"].id)
    added = store.insert(make_track("After migration", 5))
    expected = view(store.all())
    store.close()
    backup = (tmp_path / f"{STORE_FILE}.v2.bak").read_bytes()
    rng = random.Random(5)
    for _ in range(10):
        pid, fd = fork_child(_opener, tmp_path)
        assert os.read(fd, 3) == b"go\n"
        time.sleep(rng.uniform(0, 0.01))
        kill(pid)
        os.close(fd)
        assert view(read_tracks(tmp_path)) == expected
        assert view(Store.open(tmp_path).all()) == expected
    assert (tmp_path / f"{STORE_FILE}.v2.bak").read_bytes() == backup
    assert added.id in {d["id"] for d in read_docs(tmp_path)}


# --- journals edited by hand, or cut short in the middle --------------------------------------


@pytest.mark.parametrize("name", [ARCHIVE_FILE, HISTORY_FILE])
def test_a_journal_saved_without_its_last_newline_loses_nothing(tmp_path: Path, name: str) -> None:
    """An editor that saves without a final newline (or a crash that cut exactly the newline):
    the last line is a whole record, not a line cut short, and must not be thrown away."""
    store = Store.open(tmp_path)
    for i in range(3):
        published(store, f"Done {i}", i)
    store.close()
    expected = view(read_tracks(tmp_path))
    path = tmp_path / name
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert view(read_tracks(tmp_path)) == expected
    assert len(read_status(tmp_path)) == 3
    reopened = Store.open(tmp_path)
    assert view(reopened.all()) == expected
    # What is appended next starts on a line of its own.
    first = reopened.all()[0]
    reopened.transition(first.id, State.RELEASED, note="after the edit")
    reopened.close()
    again = Store.open(tmp_path)
    assert len(again.all()) == 3
    got = again.get(first.id)
    assert got is not None and got.state == State.RELEASED
    assert got.history[-1].note == "after the edit"
    assert len(got.history) == len(expected[first.id][1]) + 1


@pytest.mark.parametrize("name", [ARCHIVE_FILE, HISTORY_FILE])
def test_a_broken_line_in_the_middle_names_the_file_and_the_line_and_loses_nothing(
    tmp_path: Path, name: str
) -> None:
    """A line in the middle that is not a record (disk trouble, an edit gone wrong): opening
    refuses with a message that names the file and the line, says what to do without telling
    the producer to throw away every other record in the file, and changes nothing on disk."""
    store = Store.open(tmp_path)
    for i in range(3):
        published(store, f"Done {i}", i)
    store.close()
    path = tmp_path / name
    text = path.read_text().splitlines(keepends=True)
    text[1] = text[1][: len(text[1]) // 2] + "\n"
    path.write_text("".join(text))
    before = {n: (tmp_path / n).read_bytes() for n in FILES}
    attempts: list[Callable[[], object]] = [
        lambda: Store.open(tmp_path),
        lambda: read_tracks(tmp_path),
    ]
    if name == ARCHIVE_FILE:
        attempts.append(lambda: read_status(tmp_path))
    else:
        assert len(read_status(tmp_path)) == 3  # status reads no history
    for attempt in attempts:
        with pytest.raises(StoreError) as caught:
            attempt()
        message = str(caught.value)
        assert str(path) in message and "line 2" in message
        assert "move this file away" not in message, message
        assert "delete line 2" in message or "remove line 2" in message, message
    assert {n: (tmp_path / n).read_bytes() for n in FILES} == before


def test_a_store_json_v2_put_back_over_a_used_v3_store_is_not_migrated_over_its_journals(
    tmp_path: Path,
) -> None:
    """A backup of the v2 era put back as store.json (by hand, by a restore tool) beside the
    journals of a store used since: the journals hold records the v2 file never had (tracks
    released since). Migrating it again must not wipe them: they are kept beside it."""
    shutil.copy(DATA / "store-v2.json", tmp_path / STORE_FILE)
    store = Store.open(tmp_path)
    newer = published(store, "Released since the migration", 7)
    store.transition(newer.id, State.RELEASED, note="public")
    store.close()
    journals = {name: (tmp_path / name).read_bytes() for name in (ARCHIVE_FILE, HISTORY_FILE)}
    shutil.copy(tmp_path / f"{STORE_FILE}.v2.bak", tmp_path / STORE_FILE)  # put back
    Store.open(tmp_path).close()
    kept = {
        name: [p.read_bytes() for p in tmp_path.glob(f"{name}*.bak")]
        for name in (ARCHIVE_FILE, HISTORY_FILE)
    }
    for name, content in journals.items():
        assert content in kept[name], f"{name} of the newer store was migrated over"


def test_a_second_migration_keeps_a_backup_of_what_it_migrated(tmp_path: Path) -> None:
    """An older store.json.v2.bak is in the way (an earlier migration, then the v2 file used
    again): the v2 data migrated now must still be kept, not only the older backup."""
    shutil.copy(DATA / "store-v2.json", tmp_path / STORE_FILE)
    Store.open(tmp_path).close()
    older_backup = (tmp_path / f"{STORE_FILE}.v2.bak").read_bytes()
    # Back to v2 for a while: the v2 file gets a new track.
    data = json.loads(older_backup)
    extra = json.loads(json.dumps(data["tracks"]["2"]))
    extra.update(id="00000000000a", title="Made on v2 again", audio_path="/m/again.wav")
    data["tracks"]["7"] = extra
    for name in FILES:
        (tmp_path / name).unlink()
    (tmp_path / STORE_FILE).write_text(json.dumps(data))
    store = Store.open(tmp_path)
    assert "Made on v2 again" in {t.title for t in store.all()}
    store.close()
    backups = [json.loads(p.read_text()) for p in tmp_path.glob(f"{STORE_FILE}.v2*.bak")]
    assert data in backups, "the v2 data just migrated has no backup"
    assert json.loads(older_backup) in backups, "the older backup was overwritten"


# --- two tracks on one path -------------------------------------------------------------------


def test_the_track_found_at_a_path_is_the_one_a_restart_finds(tmp_path: Path) -> None:
    """A removed track and the new export made where it was share a path; so do a track and
    its copy before the copy is deleted. Whatever changes, the store finds the live one there,
    and the one it finds is the one it finds after a restart."""
    store = Store.open(tmp_path)
    old = store.insert(make_track("Night Drive", 1))
    store.transition(old.id, State.REMOVED, note="removed by the producer")
    path = Path(old.audio_path)
    new = store.insert(make_track("Night Drive", 2))  # exported again, other audio
    assert store.by_audio_path(path).id == new.id  # type: ignore[union-attr]
    # Any change to the removed record (removed on SoundCloud too, its stat taken again).
    store.transition(old.id, State.REMOVED, note="deleted on SoundCloud too")
    assert store.by_audio_path(path).id == new.id, "a removed record hid the live one"  # type: ignore[union-attr]
    # Two records on one path, the newer one deleted: the other is still found there.
    first = store.insert(Track(title="Shared", audio_path="/music/shared.wav"))
    second = store.insert(Track(title="Shared copy", audio_path="/music/shared.wav"))
    store.delete(second.id)
    found = store.by_audio_path(Path("/music/shared.wav"))
    assert found is not None and found.id == first.id, "deleting one record lost the path"
    # Two live records on one path: the same one before and after a restart, however they
    # changed meanwhile.
    a = store.insert(Track(title="A", audio_path="/music/both.wav"))
    store.insert(Track(title="B", audio_path="/music/both.wav"))
    store.update(a.id, lambda t: setattr(t, "attempts", 1))
    paths = [path, Path("/music/shared.wav"), Path("/music/both.wav")]
    now = [getattr(store.by_audio_path(p), "id", None) for p in paths]
    reopened = Store.open(tmp_path)
    assert [getattr(reopened.by_audio_path(p), "id", None) for p in paths] == now


# --- listeners that raise, block, or write back -----------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.heard: list[tuple[str | None, str | None]] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self.heard.append((event.before, event.after))


def _with_bus(tmp_path: Path) -> tuple[Store, EventBus]:
    store = Store.open(tmp_path)
    store.events = EventBus()
    return store, store.events


def test_a_listener_that_writes_back_does_not_reorder_what_the_others_hear(
    tmp_path: Path,
) -> None:
    """A listener that reacts to a change by changing the track again (the dashboard's 'retry',
    an automation): every listener hears the two changes in the order they were made."""
    store, bus = _with_bus(tmp_path)
    track = store.insert(make_track("Reentrant"))

    def automation(event: Event) -> None:
        if isinstance(event, StateChanged) and event.after == State.BUILDING:
            store.transition(event.track_id, State.READY, note="built at once")

    recorder = Recorder()
    bus.subscribe(automation)
    bus.subscribe(recorder)
    store.transition(track.id, State.BUILDING)
    assert store.get(track.id).state == State.READY  # type: ignore[union-attr]
    assert recorder.heard == [(State.PENDING, State.BUILDING), (State.BUILDING, State.READY)]


def test_changes_from_two_threads_are_heard_in_the_order_they_were_made(tmp_path: Path) -> None:
    """Two threads change one track one after the other, and the first is still telling its
    listeners (a slow one first: a D-Bus call, a preempted thread) when the second is done. The
    store's lock is not held meanwhile (the second thread gets through), and every listener
    hears the first change before the second."""
    store, bus = _with_bus(tmp_path)
    track = store.insert(make_track("Raced"))
    store.transition(track.id, State.BUILDING)
    second_done = threading.Event()

    def slow(event: Event) -> None:
        if isinstance(event, StateChanged) and event.after == State.READY:
            # Reads the store from inside the event, and waits for the other thread's change.
            assert store.get(event.track_id) is not None
            second_done.wait(10)

    recorder = Recorder()
    bus.subscribe(slow)
    bus.subscribe(recorder)

    def second() -> None:
        while store.get(track.id).state != State.READY:  # type: ignore[union-attr]
            time.sleep(0.001)
        store.transition(track.id, State.UPLOADING)
        second_done.set()

    other = threading.Thread(target=second)
    other.start()
    store.transition(track.id, State.READY)
    other.join(10)
    assert second_done.is_set(), "the second change waited for a listener of the first"
    assert recorder.heard == [(State.BUILDING, State.READY), (State.READY, State.UPLOADING)]


def test_a_listener_that_raises_or_blocks_forever_never_blocks_the_store(tmp_path: Path) -> None:
    """A listener that raises is logged and the others still hear; one that never returns holds
    only the thread it was called in: other threads read and write the store meanwhile."""
    store, bus = _with_bus(tmp_path)
    track = store.insert(make_track("Stuck"))
    release = threading.Event()

    def broken(event: Event) -> None:
        raise RuntimeError("a listener with a bug")

    def stuck(event: Event) -> None:
        if isinstance(event, StateChanged) and event.after == State.BUILDING:
            release.wait(30)

    recorder = Recorder()
    for listener in (broken, stuck, recorder):
        bus.subscribe(listener)
    blocked = threading.Thread(target=store.transition, args=(track.id, State.BUILDING))
    blocked.start()
    try:
        while store.get(track.id).state != State.BUILDING:  # type: ignore[union-attr]
            time.sleep(0.001)
        other = store.insert(make_track("Meanwhile", 1))
        store.transition(other.id, State.INVALID, note="written while a listener is stuck")
        store.set_flag("paused", True)
        assert len(store.all()) == 2
        assert len(read_status(tmp_path)) == 2  # and by other processes
    finally:
        release.set()
        blocked.join(10)
    assert not blocked.is_alive()
    assert (State.PENDING, State.BUILDING) in recorder.heard
    assert (State.PENDING, State.INVALID) in recorder.heard


# --- a full disk ------------------------------------------------------------------------------


def _no_space(*args: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_delete_on_a_full_disk_is_what_memory_says_after_a_compaction_and_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive takes the delete's line (the commit), then store.json cannot be rewritten
    (the disk is full: the archive's line was small, store.json's rewrite is not). Either the
    delete failed (it raises, and the track is still there) or it happened (it is gone): in
    memory, after the journals are compacted, and after a restart alike."""
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 5)
    store, bus = _with_bus(tmp_path)
    recorder = Recorder()
    bus.subscribe(recorder)
    done = published(store, "Done")
    gone = store.insert(make_track("Gone", 1))  # active: its record is in store.json
    with monkeypatch.context() as full:
        full.setattr(AtomicJSONStorage, "write", _no_space)
        try:
            store.delete(gone.id)
            raised = False
        except OSError:
            raised = True
    assert (store.get(gone.id) is not None) == raised, "a delete that raised changed the store"
    assert ((State.PENDING, None) in recorder.heard) != raised, "the delete was not heard"
    for i in range(12):  # enough for the journals to be compacted
        store.transition(done.id, State.RELEASED if i % 2 == 0 else State.PUBLISHED)
    expected = view(store.all())
    store.close()
    assert view(read_tracks(tmp_path)) == expected
    assert view(Store.open(tmp_path).all()) == expected, "the deleted track came back"


# --- the clock ----------------------------------------------------------------------------------


def _ordered(tracks: list[Track]) -> list[str]:
    """As the scheduler and ingest order tracks."""
    return [t.id for t in sorted(tracks, key=lambda t: (t.created_at, t.id))]


def test_a_creation_time_without_an_offset_breaks_neither_status_nor_the_scheduler(
    tmp_path: Path,
) -> None:
    """Release OS's v1 files may hold times as datetime.now().isoformat() writes them (no
    offset); a caller may hand the store such a time too. Mixed with the store's own (UTC)
    times they must still sort (a naive time is the producer's wall clock), in status (the
    daemon's and the reader's alike) and wherever tracks are put in order of creation."""
    v1 = json.loads((DATA / "store-v1.json").read_text())
    v1["tracks"]["2"]["created"] = "2025-03-02T09:00:00"
    (tmp_path / STORE_FILE).write_text(json.dumps(v1))
    assert len(read_status(tmp_path)) == 3  # not migrated yet: migrated in memory
    store = Store.open(tmp_path)
    store.insert(Track(title="Naive", audio_path="/m/n.wav", created_at=dt.datetime(2025, 3, 1)))
    # And a record stored so by an earlier releaseosd, in store.json and in the archive.
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    for doc in raw["tracks"].values():
        doc["created_at"] = doc["created_at"][:19]
    store.close()
    AtomicJSONStorage(tmp_path / STORE_FILE).write(raw)
    lines = (tmp_path / ARCHIVE_FILE).read_text().splitlines()
    last = json.loads(lines[-1])
    last["created_at"] = last["head"][1] = last["created_at"][:19]
    (tmp_path / ARCHIVE_FILE).write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    store = Store.open(tmp_path)
    rows = [json.loads(t)["id"] for t in store.status_texts()]
    assert rows == [json.loads(t)["id"] for t in read_status(tmp_path)]
    assert len(rows) == 4
    assert _ordered(store.all()) and _ordered(read_tracks(tmp_path))
    assert all(t.created_at.tzinfo is not None for t in store.all())


def test_a_clock_that_goes_back_keeps_every_order_the_same_in_the_daemon_and_the_reader(
    tmp_path: Path,
) -> None:
    """The clock set back (NTP after a dead RTC battery, a VM restored): tracks made later have
    earlier times. Nothing is lost, the records keep their order of insertion, and status (the
    daemon's and the reader's) orders by creation time, ties by id, the same in both."""
    store = Store.open(tmp_path)
    start = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    made = []
    for i, minutes in enumerate([0, -60, -60, 5, -600, 0]):
        track = make_track(f"T{i}", i, created_at=start + dt.timedelta(minutes=minutes))
        made.append(store.insert(track).id)
        if i % 2:
            for state in TO_PUBLISHED:
                store.transition(track.id, state)
    assert [t.id for t in store.all()] == made
    assert [t.id for t in Store.open(tmp_path).all()] == made
    by_time = _ordered(store.all())
    assert [json.loads(t)["id"] for t in store.status_texts()] == by_time
    assert [json.loads(t)["id"] for t in read_status(tmp_path)] == by_time


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a disk that really fills up (needs root, as in CI containers)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> None:
    st = os.statvfs(disk)
    with (disk / "filler").open("wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


def test_changes_on_a_really_full_disk_fail_loudly_and_leave_the_files_whole(
    tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of change, with a few bytes to a few KiB left: each one either fails with
    ENOSPC and changes nothing, or is made; memory, a reader and a restart always agree."""
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 20)
    state_dir = tiny_disk / "state"
    store = Store.open(state_dir)
    for i in range(6):
        published(store, f"Done {i}", i)
    rng = random.Random(11)
    failed: dict[str, int] = {}
    for step in range(150):
        _fill(tiny_disk, rng.randrange(0, 6000))
        op = rng.choice(["move", "move", "note", "insert", "delete", "flag"])
        before = view(store.all())
        pad = "x" * rng.randrange(0, 1500)
        try:
            if op == "move":
                ids = [t.id for t in store.all() if t.state in (State.PUBLISHED, State.SCHEDULED)]
                track = store.get(rng.choice(ids))
                assert track is not None
                to = State.SCHEDULED if track.state == State.PUBLISHED else State.PUBLISHED
                store.transition(track.id, to, note=f"step {step} {pad}")
            elif op == "note":
                track = rng.choice(store.all())
                store.transition(track.id, track.state, note=f"step {step} {pad}")
            elif op == "insert":
                store.insert(make_track(f"New {step}", step, metadata={"pad": pad}))
            elif op == "delete":
                new = [t.id for t in store.all() if t.title.startswith("New")]
                if new:
                    store.delete(rng.choice(new))
            else:
                store.set_flag("paused", not store.flag("paused"))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            failed[op] = failed.get(op, 0) + 1
            assert view(store.all()) == before, f"a failed {op} changed the store"
        (tiny_disk / "filler").unlink(missing_ok=True)
        now = view(store.all())
        assert view(read_tracks(state_dir)) == now, f"step {step}: {op}"
        assert len(read_status(state_dir)) == len(now)
    paused = store.flag("paused")
    store.close()
    assert not list(state_dir.glob(".store-*.tmp"))
    reopened = Store.open(state_dir)
    assert view(reopened.all()) == now and reopened.flag("paused") == paused
    assert sum(failed.values()) > 20 and len(failed) >= 4, failed


def test_a_track_that_goes_back_and_forth_many_times_keeps_the_files_small_and_its_revs_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_MIN_LINES", 50)
    store = Store.open(tmp_path)
    others = [published(store, f"Done {i}", i).id for i in range(3)]
    track = published(store, "Back and forth", 9)
    revs: list[int] = []
    # published -> scheduled (active again) -> released -> published -> ...
    cycle = (State.SCHEDULED, State.RELEASED, State.PUBLISHED)
    for i in range(600):
        store.transition(track.id, cycle[i % 3], note=str(i))
        archive = [json.loads(x) for x in (tmp_path / ARCHIVE_FILE).read_text().splitlines()]
        assert len(archive) <= 2 * 50 + 4
        mine = [line["rev"] for line in archive if line["id"] == track.id]
        assert mine == sorted(set(mine)), "archive lines of one track out of order"
        revs.extend(mine[-1:])
        if i % 97 == 0:
            got = Store.open(tmp_path).get(track.id)
            assert got is not None and got.history[-1].note == str(i)
    assert revs == sorted(revs)
    assert (tmp_path / HISTORY_FILE).read_text().count("\n") <= 2 * max(50, 200 + 3 * 6) + 1
    expected = view(store.all())
    store.close()
    assert view(Store.open(tmp_path).all()) == expected == view(read_tracks(tmp_path))
    rows = {json.loads(t)["id"]: json.loads(t)["state"] for t in read_status(tmp_path)}
    assert rows == {**{i: "published" for i in others}, track.id: "published"}


def test_a_huge_history_for_one_track_is_capped_everywhere(tmp_path: Path) -> None:
    """Thousands of entries for one track (a sidecar autosaved every second for an hour): the
    store keeps HISTORY_LIMIT of them, in memory, on disk (compaction) and for readers."""
    limit = store_module.HISTORY_LIMIT
    store = Store.open(tmp_path)
    track = make_track("Chatty")
    track.history = [
        HistoryEntry(
            at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), state=State.PENDING, note=f"old {i}"
        )
        for i in range(1500)
    ]
    store.insert(track)
    assert len(store.get(track.id).history) == limit  # type: ignore[union-attr]
    for i in range(1500):
        store.transition(track.id, State.PENDING, note=f"edit {i}")
    lines = (tmp_path / HISTORY_FILE).read_text().count("\n")
    assert lines <= 2 * max(store_module.COMPACT_MIN_LINES, limit) + 1
    for got in (store.get(track.id), Store.open(tmp_path).get(track.id), read_tracks(tmp_path)[0]):
        assert got is not None
        assert [h.note for h in got.history] == [f"edit {i}" for i in range(1500 - limit, 1500)]


def test_the_store_opens_on_a_full_disk_after_a_move_left_an_old_copy_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A track finished while the disk was full: the archive took its line, store.json could
    not be rewritten without it (an older copy stays there, and loses). The daemon restarted
    with the disk still full must open the store (the copy goes once there is room), not die at
    start, again and again, until systemd gives up."""
    store = Store.open(tmp_path)
    track = store.insert(make_track("Finished on a full disk"))
    for state in TO_PUBLISHED[:-1]:
        store.transition(track.id, state)
    with monkeypatch.context() as full:
        full.setattr(AtomicJSONStorage, "write", _no_space)
        store.transition(track.id, State.PUBLISHED)  # committed by the archive's line
    store.close()
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert [d["id"] for d in raw["tracks"].values()] == [track.id], "no old copy was left"
    with monkeypatch.context() as full:
        full.setattr(AtomicJSONStorage, "write", _no_space)
        reopened = Store.open(tmp_path)
        assert [t.state for t in reopened.all()] == [State.PUBLISHED]
        assert [json.loads(t)["state"] for t in reopened.status_texts()] == ["published"]
    # With room again, the next change clears the old copy.
    other = reopened.insert(make_track("Later", 1))
    reopened.close()
    raw = json.loads((tmp_path / STORE_FILE).read_text())
    assert [d["id"] for d in raw["tracks"].values()] == [other.id]
    assert [t.state for t in Store.open(tmp_path).all()] == [State.PUBLISHED, State.PENDING]


def test_a_reader_never_gives_a_track_history_its_record_does_not_have_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_tracks reads store.json, then the archive, then the history. A compaction rewrites
    the history first and the archive next; a reader that reads the history between the two
    (after a change it did not see in store.json) got the new entry, relabelled by the
    compaction, on the older record: a track whose history says a state its record does not."""
    store = Store.open(tmp_path)
    for i in range(3):
        published(store, f"Done {i}", i)
    busy = store.insert(make_track("Busy", 9))
    store.transition(busy.id, State.BUILDING)
    real_read = store_module._read_journal
    real_replace = store_module.Journal.replace
    hooked = False

    def archive_not_yet(self: store_module.Journal, objects: Any) -> None:
        if self.path.name != ARCHIVE_FILE:
            real_replace(self, objects)

    def read_journal(path: Path) -> Any:
        nonlocal hooked
        if path.name == ARCHIVE_FILE and not hooked:
            hooked = True
            # The reader has read store.json; the owner now changes the track and compacts,
            # and the reader comes in between the history's rewrite and the archive's.
            store.transition(busy.id, State.READY, note="built")
            with monkeypatch.context() as m:
                m.setattr(store_module.Journal, "replace", archive_not_yet)
                store.compact()
        return real_read(path)

    monkeypatch.setattr(store_module, "_read_journal", read_journal)
    tracks = {t.id: t for t in read_tracks(tmp_path)}
    assert hooked
    got = tracks[busy.id]
    assert got.history[-1].state == got.state, (got.state, [h.state for h in got.history])
