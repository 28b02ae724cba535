"""The store: TinyDB and two append-only journals, the single source of truth for every track.

Schema 3 keeps three files in the state dir, so that a change costs what it touches, not what
the catalogue holds:

- `store.json` (TinyDB): the *active* tracks, those not finished (`states.FINISHED`), and the
  meta table (schema version, flags). It holds the work in progress only, so rewriting it whole
  on each change stays cheap however many tracks are done.
- `archive.jsonl`: the finished tracks (published, released, removed), one JSON line per
  record version, only ever appended to. A finished track that changes again gets a new line;
  one that becomes active again moves back into `store.json`. A `"deleted": true` line is a
  record deleted. Each line ends with a head (rev, creation time, status row): all that
  `releaseosd status` reads of a finished track.
- `history.jsonl`: every history entry, one JSON line naming its track and the record version
  it belongs to, instead of a list inside each record.

Every record carries `rev` (its version: one more on each write; of two copies of one track the
higher rev is the track), `born` (the rev it was inserted with: an earlier record of the same
id has no history in it) and `seq` (the order of insertion, the order of every list returned).

Crash safety. `store.json` is written by AtomicJSONStorage: a temporary file, fsynced, renamed
over the old one, then the folder fsynced; after a crash it holds the old data or the new, never
a mix (TinyDB's own JSONStorage rewrites in place). A journal line is appended and fsynced; a
line cut short by a crash (the last one, never followed by another) is ignored, and the owner
truncates it on open; a last line that is a whole record without its newline (an editor's save)
is a record, and the owner ends it. A change is written in this order: its history entry, the record in its
new place, the record out of its old place. The record's write is the commit: a history entry
newer than its track's record (a crash before the commit) is dropped on open, and a record found
in both files (a crash mid-move) is the copy with the higher rev; the other goes.

Everything is held in memory by the one process that owns the state dir, with indexes for the
lookups ingest and the scheduler make; readers that do not own it (`releaseosd status`) read
the files afresh with `read_docs` / `read_tracks`. TinyDB is not thread-safe, so every access
goes through one lock here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import gc
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from releaseosd.model.events import EventBus, StateChanged
from releaseosd.model.states import FINISHED, State, TransitionError, can_move
from releaseosd.model.track import (
    HistoryEntry,
    Track,
    compact_json,
    doc_status_row,
    status_order,
    utcnow,
)

log = logging.getLogger("releaseosd.model.store")

SCHEMA_VERSION = 3
STORE_FILE = "store.json"
ARCHIVE_FILE = "archive.jsonl"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = "releaseosd.lock"
HISTORY_LIMIT = 200
# A journal is rewritten with only what is current once more of it is stale than current (and at
# least this many lines are): the files stay within twice their live size, and a rewrite is rare.
COMPACT_MIN_LINES = 1000

_FINISHED = frozenset(state.value for state in FINISHED)
# Each archive line ends with its head: [rev, created_at, status row]. That is all `status`
# reads of a finished track (see `read_status`); the rest of the line is the record.
HEAD = "head"
_REMOVED = State.REMOVED.value

Doc = dict[str, Any]


class StoreError(Exception):
    """The store cannot be used; the message says why and what to do."""


class StateDirBusy(StoreError):
    pass


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def replace_file(path: Path, data: bytes) -> None:
    """`path` now holds `data`, or (after a crash) what it held before: never a mix."""
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=".store-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing tens of thousands of records makes as many dicts; the cycle collector would run
    over all of them again and again meanwhile, for nothing (JSON makes no cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class AtomicJSONStorage(Storage):
    """With `cache=True` the last data read or written is kept in memory: right for the one
    process that owns the state dir (nobody else writes the file), and it spares re-parsing the
    whole file on every query. Readers that do not own it (the CLI's status) read afresh."""

    def __init__(self, path: str | Path, cache: bool = False, **_: Any) -> None:
        self.path = Path(path)
        self._cache_enabled = cache
        self._cached: dict[str, dict[str, Any]] | None = None

    def read(self) -> dict[str, dict[str, Any]] | None:
        if self._cached is not None:
            return self._cached
        data = self._read_file()
        if self._cache_enabled:
            self._cached = data
        return data

    def _read_file(self) -> dict[str, dict[str, Any]] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"{self.path}: the store is not valid JSON (line {exc.lineno}); it was not written "
                "by releaseosd's atomic storage. Restore it from a backup or move it away."
            ) from None
        if not isinstance(data, dict):
            raise StoreError(f"{self.path}: the store does not hold a JSON object")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        # Until the new file is safely in place, memory must not claim more than the disk has.
        self._cached = None
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        replace_file(self.path, text.encode("utf-8"))
        if self._cache_enabled:
            self._cached = data

    def close(self) -> None:
        pass


# --- journals ---------------------------------------------------------------------------------


def _line(obj: Mapping[str, Any]) -> bytes:
    # JSON escapes every newline inside a string: one object is exactly one line.
    return compact_json(obj).encode("utf-8") + b"\n"


@dataclasses.dataclass
class _Lines:
    """A journal as read: its objects and how much of the file is whole lines (the rest is a
    line a crash cut short)."""

    objects: list[Doc]
    whole: int
    raw: bytes
    ends: list[int] | None = None  # where each object's line ends, when not one per line
    # The last record is whole but its newline is not in the file (`raw` has it): an editor
    # that saves without a final newline, or a crash that cut exactly the newline.
    unterminated: bool = False

    def end_of(self, count: int) -> int:
        """Where the line of the `count`-th object ends (0: the start of the file)."""
        if count == 0:
            return 0
        if self.ends is not None:
            return self.ends[count - 1]
        pos = self.whole
        for _ in range(len(self.objects) - count):
            pos = self.raw.rfind(b"\n", 0, pos - 1) + 1
        return pos


def _terminated(raw: bytes) -> bytes:
    """The journal with its last line ended, if that line is a whole record whose newline is
    missing. A line a crash cut short never is one: no proper prefix of a JSON object is a JSON
    object. Throwing such a line away would lose a record (and, in the archive, a track)."""
    tail = raw[raw.rfind(b"\n") + 1 :]
    if tail.strip() and _is_object(tail):
        return raw + b"\n"
    return raw


