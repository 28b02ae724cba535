"""The track record: everything the store knows about one export."""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from releaseosd.model.failure import Failure
from releaseosd.model.localtime import localize
from releaseosd.model.states import REMOTE, State


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_track_id() -> str:
    return uuid.uuid4().hex[:12]


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    at: dt.datetime
    state: State
    previous: State | None = None
    note: str = ""


class AudioStat(BaseModel):
    """What `stat` says of an export when it was last hashed: while all of it holds, the bytes
    are taken to be the same and nothing is read again (a restart re-hashes nothing)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> AudioStat:
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, device=st.st_dev)


class FolderStat(BaseModel):
    """Which directory an export is in (device, inode and, where the system tells it, when the
    directory was made): a folder moved or renamed is still the same directory, so a record can
    follow it when nothing else about its export is left the same (a new mix saved and the
    sidecar edited while the folder moved).

    Device and inode alone do not say it: ext4 hands a deleted directory's inode to the next
    directory made, so a new project folder holding another song exported under the same
    default name would be taken for the old folder moved, and the new song for the old one's
    re-export. The birth time tells them apart; records without one (from before, or where
    the filesystem keeps none) are matched by inode as before only with each other."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    inode: int
    device: int
    born_ns: int | None = None

    @classmethod
    def of(cls, folder: Path) -> FolderStat | None:
        try:
            st = os.stat(folder)
        except OSError:
            return None
        return cls(inode=st.st_ino, device=st.st_dev, born_ns=birth_ns(folder, st))


def birth_ns(path: Path, st: os.stat_result) -> int | None:
    """When the file or directory at `path` was made (nanoseconds since the epoch), or None when
    the system does not say: os.stat's st_birthtime (macOS, BSD, Windows from Python 3.12), else
    Linux's statx(2)."""
    born = getattr(st, "st_birthtime_ns", None)
    if isinstance(born, int):
        return born
    seconds = getattr(st, "st_birthtime", None)
    if isinstance(seconds, float | int):
        return int(seconds * 1_000_000_000)
    return _statx_birth_ns(path)


_STATX_BTIME = 0x800
_AT_FDCWD = -100
# struct statx: stx_mask (u32) first, stx_btime (s64 seconds, u32 nanoseconds) at byte 80.
_STATX_SIZE, _STATX_BTIME_OFFSET = 256, 80
_statx: Any = None


def _statx_birth_ns(path: Path) -> int | None:
    global _statx
    if not sys.platform.startswith("linux"):
        return None
    if _statx is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _statx = libc.statx
            _statx.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_void_p,
            ]
            _statx.restype = ctypes.c_int
        except (OSError, AttributeError):
            _statx = False
    if not _statx:
        return None
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    if _statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_BTIME, buf) != 0:
        return None
    mask = int.from_bytes(buf.raw[0:4], sys.byteorder)
    if not mask & _STATX_BTIME:
        return None
    seconds = int.from_bytes(
        buf.raw[_STATX_BTIME_OFFSET : _STATX_BTIME_OFFSET + 8], sys.byteorder, signed=True
    )
    nanos = int.from_bytes(
        buf.raw[_STATX_BTIME_OFFSET + 8 : _STATX_BTIME_OFFSET + 12], sys.byteorder
    )
    return seconds * 1_000_000_000 + nanos


class Retrying(BaseModel):
    """Counters of one step that meets failures, and when it is tried next."""

    model_config = ConfigDict(extra="ignore")

    attempts: int = 0
    offline_attempts: int = 0
    due_at: dt.datetime | None = None
    error: str | None = None


class StepFailure(BaseModel):
    """The last failure of a step that talks to SoundCloud, as a value: what kind it was (see
    retry.Kind), SoundCloud's status, the message the producer sees, and when."""

    model_config = ConfigDict(extra="ignore")

    step: str  # "upload", "processing", "release", "sync", ...
    kind: str
    message: str
    status: int | None = None
    at: dt.datetime


