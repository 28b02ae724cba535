"""A release that would meet a missing login is said at once, not at the release minute.

Every track due to go public within the next 24 hours is checked against what the keyring holds
(no network): no login, a login that cannot be renewed, or one that ends before the release
puts a warning on the track (`status` shows it) and sends one notification, so the producer
has a day to run `releaseosd auth login` instead of finding out when the release is missed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from releaseosd.model.events import EventBus, LoginBeforeRelease
from releaseosd.model.localtime import shown
from releaseosd.model.states import State
from releaseosd.model.store import Store
from releaseosd.model.track import Track, utcnow

if TYPE_CHECKING:
    from releaseosd.soundcloud.tokens import LoginOutlook

log = logging.getLogger("releaseosd.pipeline.login_watch")

LOOKAHEAD = dt.timedelta(hours=24)
# States from which a track still has to reach SoundCloud (or be flipped there) to go public.
BEFORE_RELEASE = (
    State.PENDING,
    State.BUILDING,
    State.READY,
    State.UPLOADING,
    State.PROCESSING,
    State.SCHEDULED,
    State.PUBLISHED,
    State.NEEDS_LOGIN,
)


def risk(outlook: LoginOutlook, release_at: dt.datetime) -> str | None:
    """Why the stored login would not carry a track to `release_at`, or None."""
    if not outlook.usable:
        return outlook.problem or "there is no usable SoundCloud login"
    if outlook.renewable:
        return None
    if outlook.works_until is None or outlook.works_until < release_at.timestamp():
        return outlook.problem or "the SoundCloud login ends before then"
    return None


def warning_text(release_at: dt.datetime, problem: str) -> str:
    return f"goes public {shown(release_at)}, but {problem} — before then, or it cannot go public"


class LoginWatch:
    def __init__(
        self,
        store: Store,
        outlook: Callable[[], LoginOutlook],
        events: EventBus,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.outlook = outlook
        self.events = events
        self.clock = clock
        self._told: set[tuple[str, str]] = set()

    def check(self) -> None:
        """Set or clear each track's warning; notify once per track and problem."""
        now = self.clock()
        soon = [
            t
            for t in self.store.in_states(*BEFORE_RELEASE)
            if t.release_at is not None and now < t.release_at <= now + LOOKAHEAD
        ]
        near = {t.id for t in soon}
        for track in self.store.warned():
            if track.id not in near:
                self._warn(track, None)
        if not soon:
            return
        outlook = self.outlook()  # keyring reads only when a release is near
        for track in soon:
            assert track.release_at is not None
            problem = risk(outlook, track.release_at)
            self._warn(track, warning_text(track.release_at, problem) if problem else None)
            if problem is None:
                continue
            if (track.id, problem) not in self._told:
                self._told.add((track.id, problem))
                log.warning("%s: %s", track.title, warning_text(track.release_at, problem))
                self.events.emit(
                    LoginBeforeRelease(
                        track_id=track.id,
                        title=track.title,
                        public_at=track.release_at,
                        problem=problem,
                    )
                )

    def _warn(self, track: Track, warning: str | None) -> None:
        if track.warning != warning:
            self.store.update(track.id, lambda t: setattr(t, "warning", warning))