def _parse_journal(path: Path, raw: bytes) -> _Lines:
    ended = _terminated(raw)
    lines = _parse_ended(path, ended)
    lines.unterminated = ended is not raw
    return lines


def _parse_ended(path: Path, raw: bytes) -> _Lines:
    # After the last newline: nothing, or a line whose write never completed.
    whole = raw.rfind(b"\n") + 1
    if not whole:
        return _Lines([], 0, raw)
    # As written, one object a line and nothing else: the whole file is one JSON array once
    # its newlines are commas (JSON escapes a newline inside a string), and is parsed at once.
    with contextlib.suppress(ValueError):
        objects = json.loads(b"[" + raw[: whole - 1].replace(b"\n", b",") + b"]")
        if len(objects) == raw.count(b"\n", 0, whole) and all(type(o) is dict for o in objects):
            return _Lines(objects, whole, raw)
    return _parse_lines(path, raw, whole)


def _parse_lines(path: Path, raw: bytes, whole: int) -> _Lines:
    """Line by line: blank lines are skipped; a line that is not a JSON object is the tail of a
    write that never completed if no record follows it, else the file is not ours."""
    objects: list[Doc] = []
    ends: list[int] = []
    segments = raw[:whole].split(b"\n")
    segments.pop()
    pos = 0
    for i, segment in enumerate(segments):
        start, pos = pos, pos + len(segment) + 1
        if not segment.strip():
            continue
        if _is_object(segment):
            objects.append(json.loads(segment))
            ends.append(pos)
            continue
        if any(_is_object(later) for later in segments[i + 1 :]):
            raise StoreError(_broken_line(path, i + 1, segment))
        return _Lines(objects, start, raw, ends)
    return _Lines(objects, whole, raw, ends)


def _broken_line(path: Path, number: int, segment: bytes) -> str:
    """What to do about a line in the middle of a journal that is not a record: only that line
    is in question, so that is what the producer is asked to deal with (moving the file away
    would lose every record in it, and with the archive every finished track)."""
    shown = segment[:60].decode("utf-8", "replace")
    what = (
        "one version of a finished track; if it was that track's only line, its export is "
        "taken for a new track"
        if path.name == ARCHIVE_FILE
        else "one history entry"
    )
    return (
        f"{path}: line {number} is not a JSON record, and records follow it (disk trouble, or "
        f"an edit gone wrong): {shown!r}{'...' if len(segment) > 60 else ''}. Nothing was "
        f"changed. Mend that line, or delete line {number} (only what it held is lost: {what}), "
        "or restore the state folder from a backup; do not move the file away, which would "
        "lose every record in it."
    )


def _is_object(segment: bytes) -> bool:
    try:
        return isinstance(json.loads(segment), dict)
    except ValueError:
        return False


def _read_journal(path: Path) -> _Lines:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = b""
    return _parse_journal(path, raw)


