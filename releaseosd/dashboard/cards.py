"""What the dashboard shows of a track: made from the store's record and the status row, with
the producer's next step for a track that waits on them. No decision is made here: every fact
comes from the function that computes it elsewhere (the status row, its note, the share link)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from releaseosd.dashboard.live import Progress
from releaseosd.model.localtime import shown
from releaseosd.model.states import State
from releaseosd.model.track import Track, doc_status_row, status_note
from releaseosd.pipeline.stage import target_sharing, track_fields, upload_sharing
from releaseosd.soundcloud.client import share_url

# The states a producer can filter by, in the order a release goes through them.
FILTERS: dict[str, tuple[State, ...]] = {
    "needs you": (State.INVALID, State.FAILED, State.NEEDS_LOGIN),
    "on the way": (
        State.PENDING,
        State.BUILDING,
        State.READY,
        State.UPLOADING,
        State.PROCESSING,
    ),
    "scheduled": (State.SCHEDULED,),
    "out": (State.RELEASED, State.PUBLISHED),
    "removed": (State.REMOVED,),
}

BADGES: dict[State, str] = {
    State.PENDING: "waiting",
    State.INVALID: "needs a fix",
    State.BUILDING: "building",
    State.READY: "queued",
    State.UPLOADING: "uploading",
    State.PROCESSING: "processing",
    State.SCHEDULED: "scheduled",
    State.PUBLISHED: "private",
    State.RELEASED: "released",
    State.FAILED: "failed",
    State.NEEDS_LOGIN: "needs login",
    State.REMOVED: "removed",
}


def filter_of(state: State) -> str:
    return next((name for name, states in FILTERS.items() if state in states), "on the way")


@dataclass(frozen=True)
class Card:
    id: str
    title: str
    artist: str | None
    state: str
    badge: str
    group: str
    note: str | None
    fix: str | None
    release_at: str | None  # ISO, with offset: the page counts down to it
    release_shown: str | None  # on the producer's wall clock
    link: str | None
    private: bool
    has_artwork: bool
    has_preview: bool
    progress: dict[str, Any] | None
    can_retry: bool
    retry_label: str
    can_release: bool
    can_remove: bool
    on_soundcloud: bool
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    sent: bool = False


def _web_link(url: str | None) -> str | None:
    """A link to show only when it is a web address (a record or an answer could carry a
    `javascript:` one)."""
    return url if url and url.startswith(("https://", "http://")) else None


def next_step(track: Track) -> str | None:
    """What the producer does about a track that waits on them, in the dashboard's words."""
    if track.state == State.INVALID:
        return "Fix the file named above and save it: the track is checked again by itself."
    if track.state == State.FAILED:
        return "Retry when the cause is fixed; the message above says what went wrong."
    if track.state == State.NEEDS_LOGIN:
        return "Connect SoundCloud again (top of the page): it then carries on by itself."
    if track.local_change:
        return "Remove it from SoundCloud, then export again to replace the upload."
    return None


def card_of(track: Track, progress: Progress | None = None) -> Card:
    row = doc_status_row(track.model_dump(mode="json"))
    state = track.state
    artist = (track.sidecar or {}).get("artist") or track.metadata.get("artist")
    release = track.release_at
    done = state in (State.REMOVED,)
    return Card(
        id=track.id,
        title=track.title or row["title"],
        artist=str(artist) if artist else None,
        state=state.value,
        badge=BADGES[state],
        group=filter_of(state),
        note=status_note(row),
        fix=next_step(track),
        release_at=release.isoformat() if release else None,
        release_shown=shown(release) if release else None,
        link=_web_link(share_url(track.soundcloud)),
        private=track.soundcloud.sharing == "private",
        has_artwork=bool(track.artwork_path),
        has_preview=bool(track.preview_path),
        progress=progress.as_json() if progress and state == State.UPLOADING else None,
        can_retry=state
        in (
            State.FAILED,
            State.READY,
            State.INVALID,
            State.PENDING,
            State.SCHEDULED,
            State.PUBLISHED,
            State.RELEASED,
        ),
        # On SoundCloud, `retry` sends the sidecar again (a refused edit, a missed playlist).
        retry_label="Send sidecar again"
        if state in (State.SCHEDULED, State.PUBLISHED, State.RELEASED)
        else "Retry",
        can_release=state not in (State.RELEASED, State.REMOVED, State.INVALID),
        can_remove=not done,
        on_soundcloud=track.maybe_remote,
        created_at=track.created_at.isoformat(),
        metadata=request_fields(track),
        sent=track.soundcloud.urn is not None,
    )


def request_fields(track: Track) -> dict[str, Any]:
    """The track's fields as SoundCloud got them (its last request), or as the upload will
    send them (the uploader's own functions: what is shown is what goes out)."""
    if track.soundcloud.urn is not None:
        return dict(track.soundcloud.sent_fields)
    if track.state in (State.PENDING, State.INVALID, State.BUILDING, State.REMOVED):
        return {}
    return dict(track_fields(track, upload_sharing(track)).metadata(track.sha256))


def newest_first(tracks: list[Track]) -> list[Track]:
    return sorted(tracks, key=lambda t: (t.created_at, t.id), reverse=True)


def history_of(track: Track) -> list[dict[str, str]]:
    """The track's history as the timeline shows it: newest first, on the wall clock."""
    return [
        {
            "at": entry.at.isoformat(),
            "shown": shown(entry.at, "%Y-%m-%d %H:%M:%S"),
            "state": entry.state.value,
            "note": entry.note,
        }
        for entry in reversed(track.history)
    ]


def checklist(track: Track, now: dt.datetime) -> list[tuple[str, bool]]:
    """The release checklist: what has happened on the way out, in order."""
    remote = track.soundcloud
    public_due = track.release_at is not None and track.release_at > now
    if target_sharing(track) == "public":
        last = (
            f"Public at {shown(track.release_at or now)}" if public_due else "Public",
            remote.sharing == "public",
        )
    else:
        last = ("Shared by its private link (the sidecar says sharing: private)", bool(remote.urn))
    return [
        ("Export complete and checked", track.state not in (State.PENDING, State.INVALID)),
        ("Preview built", bool(track.preview_path)),
        ("Artwork built", bool(track.artwork_path)),
        ("Uploaded to SoundCloud", remote.urn is not None),
        last,
    ]
