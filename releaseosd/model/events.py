"""What happens to a track, as typed values on one bus: stages emit, listeners react.

The stages (ingest, upload, publish, the login watch) say what happened by emitting one of the
events below; they never know who listens. Desktop notifications are one listener; the
dashboard's live stream, stats and announcements attach the same way: a module with a callable
that takes an `Event`, and one `bus.subscribe(...)` line where the daemon is put together.

Every listener hears every event in the order things happened: the store queues its events in
the order of its changes (under its lock) and delivers them after letting go of the lock, after
the store holds the change the event reports (a listener that reads the store sees it).
Delivery is synchronous, in the emitting thread, unless events are being delivered already: by
another thread (a listener still busy with an earlier event) or further up this thread's own
stack (a listener that changes the store from inside an event). Then the event is queued
behind them and delivered by that delivery as soon as the earlier ones are; `emit` returns at
once. A listener must return quickly (queue work for its own thread) and never breaks the
stage: its exceptions are logged and swallowed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
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
        self._queue: deque[Event] = deque()
        self._delivering = False  # some thread is in `deliver`'s loop

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; the returned function takes it off again."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return unsubscribe

    def emit(self, event: Event) -> None:
        self.post(event)
        self.deliver()

    def post(self, event: Event) -> None:
        """Queue an event, to be delivered in this order by the next `deliver` (cheap: the store
        posts under its lock, so that events are queued in the order of its changes)."""
        with self._lock:
            self._queue.append(event)

    def deliver(self) -> None:
        """Deliver what is queued, in order; if a delivery is under way already (in another
        thread, or up this thread's stack), it delivers them instead."""
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._delivering = False
                        return
                    event = self._queue.popleft()
                for listener in self._listeners:  # a snapshot: subscribing meanwhile is safe
                    try:
                        listener(event)
                    except Exception:
                        log.exception("listener %r failed on %s", listener, type(event).__name__)
        except BaseException:
            # A KeyboardInterrupt or SystemExit from a listener: the next emit delivers the rest.
            with self._lock:
                self._delivering = False
            raise