class Journal:
    """An append-only file of JSON lines, each append fsynced before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0  # whole lines in the file, as read and written by this process
        self._fd: int | None = None

    def read(self, repair: bool) -> _Lines:
        read = _read_journal(self.path)
        if repair and read.unterminated:
            log.warning("%s: its last line had no newline; one is added", self.path)
            fd = self._open()
            os.write(fd, b"\n")
            os.fsync(fd)
        if repair and read.whole < len(read.raw):
            log.warning(
                "%s: ignoring the last %d bytes, a line a crash cut short",
                self.path,
                len(read.raw) - read.whole,
            )
            self.truncate_to(read.whole)
        self.lines = len(read.objects)
        return read

    def _open(self) -> int:
        if self._fd is None:
            new = not self.path.exists()
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            if new:
                _fsync_folder(self.path.parent)
        return self._fd

    def append(self, objects: Iterable[Mapping[str, Any]]) -> int:
        """Append one line per object, durably; the file's size before, to undo it with."""
        lines = [_line(o) for o in objects]
        fd = self._open()
        before = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(b"".join(lines))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            # Half a line must never be followed by another (it would read as corruption).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise
        self.lines += len(lines)
        return before

    def truncate_to(self, size: int) -> None:
        fd = self._open()
        os.ftruncate(fd, size)
        os.fsync(fd)

    def replace(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """The journal rewritten to hold exactly these lines (atomically)."""
        lines = [_line(o) for o in objects]
        replace_file(self.path, b"".join(lines))
        self.close()
        self.lines = len(lines)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --- reading the three files ------------------------------------------------------------------


def _rev(doc: Mapping[str, Any]) -> int:
    rev = doc.get("rev")
    return rev if isinstance(rev, int) else 0


def _is_finished(doc: Mapping[str, Any]) -> bool:
    return doc.get("state") in _FINISHED


@dataclasses.dataclass
class _Resolved:
    """What the files say, each track once."""

    docs: dict[str, Doc]  # the winning record of each track, in insertion order
    active: dict[str, int]  # track id -> TinyDB document id, for winners kept in store.json
    stale: list[int]  # TinyDB documents that lost to a newer copy (a crash mid-move)
    gone: dict[str, int]  # deleted track id -> the rev of its deletion
    top: dict[str, int]  # highest rev seen of each track id


def _resolve(active_docs: Mapping[int, Doc], archive: list[Doc]) -> _Resolved:
    """Each track's newest copy: the highest rev wins; between a copy in store.json and one in
    the archive with the same rev (never written so, but deterministic) the active one."""
    latest: dict[str, Doc] = {}
    top: dict[str, int] = {}
    for line in archive:
        line.pop(HEAD, None)
        track_id = line.get("id")
        if not isinstance(track_id, str):
            continue
        rev = _rev(line)
        top[track_id] = max(top.get(track_id, 0), rev)
        old = latest.get(track_id)
        if old is None or rev >= _rev(old):
            latest[track_id] = line
    active: dict[str, int] = {}
    stale: list[int] = []
    chosen: dict[str, Doc] = {}
    for doc_id, doc in active_docs.items():
        track_id = str(doc.get("id"))
        rev = _rev(doc)
        top[track_id] = max(top.get(track_id, 0), rev)
        other = latest.get(track_id)
        if other is not None and _rev(other) > rev:
            stale.append(doc_id)
            continue
        if track_id in active:
            # Two copies in store.json (never written so): the newer, else the later one.
            if (_rev(chosen[track_id]), active[track_id]) > (rev, doc_id):
                stale.append(doc_id)
                continue
            stale.append(active[track_id])
        active[track_id] = doc_id
        chosen[track_id] = doc
    gone: dict[str, int] = {}
    for track_id, line in latest.items():
        if track_id in chosen:
            continue
        if line.get("deleted"):
            gone[track_id] = _rev(line)
        else:
            chosen[track_id] = line
    docs = dict(sorted(chosen.items(), key=lambda item: _seq(item[1])))
    return _Resolved(docs, active, stale, gone, top)


def _seq(doc: Mapping[str, Any]) -> int:
    seq = doc.get("seq")
    return seq if isinstance(seq, int) else 0


def _entry_of(line: Doc) -> Doc:
    """A history line as the entry it records (without its track id and rev)."""
    line.pop("id", None)
    line.pop("rev", None)
    return line


def _histories(
    lines: list[Doc], docs: Mapping[str, Doc], top: dict[str, int]
) -> tuple[dict[str, list[Doc]], int]:
    """Each track's history entries, oldest first, at most HISTORY_LIMIT; and how many lines
    they are. A line belongs to a track's record when its rev lies between the record's birth
    and the record's rev."""
    history: dict[str, list[Doc]] = {}
    for line in lines:
        track_id = line.get("id")
        rev = _rev(line)
        if not isinstance(track_id, str):
            continue
        if rev > top.get(track_id, 0):
            top[track_id] = rev
        doc = docs.get(track_id)
        if doc is None or not (_born(doc) <= rev <= _rev(doc)):
            continue
        entries = history.get(track_id)
        if entries is None:
            history[track_id] = entries = []
        entries.append(_entry_of(line))
    live = 0
    for entries in history.values():
        del entries[:-HISTORY_LIMIT]
        live += len(entries)
    return history, live


def _born(doc: Mapping[str, Any]) -> int:
    born = doc.get("born")
    return born if isinstance(born, int) else 0


def _uncommitted_tail(lines: list[Doc], docs: Mapping[str, Doc], gone: Mapping[str, int]) -> int:
    """How many of the last history lines belong to no record: a change whose record was never
    written (a crash between the two writes). Only the last can be; they are dropped."""
    count = 0
    for line in reversed(lines):
        track_id = line.get("id")
        doc = docs.get(track_id) if isinstance(track_id, str) else None
        if doc is not None:
            committed = _rev(doc)
        elif isinstance(track_id, str) and track_id in gone:
            committed = gone[track_id]
        else:
            committed = -1
        if _rev(line) <= committed:
            break
        count += 1
    return count


# --- migrations -------------------------------------------------------------------------------
# Each of MIGRATIONS takes the raw TinyDB data of version N and returns version N+1, up to
# version 2; `_split_v2` turns that into the three files of version 3. They run by themselves
# on open; the old file is kept beside the new ones as store.json.vN.bak (store.json.vN.2.bak,
# ... when an older backup is in the way), and journals that hold more than a migration cut
# short could have left are kept as archive.jsonl.v3.bak and history.jsonl.v3.bak.


def _migrate_1_to_2(data: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """v1 (Release OS's layout): 'status', 'file', flat SoundCloud fields, no history."""
    status_map = {
        "new": "pending",
        "queued": "ready",
        "uploading": "uploading",
        "uploaded": "published",
        "live": "released",
        "error": "failed",
        "bad": "invalid",
    }
    tracks_out: dict[str, Any] = {}
    for doc_id, old in data.get("tracks", {}).items():
        state = status_map.get(str(old.get("status", "new")), "pending")
        created = old.get("created") or utcnow().isoformat()
        track = Track(
            id=str(old.get("id") or doc_id),
            title=str(old.get("title") or Path(str(old.get("file", ""))).stem),
            audio_path=str(old.get("file", "")),
            sha256=old.get("hash"),
            sidecar_path=old.get("sidecar"),
            metadata=dict(old.get("meta") or {}),
            state=State(state),
            attempts=int(old.get("tries") or 0),
            last_error=old.get("error"),
            release_at=old.get("release_at"),
            created_at=created,
            updated_at=created,
        )
        track.soundcloud.urn = (
            f"soundcloud:tracks:{old['sc_id']}" if old.get("sc_id") is not None else None
        )
        track.soundcloud.permalink_url = old.get("sc_url")
        track.soundcloud.sharing = old.get("sharing")
        track.history.append(HistoryEntry(at=created, state=track.state, note="migrated from v1"))
        tracks_out[doc_id] = track.model_dump(mode="json")
    return {"tracks": tracks_out, "meta": {"1": {"schema_version": 2}}}


MIGRATIONS: dict[int, Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]] = {
    1: _migrate_1_to_2,
}


def _split_v2(
    data: dict[str, dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], list[Doc], list[Doc]]:
    """v2 (one TinyDB file, history inside each record) → v3: store.json's data (active tracks
    and meta), the archive's lines and the history's lines."""
    newest: dict[str, tuple[int, Doc]] = {}
    for n, (doc_id, doc) in enumerate((data.get("tracks") or {}).items()):
        seq = int(doc_id) if str(doc_id).isdigit() else n + 1
        track_id = str(doc.get("id") or doc_id)
        if track_id not in newest or newest[track_id][0] < seq:
            newest[track_id] = (seq, doc)
    active: dict[str, Doc] = {}
    archive: list[Doc] = []
    history: list[Doc] = []
    for track_id, (seq, old) in sorted(newest.items(), key=lambda item: item[1][0]):
        doc = {k: v for k, v in old.items() if k != "history"}
        doc.update(id=track_id, rev=1, born=1, seq=seq)
        for entry in (old.get("history") or [])[-HISTORY_LIMIT:]:
            history.append({"id": track_id, "rev": 1, **_compact_entry(entry)})
        if _is_finished(doc):
            archive.append(_archive_line(doc))
        else:
            active[str(seq)] = doc
    meta = {k: dict(v) for k, v in (data.get("meta") or {}).items()}
    for doc in meta.values():
        if "schema_version" in doc:
            doc["schema_version"] = SCHEMA_VERSION
            break
    else:
        meta[str(len(meta) + 1)] = {"schema_version": SCHEMA_VERSION}
    return {"tracks": active, "meta": meta}, archive, history


def _compact_entry(entry: Mapping[str, Any]) -> Doc:
    """A history entry without the fields that say nothing (no previous state, no note)."""
    return {
        k: v
        for k, v in entry.items()
        if not ((k == "previous" and v is None) or (k == "note" and v == ""))
    }


def _version_of(data: dict[str, dict[str, Any]]) -> int:
    meta = data.get("meta") or {}
    for doc in meta.values():
        if "schema_version" in doc:
            return int(doc["schema_version"])
    # Release OS's v1 files had no meta table at all.
    return 1 if data.get("tracks") else SCHEMA_VERSION


def _upgrade(
    data: dict[str, dict[str, Any]], version: int
) -> tuple[dict[str, dict[str, Any]], list[Doc], list[Doc]]:
    while version < 2:
        data = MIGRATIONS[version](data)
        version += 1
    return _split_v2(data)


def _backup_names(path: Path, version: int) -> Iterator[Path]:
    """store.json.v2.bak, then store.json.v2.2.bak, store.json.v2.3.bak, ..."""
    yield path.with_name(f"{path.name}.v{version}.bak")
    n = 2
    while True:
        yield path.with_name(f"{path.name}.v{version}.{n}.bak")
        n += 1


def _keep_backup(path: Path, version: int, data: dict[str, dict[str, Any]]) -> Path:
    """A copy of the store about to be migrated, unless one is kept already (a migration cut
    short and run again). An older backup in the way (an earlier migration, then the old file
    put back and used) is left as it is: this one gets the next name."""
    for backup in _backup_names(path, version):
        if not backup.exists():
            AtomicJSONStorage(backup).write(data)
            if not backup.name.endswith(f".v{version}.bak"):
                log.warning("store: %s is kept as %s (an older backup is in the way)", path, backup)
            return backup
        try:
            if AtomicJSONStorage(backup).read() == data:
                return backup
        except StoreError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _set_aside_if_newer(path: Path, migrated: set[str]) -> None:
    """A migration replaces the journals: what a migration cut short left there may go, but a
    journal holding anything else (a store used since, its store.json then replaced by an old
    one: a backup put back) is renamed aside, not migrated over. A migration writes only rev 1
    lines of the tracks it migrates."""
    if not path.exists():
        return
    try:
        lines = _read_journal(path).objects
    except StoreError:
        lines = [{}]  # not even readable: not ours to throw away either
    if all(_rev(line) == 1 and line.get("id") in migrated for line in lines):
        return
    aside = next(p for p in _backup_names(path, SCHEMA_VERSION) if not p.exists())
    os.replace(path, aside)
    _fsync_folder(path.parent)
    log.warning(
        "store: %s holds records newer than the store.json being migrated (an old store.json "
        "put back?); it is kept as %s, not migrated over",
        path,
        aside,
    )


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer releaseosd (schema {version}, this one "
            f"knows {SCHEMA_VERSION}); upgrade releaseosd."
        )


# --- readers that do not own the state dir ----------------------------------------------------


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _active_of(data: Mapping[str, Any]) -> dict[int, Doc]:
    return {int(k): v for k, v in (data.get("tracks") or {}).items()}


def _read_files(state_dir: Path, with_history: bool) -> tuple[dict[int, Doc], list[Doc], list[Doc]]:
    """The three files as they are, without the lock and without writing: a store not migrated
    yet is migrated in memory only. The owner may write meanwhile: every write leaves each file
    whole, and is made in the order that keeps a reader reading store.json first from missing a
    track; if a journal read is rewritten meanwhile (compaction: the history first, then the
    archive), all are read again. A compaction relabels history entries, so the history must
    be checked too: read between the two rewrites, it would give a record entries of a change
    the store.json read before it does not have yet."""
    journals = [state_dir / ARCHIVE_FILE, *([state_dir / HISTORY_FILE] if with_history else [])]
    for _ in range(10):
        before = [_identity(path) for path in journals]
        data = AtomicJSONStorage(state_dir / STORE_FILE).read() or {}
        version = _version_of(data) if data else SCHEMA_VERSION
        _check_version(state_dir / STORE_FILE, version)
        if version < SCHEMA_VERSION:
            data, archive, history = _upgrade(data, version)
            return _active_of(data), archive, history
        archive = _read_journal(state_dir / ARCHIVE_FILE).objects
        history = _read_journal(state_dir / HISTORY_FILE).objects if with_history else []
        if [_identity(path) for path in journals] == before:
            break
    return _active_of(data), archive, history


def read_docs(state_dir: Path) -> list[Doc]:
    """Every track's record as stored (without its history), oldest first. For readers that do
    not own the state dir (`releaseosd status`): takes no lock and never writes."""
    with _gc_paused():
        active, archive, _ = _read_files(state_dir, with_history=False)
        return list(_resolve(active, archive).docs.values())


def read_tracks(state_dir: Path) -> list[Track]:
    """Every track with its history, oldest first; like `read_docs`, for readers only."""
    with _gc_paused():
        active, archive, lines = _read_files(state_dir, with_history=True)
        resolved = _resolve(active, archive)
        history, _ = _histories(lines, resolved.docs, resolved.top)
        return [
            Track.model_validate({**doc, "history": history.get(track_id, [])})
            for track_id, doc in resolved.docs.items()
        ]


def _archive_line(doc: Doc) -> Doc:
    return {**doc, HEAD: [doc["rev"], doc["created_at"], doc_status_row(doc)]}


_HEAD_KEY = '"' + HEAD + '":['
# json's own (C) decoder of one string, from just after its opening quote.
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _archive_heads(path: Path, raw: bytes) -> dict[str, tuple[int, str | None, str]]:
    """Track id -> (rev, created_at, status row as JSON text) of each track's newest archive
    line (created_at None: deleted). Of a line as releaseosd writes it, only the head at its end
    is looked at, with string operations: `...,"head":[REV,"CREATED",{"id":"ID",...}]}`. The
    head is the line's last key, so the last `"head":[` on it is the head (a string in JSON
    cannot hold an unescaped quote). Any other line is decoded whole."""
    whole = raw.rfind(b"\n") + 1
    text = raw[:whole].decode("utf-8", "replace")
    latest: dict[str, tuple[int, str | None, str]] = {}
    pos = 0
    try:
        while pos < whole:
            eol = text.index("\n", pos)
            entry: tuple[str, tuple[int, str | None, str]] | None = _head_of(text, pos, eol)
            if entry is None:
                line = json.loads(text[pos:eol])
                track_id, rev = line["id"], _rev(line)
                if line.get("deleted"):
                    entry = (track_id, (rev, None, ""))
                else:
                    entry = (
                        track_id,
                        (rev, line["created_at"], compact_json(doc_status_row(line))),
                    )
            track_id, head = entry
            old = latest.get(track_id)
            if old is None or head[0] >= old[0]:
                latest[track_id] = head
            pos = eol + 1
    except (ValueError, TypeError, KeyError, IndexError):
        # Not as releaseosd writes it (a torn last line, a line by hand): read it all.
        latest = {}
        for line in _parse_journal(path, raw).objects:
            line.pop(HEAD, None)
            track_id, rev = line.get("id"), _rev(line)
            if isinstance(track_id, str) and (track_id not in latest or rev >= latest[track_id][0]):
                deleted = bool(line.get("deleted"))
                latest[track_id] = (
                    rev,
                    None if deleted else line["created_at"],
                    "" if deleted else compact_json(doc_status_row(line)),
                )
    return latest


def _head_of(text: str, pos: int, eol: int) -> tuple[str, tuple[int, str, str]] | None:
    at = text.rfind(_HEAD_KEY, pos, eol)
    if at < 0 or not text.endswith("]}", pos, eol):
        return None
    start = at + len(_HEAD_KEY)
    comma = text.find(",", start, eol)
    close = text.find('"', comma + 2, eol)
    if (
        comma < 0
        or close < 0
        or text[comma + 1] != '"'
        or not text.startswith(',{"id":"', close + 1)
    ):
        return None
    rev = text[start:comma]
    if not rev.isdigit():
        return None
    track_id, _ = _scanstring(text, close + 9)
    return track_id, (int(rev), text[comma + 2 : close], text[close + 2 : eol - 2])


def read_status(state_dir: Path) -> list[str]:
    """Every track's `status` row as JSON text, oldest track first. Like `read_docs`, for
    readers that do not own the state dir; of a finished track only its head is read, so
    that ten thousand of them cost a few hundredths of a second."""
    with _gc_paused():
        for _ in range(10):
            before = _identity(state_dir / ARCHIVE_FILE)
            data = AtomicJSONStorage(state_dir / STORE_FILE).read() or {}
            version = _version_of(data) if data else SCHEMA_VERSION
            _check_version(state_dir / STORE_FILE, version)
            if version < SCHEMA_VERSION:
                return [
                    compact_json(doc_status_row(d))
                    for d in sorted(read_docs(state_dir), key=status_order)
                ]
            try:
                raw = _terminated((state_dir / ARCHIVE_FILE).read_bytes())
            except FileNotFoundError:
                raw = b""
            heads = _archive_heads(state_dir / ARCHIVE_FILE, raw)
            if _identity(state_dir / ARCHIVE_FILE) == before:
                break
        rows: list[tuple[tuple[dt.datetime, str], str]] = []
        for doc in _active_of(data).values():
            track_id = str(doc.get("id"))
            head = heads.get(track_id)
            if head is None or _rev(doc) >= head[0]:
                heads.pop(track_id, None)
                rows.append((status_order(doc), compact_json(doc_status_row(doc))))
        for track_id, (_, created, text) in heads.items():
            if created is not None:
                rows.append((status_order({"created_at": created, "id": track_id}), text))
        rows.sort()
        return [text for _, text in rows]


class OwnerLock:
    """Only one daemon (or one direct CLI edit) may own a state_dir at a time."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, purpose: str = "daemon") -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StateDirBusy(
                    f"{self.path.parent} is in use by {owner}. Only one releaseosd may run per state "
                    "directory: stop the other one (releaseosd service status) or set another "
                    "state_dir."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"releaseosd {purpose} pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def prepare_state_dir(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)


def _replacing(doc: Doc) -> Callable[[MutableMapping[str, Any]], None]:
    def replace(old: MutableMapping[str, Any]) -> None:
        old.clear()
        old.update(doc)

    return replace


class _Indexes:
    """Track id sets by what ingest, the scheduler and the commands look tracks up by."""

    def __init__(self) -> None:
        self.by: dict[str, dict[Any, set[str]]] = {
            name: {}
            for name in (
                "folder",
                "named",
                "file_name",
                "urn",
                "sha256",
                "digest",
                "local_change",
                "duplicate_of",
                "inode",
                "state",
                "owing",
                "warned",
                "path",
            )
        }
        self.keys_of: dict[str, list[tuple[str, Any]]] = {}
        # Of the records on one audio path, the one found there: live before removed, then the
        # newest (as a restart finds it, whichever changed last).
        self.rank: dict[str, tuple[bool, int]] = {}

    def add(self, track_id: str, doc: Doc) -> None:
        self.discard(track_id)
        audio = str(doc.get("audio_path"))
        folder, name = os.path.split(audio)
        stem = os.path.splitext(name)[0]
        keys: list[tuple[str, Any]] = [
            ("path", audio),
            ("folder", folder),
            ("named", (folder, stem)),
            ("file_name", name),
            ("state", doc.get("state")),
        ]
        if doc.get("sha256"):
            keys.append(("sha256", doc["sha256"]))
        if doc.get("audio_digest"):
            keys.append(("digest", doc["audio_digest"]))
        if doc.get("duplicate_of"):
            keys.append(("duplicate_of", doc["duplicate_of"]))
        remote = doc.get("soundcloud")
        if isinstance(remote, dict) and remote.get("urn"):
            keys.append(("urn", remote["urn"]))
        change = doc.get("local_change")
        if isinstance(change, dict):
            keys.extend(
                ("local_change", change[k]) for k in ("sha256", "audio_digest") if k in change
            )
        stat = doc.get("audio_stat")
        if isinstance(stat, dict):
            keys.append(("inode", (stat.get("device"), stat.get("inode"))))
        sync = doc.get("sync")
        if isinstance(sync, dict) and sync.get("due_at") is not None:
            keys.append(("owing", True))
        if doc.get("warning"):
            keys.append(("warned", True))
        for name_, key in keys:
            self.by[name_].setdefault(key, set()).add(track_id)
        self.keys_of[track_id] = keys
        self.rank[track_id] = (doc.get("state") != _REMOVED, _seq(doc))

    def discard(self, track_id: str) -> None:
        for name, key in self.keys_of.pop(track_id, ()):
            ids = self.by[name].get(key)
            if ids is not None:
                ids.discard(track_id)
                if not ids:
                    del self.by[name][key]
        self.rank.pop(track_id, None)

    def path_of(self, audio: str) -> str | None:
        ids = self.by["path"].get(audio)
        return max(ids, key=lambda i: (self.rank[i], i)) if ids else None

    def get(self, name: str, key: Any) -> set[str]:
        return self.by[name].get(key, set())


class Store:
    """All reads and writes of track records. Open with `Store.open(state_dir)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_dir = path.parent
        self._lock = threading.RLock()
        # Every change of a track's state, once it is written (the daemon's bus; none: unheard).
        self.events: EventBus | None = None
        self._archive = Journal(self.state_dir / ARCHIVE_FILE)
        self._history = Journal(self.state_dir / HISTORY_FILE)
        self._migrate_if_needed()
        self._db = TinyDB(path, storage=AtomicJSONStorage, cache=True)
        self._tracks = self._db.table("tracks", cache_size=0)
        meta = self._db.table("meta")
        if not meta.all():
            meta.insert({"schema_version": SCHEMA_VERSION})
        with _gc_paused():
            self._load()

    def _load(self) -> None:
        active = {doc.doc_id: dict(doc) for doc in self._tracks.all()}
        archive = self._archive.read(repair=True).objects
        history = self._history.read(repair=True)
        resolved = _resolve(active, archive)
        # The newest copy of each track is the track: the rest are left from a crash mid-move
        # (or a move on a full disk). They lose to it whenever they are read, so on a disk still
        # full they wait for the next write rather than keep the store from opening.
        self._stale: set[int] = set(resolved.stale)
        if resolved.stale:
            log.warning("store: dropping %d copies superseded by newer ones", len(resolved.stale))
            try:
                self._drop_stale()
            except OSError as exc:
                log.warning("store: %s; they go with the next change", exc)
        cut = _uncommitted_tail(history.objects, resolved.docs, resolved.gone)
        if cut:
            log.warning("store: dropping %d history entries of a change never saved", cut)
            self._history.truncate_to(history.end_of(len(history.objects) - cut))
            del history.objects[-cut:]
            self._history.lines -= cut
        self._docs: dict[str, Doc] = resolved.docs
        self._active: dict[str, int] = resolved.active
        self._gone: dict[str, int] = resolved.gone
        self._top: dict[str, int] = resolved.top
        self._hist, self._hist_live = _histories(history.objects, self._docs, self._top)
        self._archived: set[str] = {i for i in self._docs if i not in self._active}
        self._rows: dict[str, tuple[tuple[dt.datetime, str], str]] = {}
        self._next_seq = max((_seq(d) for d in self._docs.values()), default=0) + 1
        self._indexes = _Indexes()
        for track_id, doc in self._docs.items():
            self._indexes.add(track_id, doc)
        self._compact_if_due()

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        prepare_state_dir(state_dir)
        # A writer killed mid-write leaves its temp file; the store itself is intact.
        for leftover in state_dir.glob(".store-*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        return cls(state_dir / STORE_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._archive.close()
            self._history.close()

    # --- migrations ---
    def _migrate_if_needed(self) -> None:
        """Versions 1 and 2 were one file. The new files are written first, store.json last: it
        says which version is on disk, so a crash before it leaves the old store as it was (the
        migration runs again on the next open), and one after leaves the new one whole."""
        data = AtomicJSONStorage(self.path).read()
        if data is None:
            return
        version = _version_of(data)
        _check_version(self.path, version)
        if version == SCHEMA_VERSION:
            return
        backup = _keep_backup(self.path, version, data)
        store, archive, history = _upgrade(data, version)
        migrated = {str(doc.get("id")) for doc in store["tracks"].values()}
        migrated |= {str(line.get("id")) for line in archive}
        for journal in (self._history, self._archive):
            _set_aside_if_newer(journal.path, migrated)
        self._history.replace(history)
        self._archive.replace(archive)
        AtomicJSONStorage(self.path).write(store)
        log.info(
            "store: migrated schema %d to %d (%d active, %d finished tracks); the old file is %s",
            version,
            SCHEMA_VERSION,
            len(store["tracks"]),
            len(archive),
            backup.name,
        )

    # --- reads ---
    def _track(self, track_id: str) -> Track:
        data = dict(self._docs[track_id])
        data["history"] = self._hist.get(track_id, [])
        return Track.model_validate(data)

    def _tracks_of(self, ids: Iterable[str]) -> list[Track]:
        docs = self._docs
        return [self._track(i) for i in sorted(ids, key=lambda i: _seq(docs[i]))]

    def all(self) -> list[Track]:
        with self._lock:
            return [self._track(i) for i in self._docs]

    def status_texts(self) -> list[str]:
        """`releaseosd status` rows as JSON texts, oldest track first: made from the records as
        stored (no Track built for each), each kept until its track changes."""
        with self._lock:
            rows = self._rows
            for track_id, doc in self._docs.items():
                if track_id not in rows:
                    rows[track_id] = (status_order(doc), compact_json(doc_status_row(doc)))
            ordered = sorted(rows.values())
        return [text for _, text in ordered]

    def in_states(self, *states: State) -> list[Track]:
        """Tracks in these states only: the scheduler asks often, and most tracks are done."""
        with self._lock:
            ids: set[str] = set()
            for state in states:
                ids |= self._indexes.get("state", state.value)
            return self._tracks_of(ids)

    def owing(self) -> list[Track]:
        """Tracks with edits or playlists still to send to SoundCloud."""
        with self._lock:
            return self._tracks_of(self._indexes.get("owing", True))

    def warned(self) -> list[Track]:
        """Tracks that carry a warning for the producer."""
        with self._lock:
            return self._tracks_of(self._indexes.get("warned", True))

    def get(self, track_id: str) -> Track | None:
        with self._lock:
            return self._track(track_id) if track_id in self._docs else None

    def in_folder(self, folder: Path, stem: str | None = None) -> list[Track]:
        """Tracks whose audio lies in `folder` (named `stem` plus any extension, if given)."""
        with self._lock:
            if stem is None:
                return self._tracks_of(self._indexes.get("folder", str(folder)))
            return self._tracks_of(self._indexes.get("named", (str(folder), stem)))

    def under(self, folder: Path) -> list[Track]:
        """Tracks whose audio lies in `folder` or any folder below it."""
        prefix = os.path.join(str(folder), "")
        with self._lock:
            ids = [i for i, doc in self._docs.items() if str(doc["audio_path"]).startswith(prefix)]
            return self._tracks_of(ids)

    def by_urn(self, urn: str) -> list[Track]:
        """The records that know this SoundCloud copy as theirs."""
        with self._lock:
            return self._tracks_of(self._indexes.get("urn", urn))

    def by_file_name(self, name: str) -> list[Track]:
        """Tracks whose audio file has this name, in any folder."""
        with self._lock:
            return self._tracks_of(self._indexes.get("file_name", name))

    def by_audio_path(self, audio_path: Path) -> Track | None:
        with self._lock:
            track_id = self._indexes.path_of(str(audio_path))
            return self._track(track_id) if track_id is not None else None

    def by_sha256(self, sha256: str) -> list[Track]:
        with self._lock:
            return self._tracks_of(self._indexes.get("sha256", sha256))

    def by_audio_digest(self, digest: str) -> list[Track]:
        with self._lock:
            return self._tracks_of(self._indexes.get("digest", digest))

    def by_local_change(self, digest: str) -> list[Track]:
        """Tracks whose export holds this audio (exact bytes or decoded) as a re-export made
        after their upload."""
        with self._lock:
            return self._tracks_of(self._indexes.get("local_change", digest))

    def duplicates_of(self, track_id: str) -> list[Track]:
        """The copies refused as the same audio as this track."""
        with self._lock:
            return self._tracks_of(self._indexes.get("duplicate_of", track_id))

    def by_inode(self, device: int, inode: int) -> list[Track]:
        """Records whose export was last seen as this file (a move keeps device and inode)."""
        with self._lock:
            return self._tracks_of(self._indexes.get("inode", (device, inode)))

    def find(self, ref: str) -> list[Track]:
        """TRACK as a user types it. The first kind of match that finds anything decides, most
        exact first: the id, the title, the audio file's path, then what starts with it (an id
        prefix of three or more characters, a title prefix) — the two kinds of prefix together,
        so that "bad" never quietly means the track whose id starts with it when a title does
        too. Live tracks are preferred to removed ones at each step."""
        with self._lock:
            docs = list(self._docs.values())
        folded = ref.casefold().strip()
        try:
            given = Path(ref).expanduser()
            as_paths = {str(given.absolute()), str(given.resolve())}
        except (OSError, ValueError, RuntimeError):
            as_paths = set()
        steps: tuple[Callable[[Doc], bool], ...] = (
            lambda d: d["id"] == ref,
            lambda d: str(d.get("title", "")).casefold() == folded,
            lambda d: d.get("audio_path") in as_paths,
            lambda d: (
                (len(ref) >= 3 and str(d["id"]).startswith(ref))
                or (bool(folded) and str(d.get("title", "")).casefold().startswith(folded))
            ),
        )
        for matches_step in steps:
            found = [d for d in docs if matches_step(d)]
            live = [d for d in found if d.get("state") != _REMOVED]
            if found:
                with self._lock:
                    return [self._track(d["id"]) for d in live or found if d["id"] in self._docs]
        return []

    # --- writes ---
    def _record(self, track: Track, rev: int, born: int, seq: int) -> Doc:
        doc = track.model_dump(mode="json", exclude={"history"})
        doc["rev"], doc["born"], doc["seq"] = rev, born, seq
        return doc

    def _write(self, track_id: str, doc: Doc, entries: list[Doc], fresh: bool = False) -> None:
        """Save `doc` as the track's record, with new history entries: the entries first, then
        the record where its state puts it (the commit), then out of where it was."""
        rev = doc["rev"]
        undo = (
            self._history.append({"id": track_id, "rev": rev, **e} for e in entries)
            if entries
            else None
        )
        doc_id = self._active.get(track_id)
        finished = _is_finished(doc)
        self._rows.pop(track_id, None)
        try:
            if finished:
                self._archive.append([_archive_line(doc)])
            else:
                self._drop_stale()
                if doc_id is None:
                    doc_id = self._tracks.insert(doc)
                else:
                    self._tracks.update(_replacing(doc), doc_ids=[doc_id])
        except BaseException:
            if undo is not None:
                with contextlib.suppress(OSError):
                    self._history.truncate_to(undo)
                    self._history.lines -= len(entries)
            raise
        # Saved. From here on, memory says what the next open would find.
        self._top[track_id] = rev
        self._docs[track_id] = doc
        if finished:
            self._archived.add(track_id)
            if doc_id is not None:
                # Out of store.json; if that fails, the copy there is older and loses anyway.
                del self._active[track_id]
                self._stale.add(doc_id)
                with contextlib.suppress(OSError):
                    self._drop_stale()
        else:
            assert doc_id is not None
            self._active[track_id] = doc_id
            self._archived.discard(track_id)
        if fresh:
            self._hist_live -= len(self._hist.pop(track_id, ()))
        history = self._hist.setdefault(track_id, [])
        history.extend(entries)
        self._hist_live += len(entries)
        if len(history) > HISTORY_LIMIT:
            self._hist_live -= len(history) - HISTORY_LIMIT
            del history[:-HISTORY_LIMIT]
        self._indexes.add(track_id, doc)
        self._compact_if_due()

    def _drop_stale(self) -> None:
        if self._stale:
            self._tracks.remove(doc_ids=sorted(self._stale))
            self._stale.clear()

    def _next_rev(self, track_id: str) -> int:
        return self._top.get(track_id, 0) + 1

    def insert(self, track: Track) -> Track:
        with self._lock:
            if track.id in self._docs:
                raise StoreError(f"track id {track.id} exists already")
            if not track.history:
                track.history.append(
                    HistoryEntry(at=track.created_at, state=track.state, note="seen")
                )
            del track.history[:-HISTORY_LIMIT]
            rev = self._next_rev(track.id)
            doc = self._record(track, rev, rev, self._next_seq)
            entries = [_compact_entry(h.model_dump(mode="json")) for h in track.history]
            self._write(track.id, doc, entries, fresh=True)
            self._next_seq += 1
            self._gone.pop(track.id, None)
            self._changed(
                track.id,
                track.title,
                None,
                track.state,
                track.history[-1].note if track.history else "",
            )
        self._deliver()
        return track

    def update(self, track_id: str, change: Callable[[Track], None], note: str = "") -> Track:
        """Read-modify-write one track under the store lock, so concurrent updates never clobber.

        A change of state is checked against the transition table and recorded in the history;
        so is any change that comes with a note (e.g. metadata sent after a sidecar edit). A change
        that changes nothing and says nothing writes nothing: a restart that finds every export
        as it was leaves the store's files untouched.
        """
        with self._lock:
            old = self._docs.get(track_id)
            if old is None:
                raise StoreError(f"no track with id {track_id}")
            track = self._track(track_id)
            before, unchanged = track.state, track.model_dump(mode="json")
            change(track)
            if not can_move(before, track.state):
                raise TransitionError(track_id, before, track.state)
            if not note and track.model_dump(mode="json") == unchanged:
                return track
            entries: list[Doc] = []
            if track.state != before or note:
                entry = HistoryEntry(at=utcnow(), state=track.state, previous=before, note=note)
                track.history.append(entry)
                entries.append(_compact_entry(entry.model_dump(mode="json")))
            track.updated_at = utcnow()
            del track.history[:-HISTORY_LIMIT]
            doc = self._record(track, self._next_rev(track_id), _born(old), _seq(old))
            self._write(track_id, doc, entries)
            if track.state != before:
                self._changed(track.id, track.title, before, track.state, note)
        self._deliver()
        return track

    def _changed(
        self, track_id: str, title: str, before: State | None, after: State | None, note: str = ""
    ) -> None:
        """Queue the event of a change just saved: under the lock, so that events are queued in
        the order of the changes; `_deliver` tells the listeners once the lock is let go."""
        if self.events is not None:
            self.events.post(
                StateChanged(track_id=track_id, title=title, before=before, after=after, note=note)
            )

    def _deliver(self) -> None:
        # Never under the lock: a listener may take its time, or change the store itself.
        if self.events is not None:
            self.events.deliver()

    def transition(self, track_id: str, to: State, note: str = "", **fields: Any) -> Track:
        """Move a track to its next state, recording why; refuses moves the table forbids."""

        def apply(track: Track) -> None:
            for name, value in fields.items():
                setattr(track, name, value)
            track.state = to

        return self.update(track_id, apply, note)

    def flag(self, name: str) -> bool:
        """A persisted daemon-wide switch (e.g. 'paused'), so it survives restarts."""
        with self._lock:
            doc = self._db.table("meta").get(Query().flag == name)
        return bool(doc and doc.get("value"))

    def set_flag(self, name: str, value: bool) -> None:
        with self._lock:
            meta = self._db.table("meta")
            doc = meta.get(Query().flag == name)
            if doc is None or doc.get("value") != value:
                meta.upsert({"flag": name, "value": value}, Query().flag == name)

    def delete(self, track_id: str) -> None:
        """The record and its history are gone: a line saying so in the archive first (an older
        copy there must not come back), then out of store.json."""
        with self._lock:
            if track_id not in self._docs:
                return
            gone = self._docs[track_id]
            rev = self._next_rev(track_id)
            self._archive.append([{"id": track_id, "rev": rev, "deleted": True}])
            self._top[track_id] = rev
            self._gone[track_id] = rev
            del self._docs[track_id]
            self._archived.discard(track_id)
            self._hist_live -= len(self._hist.pop(track_id, ()))
            self._rows.pop(track_id, None)
            self._indexes.discard(track_id)
            doc_id = self._active.pop(track_id, None)
            if doc_id is not None:
                # Deleted (the archive's line is the commit); the copy left in store.json, if
                # it cannot go now (a full disk), is older than that line and goes later.
                self._stale.add(doc_id)
                with contextlib.suppress(OSError):
                    self._drop_stale()
            before = State(gone.get("state", State.PENDING.value))
            self._changed(track_id, str(gone.get("title", "")), before, None)
        self._deliver()

    # --- compaction ---
    def _compact_if_due(self) -> None:
        archive_stale = self._archive.lines - len(self._archived)
        history_stale = self._history.lines - self._hist_live
        if archive_stale > max(COMPACT_MIN_LINES, len(self._archived)) or history_stale > max(
            COMPACT_MIN_LINES, self._hist_live
        ):
            try:
                self.compact()
            except OSError as exc:
                # Only room is lost: every change is saved already, and the next one tries again.
                log.warning(
                    "store: could not rewrite the journals (%s); they stay as they are", exc
                )

    def compact(self) -> None:
        """Rewrite both journals with only what is current: each finished track's newest record,
        and the history of the tracks there are. History first: until the archive is rewritten
        too, its old lines still say which tracks were deleted. Not while store.json holds a
        copy that an archive line outdates (its removal failed: a full disk): without that line
        the copy would be the track again."""
        with self._lock:
            self._drop_stale()
            history = (
                {"id": track_id, "rev": _born(doc), **entry}
                for track_id, doc in self._docs.items()
                for entry in self._hist.get(track_id, ())
            )
            self._history.replace(history)
            self._archive.replace(
                _archive_line(doc)
                for track_id, doc in self._docs.items()
                if track_id in self._archived
            )
            self._gone.clear()
            log.info(
                "store: journals rewritten (%d finished tracks, %d history entries)",
                self._archive.lines,
                self._history.lines,
            )