class RemoteTrack(BaseModel):
    model_config = ConfigDict(extra="ignore")

    urn: str | None = None
    permalink_url: str | None = None
    sharing: str | None = None
    # A private track's link for listeners who have it (the s-… part of its secret URL).
    secret_token: str | None = None
    uploaded_at: dt.datetime | None = None
    published_at: dt.datetime | None = None
    # What SoundCloud was last told (the request's own fields, or what an adopted copy had), so
    # an edited sidecar sends only what changed.
    sent_fields: dict[str, Any] = Field(default_factory=dict)
    # The digest SoundCloud's copy was sent with: the one its machine tag names, always.
    sha256: str | None = None
    playlists: list[str] = Field(default_factory=list)
    # The config's `defaults:` as they were when the track went up: a later change to them does
    # not rewrite tracks already on SoundCloud.
    defaults: dict[str, Any] | None = None


class Track(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=False)

    id: str = Field(default_factory=new_track_id)
    title: str = ""
    audio_path: str
    watch_root: str | None = None
    # Of the export's exact bytes: what an upload must send, and what its machine tag names.
    sha256: str | None = None
    # Of the decoded audio: the same music saved twice (other tags, another bounce of the same
    # samples) is one track, whatever the container bytes.
    audio_digest: str | None = None
    audio_stat: AudioStat | None = None
    # The directory the export was in when it was last looked at (None on records from before).
    folder: FolderStat | None = None
    # Its export was deleted or moved away on its own while its folder stayed: the folder moving
    # later does not take the record along (a file of the same name saved there is another).
    left_its_folder: bool = False
    sidecar_path: str | None = None
    # What the sidecar (over its folder's release.yaml) said, and a digest of those files' bytes:
    # only a change to them is an edit.
    sidecar: dict[str, Any] | None = None
    sidecar_digest: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # What the preview and artwork were made from (see ingest.build_shape).
    built_shape: str | None = None
    # The track this one is a copy of: the same audio is never a second track.
    duplicate_of: str | None = None
    probe: dict[str, Any] | None = None
    state: State = State.PENDING
    # The state a track waiting in needs_login goes back to once the login is back.
    waited_in: State | None = None
    attempts: int = 0
    offline_attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None
    preview_path: str | None = None
    preview_sha256: str | None = None
    artwork_path: str | None = None
    release_at: dt.datetime | None = None
    # `releaseosd release --now/--at` wins over the sidecar's release_at (and makes it public).
    user_release: dt.datetime | None = None
    # The sidecar's release_at was taken out once the track was scheduled (an autosave mid-edit,
    # a file cut short): it stays private until a release time is given again.
    hold_private: bool = False
    # The sidecar changed what the artwork shows after it went up; SoundCloud keeps the old one.
    artwork_stale: bool = False
    # Every audio digest ever sent in a POST /tracks: any of them may be on SoundCloud.
    posted_sha256: list[str] = Field(default_factory=list)
    # SoundCloud has answered 500 only when artwork was attached (soundcloud/api#409): after a
    # few of those in a row the track goes up without artwork, and the producer is told.
    artwork_5xx: int = 0
    without_artwork: bool = False
    # Removed while its export was changing: the version being written is left alone too.
    removed_mid_write: bool = False
    soundcloud: RemoteTrack = Field(default_factory=RemoteTrack)
    # A re-export whose content differs from what was uploaded: reported, never uploaded by itself.
    local_change: dict[str, Any] | None = None
    # Retries of the remote step the track is in (processing checks, going private or public).
    retry: Retrying = Field(default_factory=Retrying)
    # Edits and playlists owed to SoundCloud once the track is up, and their retries.
    sync: Retrying | None = None
    # The last failure of a remote step, and how many of each kind the track has met.
    failure: StepFailure | None = None
    failure_counts: dict[str, int] = Field(default_factory=dict)
    # Something the producer should act on before it bites (a login gone before a release).
    warning: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)
    history: list[HistoryEntry] = Field(default_factory=list)

    @field_validator("created_at", "updated_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        """A time without an offset (Release OS's v1 files, a caller's datetime.now()) is the
        producer's wall clock: tracks are put in order of creation, and naive and aware times
        do not compare."""
        return _aware(value)

    def met(self, step: str, failure: Failure, when: dt.datetime) -> None:
        """Record a failure of `step` on the track (kept apart from the history's notes, which
        no decision ever reads)."""
        self.failure = StepFailure(
            step=step,
            kind=failure.kind.value,
            message=failure.message,
            status=failure.status,
            at=when,
        )
        kind = failure.kind.value
        self.failure_counts = {**self.failure_counts, kind: self.failure_counts.get(kind, 0) + 1}

    @property
    def maybe_remote(self) -> bool:
        """Something of this track may be on SoundCloud: it has a URN, or a POST went out."""
        return self.soundcloud.urn is not None or bool(self.posted_sha256)

    @property
    def on_soundcloud(self) -> bool:
        """Past the point where its audio may be replaced: uploaded, being uploaded, or known to
        SoundCloud by URN. A track whose POST may have gone out without an answer is not: its
        next attempt looks that copy up by machine tag before anything is sent again."""
        return self.soundcloud.urn is not None or self.state in REMOTE


HELD_PRIVATE = (
    "its sidecar no longer says when it goes public (release_at was taken out), so it stays "
    "private: add release_at again, or run 'releaseosd release {id} --now'"
)


ARTWORK_STALE = (
    "the sidecar changed its artwork (or what the waveform artwork shows) after upload; "
    "releaseosd does not replace artwork on SoundCloud: change it on soundcloud.com"
)


def doc_status_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The row `releaseosd status --json` prints of a track (stable, documented, no secrets),
    made from its record as the store keeps it (`Track.model_dump(mode="json")`) without
    building the Track: what `status` needs of ten thousand tracks."""
    remote = doc.get("soundcloud") or {}
    track_id = doc["id"]
    return {
        "id": track_id,
        "title": doc.get("title", ""),
        "audio_path": doc["audio_path"],
        "state": doc.get("state", State.PENDING.value),
        "error": doc.get("last_error"),
        "release_at": _iso_text(doc.get("release_at")),
        "attempts": doc.get("attempts", 0),
        "next_attempt_at": _iso_text(doc.get("next_attempt_at")),
        "soundcloud": {
            "urn": remote.get("urn"),
            "permalink_url": remote.get("permalink_url"),
            "sharing": remote.get("sharing"),
        },
        "local_change": doc.get("local_change"),
        "warning": doc.get("warning")
        or (HELD_PRIVATE.format(id=track_id) if doc.get("hold_private") else None)
        or (ARTWORK_STALE if doc.get("artwork_stale") else None),
        "updated_at": _iso_text(doc.get("updated_at")),
    }


def local_change_note(track_id: str) -> str:
    return (
        f"re-exported after upload, not uploaded: 'releaseosd remove {track_id[:8]} --remote' "
        "then export again to replace it"
    )


def status_note(row: Mapping[str, Any]) -> str | None:
    """What a status row says the producer should know first: its error, a warning, or a
    re-export that was kept back (`status`'s NOTE column, the dashboard card's message)."""
    return (
        row.get("error")
        or row.get("warning")
        or (local_change_note(row["id"]) if row.get("local_change") else None)
    )


def built_dir(state_dir: Path, track_id: str) -> Path:
    """Where a track's preview, artwork and other built files live: <state dir>/tracks/<id>/."""
    return state_dir / "tracks" / track_id


def remove_built_files(state_dir: Path, track_id: str) -> None:
    """Delete a track's built files (a track removed, a refused copy gone, a stray adopted)."""
    shutil.rmtree(built_dir(state_dir, track_id), ignore_errors=True)


def status_order(doc: Mapping[str, Any]) -> tuple[dt.datetime, str]:
    """Where a record's row goes in `status`: oldest track first (ties: by id). A record stored
    with a time without an offset sorts by it as a wall-clock time."""
    return _aware(dt.datetime.fromisoformat(doc["created_at"])), doc["id"]


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else localize(value)


# How the store writes JSON, and status rows are printed: compact, one object a line.
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _iso_text(value: str | None) -> str | None:
    """As the Track would print it: isoformat's spelling. The store's own UTC times differ from
    it only in their "Z" ("2026-05-01T18:00:00Z", with or without microseconds)."""
    if not value:
        return None
    if value[-1] == "Z" and len(value) in (20, 27):
        return value[:-1] + "+00:00"
    return dt.datetime.fromisoformat(value).isoformat()


def gone_message(track: Track) -> str:
    """What a track whose export disappeared before its upload says, and how to drop it."""
    return (
        f"{track.audio_path} is gone (deleted, moved out of the watch folders, or its drive or "
        "share is offline); the track carries on when the file is back. To drop it: "
        f"releaseosd remove {track.id}"
    )
