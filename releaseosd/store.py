"""The store: TinyDB on crash-safe storage, the single source of truth for every track.

TinyDB's own JSONStorage rewrites its file in place, so a crash or a full disk mid-write leaves a
broken file. AtomicJSONStorage writes a temporary file, fsyncs it, renames it over the old one and
fsyncs the folder: after a crash the file holds either the old or the new data, never a mix.
TinyDB is not thread-safe either, so every access goes through one lock here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from releaseosd.states import State, TransitionError, can_move
from releaseosd.track import HistoryEntry, Track, utcnow

SCHEMA_VERSION = 2
STORE_FILE = "store.json"
LOCK_FILE = "releaseosd.lock"
HISTORY_LIMIT = 200


class StoreError(Exception):
    """The store cannot be used; the message says why and what to do."""


class StateDirBusy(StoreError):
    pass


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
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=".store-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if self._cache_enabled:
            self._cached = data

    def close(self) -> None:
        pass


# --- migrations -------------------------------------------------------------------------------
# Each takes the raw TinyDB data of version N and returns version N+1. They run by themselves on
# open; the old file is kept beside the new one as store.json.vN.bak.


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


def _version_of(data: dict[str, dict[str, Any]]) -> int:
    meta = data.get("meta") or {}
    for doc in meta.values():
        if "schema_version" in doc:
            return int(doc["schema_version"])
    # Release OS's v1 files had no meta table at all.
    return 1 if data.get("tracks") else SCHEMA_VERSION


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


class Store:
    """All reads and writes of track records. Open with `Store.open(state_dir)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._migrate_if_needed()
        self._db = TinyDB(path, storage=AtomicJSONStorage, cache=True)
        self._tracks = self._db.table("tracks", cache_size=0)
        meta = self._db.table("meta")
        if not meta.all():
            meta.insert({"schema_version": SCHEMA_VERSION})
        # Track id and audio path → TinyDB document id: the lookups every export and every
        # update make, without a scan of the whole catalogue each time.
        self._doc_of: dict[str, int] = {}
        self._path_of: dict[str, int] = {}
        # (path, folder, file stem) of each document's audio, and the documents in each folder:
        # the tracks a sidecar or a folder's release.yaml describes.
        self._place_of: dict[int, tuple[str, str, str]] = {}
        self._in_folder: dict[str, set[int]] = {}
        self._named: dict[tuple[str, str], set[int]] = {}
        # Removed records first: where a live one has the same path, it is the one found.
        for doc in sorted(self._tracks.all(), key=lambda d: d.get("state") != State.REMOVED):
            self._index(doc.doc_id, doc)

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

    # --- migrations ---
    def _migrate_if_needed(self) -> None:
        storage = AtomicJSONStorage(self.path)
        data = storage.read()
        if data is None:
            return
        version = _version_of(data)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer releaseosd (schema {version}, this one "
                f"knows {SCHEMA_VERSION}); upgrade releaseosd."
            )
        if version == SCHEMA_VERSION:
            return
        backup = self.path.with_name(f"{self.path.name}.v{version}.bak")
        if not backup.exists():
            AtomicJSONStorage(backup).write(data)
        while version < SCHEMA_VERSION:
            data = MIGRATIONS[version](data)
            version += 1
        storage.write(data)

    # --- reads ---
    def all(self) -> list[Track]:
        with self._lock:
            return [Track.model_validate(doc) for doc in self._tracks.all()]

    def in_states(self, *states: State) -> list[Track]:
        """Tracks in these states only: the scheduler asks often, and most tracks are done."""
        wanted = [state.value for state in states]
        with self._lock:
            docs = self._tracks.search(Query().state.one_of(wanted))
        return [Track.model_validate(doc) for doc in docs]

    def owing(self) -> list[Track]:
        """Tracks with edits or playlists still to send to SoundCloud."""
        with self._lock:
            docs = self._tracks.search(Query().sync.due_at.test(lambda v: v is not None))
        return [Track.model_validate(doc) for doc in docs]

    def warned(self) -> list[Track]:
        """Tracks that carry a warning for the producer."""
        with self._lock:
            docs = self._tracks.search(Query().warning.test(lambda v: bool(v)))
        return [Track.model_validate(doc) for doc in docs]

    def _index(self, doc_id: int, doc: dict[str, Any]) -> None:
        self._unindex(doc_id)
        audio = str(doc.get("audio_path"))
        folder, name = os.path.split(audio)
        self._doc_of[str(doc["id"])] = doc_id
        self._path_of[audio] = doc_id
        self._place_of[doc_id] = (audio, folder, os.path.splitext(name)[0])
        self._in_folder.setdefault(folder, set()).add(doc_id)
        self._named.setdefault((folder, os.path.splitext(name)[0]), set()).add(doc_id)

    def _unindex(self, doc_id: int) -> None:
        place = self._place_of.pop(doc_id, None)
        if place is None:
            return
        audio, folder, stem = place
        self._in_folder.get(folder, set()).discard(doc_id)
        self._named.get((folder, stem), set()).discard(doc_id)
        if self._path_of.get(audio) == doc_id:
            del self._path_of[audio]

    def _doc(self, doc_id: int | None) -> dict[str, Any] | None:
        if doc_id is None:
            return None
        doc = self._tracks.get(doc_id=doc_id)
        return doc if isinstance(doc, dict) else None

    def get(self, track_id: str) -> Track | None:
        with self._lock:
            doc = self._doc(self._doc_of.get(track_id))
        return Track.model_validate(doc) if doc else None

    def in_folder(self, folder: Path, stem: str | None = None) -> list[Track]:
        """Tracks whose audio lies in `folder` (named `stem` plus any extension, if given)."""
        with self._lock:
            if stem is None:
                ids = self._in_folder.get(str(folder), set())
            else:
                ids = self._named.get((str(folder), stem), set())
            docs = [self._doc(i) for i in sorted(ids)]
        return [Track.model_validate(d) for d in docs if d]

    def by_audio_path(self, audio_path: Path) -> Track | None:
        with self._lock:
            doc = self._doc(self._path_of.get(str(audio_path)))
        return Track.model_validate(doc) if doc else None

    def by_sha256(self, sha256: str) -> list[Track]:
        with self._lock:
            docs = self._tracks.search(Query().sha256 == sha256)
        return [Track.model_validate(d) for d in docs]

    def by_audio_digest(self, digest: str) -> list[Track]:
        with self._lock:
            docs = self._tracks.search(Query().audio_digest == digest)
        return [Track.model_validate(d) for d in docs]

    def duplicates_of(self, track_id: str) -> list[Track]:
        """The copies refused as the same audio as this track."""
        with self._lock:
            docs = self._tracks.search(Query().duplicate_of == track_id)
        return [Track.model_validate(d) for d in docs]

    def by_inode(self, device: int, inode: int) -> list[Track]:
        """Records whose export was last seen as this file (a move keeps device and inode)."""
        stat = Query().audio_stat
        with self._lock:
            docs = self._tracks.search((stat.device == device) & (stat.inode == inode))
        return [Track.model_validate(d) for d in docs]

    def find(self, ref: str) -> list[Track]:
        """TRACK as a user types it. The first kind of match that finds anything decides, most
        exact first: the id, the title, the audio file's path, then what starts with it (an id
        prefix of three or more characters, a title prefix) — the two kinds of prefix together,
        so that "bad" never quietly means the track whose id starts with it when a title does
        too. Live tracks are preferred to removed ones at each step."""
        tracks = self.all()
        folded = ref.casefold().strip()
        try:
            given = Path(ref).expanduser()
            as_paths = {str(given.absolute()), str(given.resolve())}
        except (OSError, ValueError, RuntimeError):
            as_paths = set()
        steps = (
            lambda t: t.id == ref,
            lambda t: t.title.casefold() == folded,
            lambda t: t.audio_path in as_paths,
            lambda t: (
                (len(ref) >= 3 and t.id.startswith(ref))
                or (bool(folded) and t.title.casefold().startswith(folded))
            ),
        )
        for matches_step in steps:
            found = [t for t in tracks if matches_step(t)]
            live = [t for t in found if t.state != State.REMOVED]
            if found:
                return live or found
        return []

    # --- writes ---
    def insert(self, track: Track) -> Track:
        with self._lock:
            if track.id in self._doc_of:
                raise StoreError(f"track id {track.id} exists already")
            if not track.history:
                track.history.append(
                    HistoryEntry(at=track.created_at, state=track.state, note="seen")
                )
            doc = track.model_dump(mode="json")
            self._index(self._tracks.insert(doc), doc)
        return track

    def update(self, track_id: str, change: Callable[[Track], None], note: str = "") -> Track:
        """Read-modify-write one track under the store lock, so concurrent updates never clobber.

        A change of state is checked against the transition table and recorded in the history;
        so is any change that comes with a note (e.g. metadata sent after a sidecar edit). A change
        that changes nothing and says nothing writes nothing: a restart that finds every export
        as it was leaves the store file untouched.
        """
        with self._lock:
            doc_id = self._doc_of.get(track_id)
            doc = self._doc(doc_id)
            if doc_id is None or doc is None:
                raise StoreError(f"no track with id {track_id}")
            track = Track.model_validate(doc)
            before, unchanged = track.state, track.model_dump(mode="json")
            change(track)
            if not can_move(before, track.state):
                raise TransitionError(track_id, before, track.state)
            if not note and track.model_dump(mode="json") == unchanged:
                return track
            if track.state != before or note:
                track.history.append(
                    HistoryEntry(at=utcnow(), state=track.state, previous=before, note=note)
                )
            track.updated_at = utcnow()
            del track.history[:-HISTORY_LIMIT]
            fresh = track.model_dump(mode="json")
            self._tracks.update(fresh, doc_ids=[doc_id])
            self._index(doc_id, fresh)
            return track

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
        with self._lock:
            doc_id = self._doc_of.pop(track_id, None)
            doc = self._doc(doc_id)
            if doc_id is None or doc is None:
                return
            self._tracks.remove(doc_ids=[doc_id])
            self._unindex(doc_id)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the lock across several calls that must see one consistent store."""
        with self._lock:
            yield
