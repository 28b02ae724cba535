"""The track record: everything the store knows about one export."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from releaseosd.states import State


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


class RemoteTrack(BaseModel):
    model_config = ConfigDict(extra="ignore")

    urn: str | None = None
    permalink_url: str | None = None
    sharing: str | None = None
    uploaded_at: dt.datetime | None = None
    published_at: dt.datetime | None = None
    # The metadata last sent, so an edited sidecar sends only what changed.
    sent_fields: dict[str, Any] = Field(default_factory=dict)
    playlists: list[str] = Field(default_factory=list)


class Track(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=False)

    id: str = Field(default_factory=new_track_id)
    title: str = ""
    audio_path: str
    watch_root: str | None = None
    sha256: str | None = None
    sidecar_path: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    probe: dict[str, Any] | None = None
    state: State = State.PENDING
    attempts: int = 0
    offline_attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None
    preview_path: str | None = None
    artwork_path: str | None = None
    release_at: dt.datetime | None = None
    # `releaseosd release --now/--at` wins over the sidecar's release_at (and makes it public).
    user_release: dt.datetime | None = None
    # Every audio digest ever sent in a POST /tracks: any of them may be on SoundCloud.
    posted_sha256: list[str] = Field(default_factory=list)
    # SoundCloud has answered 500 only when artwork was attached (soundcloud/api#409): after a
    # few of those in a row the track goes up without artwork, and the producer is told.
    artwork_5xx: int = 0
    without_artwork: bool = False
    soundcloud: RemoteTrack = Field(default_factory=RemoteTrack)
    # A re-export whose content differs from what was uploaded: reported, never uploaded by itself.
    local_change: dict[str, Any] | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)
    history: list[HistoryEntry] = Field(default_factory=list)

    @property
    def maybe_remote(self) -> bool:
        """Something of this track may be on SoundCloud: it has a URN, or a POST went out."""
        return self.soundcloud.urn is not None or bool(self.posted_sha256)

    def status_row(self) -> dict[str, Any]:
        """The shape `releaseosd status --json` prints: stable, documented, no secrets."""
        return {
            "id": self.id,
            "title": self.title,
            "audio_path": self.audio_path,
            "state": self.state.value,
            "error": self.last_error,
            "release_at": _iso(self.release_at),
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "soundcloud": {
                "urn": self.soundcloud.urn,
                "permalink_url": self.soundcloud.permalink_url,
                "sharing": self.soundcloud.sharing,
            },
            "local_change": self.local_change,
            "updated_at": _iso(self.updated_at),
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_rows(tracks: Iterable[Track]) -> list[dict[str, Any]]:
    """`releaseosd status` rows, oldest track first."""
    return [t.status_row() for t in sorted(tracks, key=lambda t: (t.created_at, t.id))]
