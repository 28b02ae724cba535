"""What happens to a track, as typed values on one bus: stages emit, listeners react.

The stages (ingest, upload, publish, the login watch) say what happened by emitting one of the
events below; they never know who listens. Desktop notifications are one listener; the
dashboard's live stream, stats and announcements attach the same way: a module with a callable
that takes an `Event`, and one `bus.subscribe(...)` line where the daemon is put together.

Delivery is synchronous, in the emitting thread, after the store holds the change the event
reports (a listener that reads the store sees it). A listener must return quickly (queue work
for its own thread) and never breaks the stage: its exceptions are logged and swallowed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from releaseosd.model.states import State
from releaseosd.model.track import utcnow

log = logging.getLogger("releaseosd.model.events")


@dataclass(frozen=True, kw_only=True)
class Event:
    at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class TrackEvent(Event):
    track_id: str
    title: str


@dataclass(frozen=True, kw_only=True)
class StateChanged(TrackEvent):
    """Any change of a track's state (None: the record was created, or deleted)."""

    before: State | None
    after: State | None
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class Edited(TrackEvent):
    """Its sidecar changed (or was deleted) and the track now carries what it says."""

    on_soundcloud: bool


@dataclass(frozen=True, kw_only=True)
class UploadProgress(TrackEvent):
    sent: int
    total: int


@dataclass(frozen=True, kw_only=True)
class Uploaded(TrackEvent):
    """On SoundCloud; `public_at` when it goes public later (None: as it is now)."""

    url: str | None
    public_at: dt.datetime | None


@dataclass(frozen=True, kw_only=True)
class Released(TrackEvent):
    """Public now; `late_by` when it went out later than planned."""

    url: str
    late_by: dt.timedelta | None = None


@dataclass(frozen=True, kw_only=True)
class Failed(TrackEvent):
    """The track needs the producer: why, and the command that tries it again."""

    reason: str
    fix_command: str


@dataclass(frozen=True, kw_only=True)
class ArtworkDropped(TrackEvent):
    """SoundCloud kept failing with the artwork attached; the track goes up without it."""


@dataclass(frozen=True, kw_only=True)
class NeedsLogin(Event):
    """The first track of an episode parked for a login (`problem`: how to fix other access
    problems; None: log in again)."""

    track_id: str
    problem: str | None


@dataclass(frozen=True, kw_only=True)
class LoginBeforeRelease(TrackEvent):
    """A release within a day would meet a login that cannot carry it."""

    public_at: dt.datetime
    problem: str


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; the returned function takes it off again."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return unsubscribe

    def emit(self, event: Event) -> None:
        for listener in self._listeners:  # a snapshot: subscribing meanwhile is safe
            try:
                listener(event)
            except Exception:
                log.exception("listener %r failed on %s", listener, type(event).__name__)
