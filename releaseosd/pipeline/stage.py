"""What the stages that talk to SoundCloud (upload, publish) share: the Stage they are built on,
the failure rules of a remote step, parking a track for a login, and what a track should look
like on SoundCloud (its fields, its sharing)."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from releaseosd.model.config import Config
from releaseosd.model.events import EventBus, Failed
from releaseosd.model.failure import Failure, Kind
from releaseosd.model.states import State
from releaseosd.model.store import Store
from releaseosd.model.track import Retrying, Track, utcnow
from releaseosd.pipeline.retry import at, plan_for

if TYPE_CHECKING:
    from releaseosd.soundcloud.client import TrackFields
    from releaseosd.soundcloud.remote import Remote

log = logging.getLogger("releaseosd.pipeline.stage")

# How soon a quick remote step (a processing check, hiding a track) is tried again, at most.
POLL_FIRST_SECONDS = 2.0
POLL_MAX_SECONDS = 60.0


Wake = Callable[[str, dt.datetime], None]


def track_fields(track: Track, sharing: str, meta: dict[str, Any] | None = None) -> TrackFields:
    """What SoundCloud is told about a track: its metadata (or `meta`, as computed for a
    request) with this sharing."""
    from releaseosd.soundcloud.client import TrackFields

    meta = track.metadata if meta is None else meta
    release_date = meta.get("release_date")
    return TrackFields(
        title=str(meta.get("title") or track.title),
        description=meta.get("description") or None,
        genre=meta.get("genre"),
        tags=tuple(meta.get("tags") or ()),
        sharing=sharing,  # type: ignore[arg-type]
        release_date=dt.date.fromisoformat(release_date) if release_date else None,
        label_name=meta.get("label"),
        release=meta.get("release"),
        isrc=meta.get("isrc"),
        license=meta.get("license"),
        downloadable=meta.get("downloadable"),
        streamable=meta.get("streamable"),
        commentable=meta.get("commentable"),
        quiet=meta.get("quiet"),
        permalink=meta.get("permalink"),
    )


def target_sharing(track: Track) -> str:
    """What the track becomes at its release: `releaseosd release` means public; a track whose
    release time was taken out of its sidecar stays private until it is told when."""
    if track.user_release is not None:
        return "public"
    if track.hold_private:
        return "private"
    return str(track.metadata.get("sharing") or "private")


def upload_sharing(track: Track) -> str:
    """A track with a release time goes up private; it is flipped at that minute."""
    return "private" if track.release_at is not None else target_sharing(track)


def wait_for_user(store: Store, events: EventBus, track_id: str, exc: Exception) -> None:
    """Park a track in needs_login, remembering the state it waited in so it resumes there.
    One notification per episode, not one per track."""
    from releaseosd.model.events import NeedsLogin as LoginNeeded
    from releaseosd.soundcloud.errors import NeedsLogin

    others_waiting = [t for t in store.in_states(State.NEEDS_LOGIN) if t.id != track_id]

    def park(t: Track) -> None:
        if t.state != State.NEEDS_LOGIN:
            t.waited_in = t.state
        t.state = State.NEEDS_LOGIN
        t.last_error = str(exc)
        t.met("login", Failure(Kind.NEEDS_USER, str(exc)), utcnow())

    store.update(track_id, park)
    if not others_waiting:
        problem = None if isinstance(exc, NeedsLogin) else str(exc)
        events.emit(LoginNeeded(track_id=track_id, problem=problem))


@dataclass
class Stage:
    """What the stages that talk to SoundCloud (upload, publish) share. A reload swaps `config`
    here, once, for both."""

    config: Config
    store: Store
    client: Callable[[], Remote]
    events: EventBus
    wake: Wake
    clock: Callable[[], dt.datetime] = utcnow
    # Look at an export again (the ingest), when an upload finds it is not what was checked.
    rebuild: Callable[[str], None] = lambda _path: None
    rng: random.Random = field(default_factory=random.Random)
    # Held while a playlist is looked up and created or filled.
    playlists: threading.Lock = field(default_factory=threading.Lock)


class OnStage:
    """Base of Uploader and Publisher: the shared Stage's parts, its config read at each use."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.store = stage.store
        self.client = stage.client
        self.events = stage.events
        self.emit = stage.events.emit
        self.wake = stage.wake
        self.clock = stage.clock
        self.rng = stage.rng

    @property
    def config(self) -> Config:
        return self.stage.config

    def step_failed(
        self,
        track: Track,
        exc: BaseException,
        doing: str,
        step: str,
        quick: bool = False,
        fix: str = "",
    ) -> None:
        """A remote step after the upload (a processing check, going private or public) failed:
        try again by the uploads' rules (backoff, Retry-After, rate limits and offline spells
        not using up attempts; `quick`: at most a minute apart), or give up and tell the
        producer what to run. Waiting for a login is the caller's business."""
        from releaseosd.soundcloud.errors import failure_of

        failure = failure_of(exc)
        cfg = self.config.uploads
        base, cap = cfg.backoff_base_seconds, cfg.backoff_max_seconds
        if quick:
            base, cap = min(base, POLL_FIRST_SECONDS), min(cap, POLL_MAX_SECONDS)
        plan = plan_for(
            failure,
            track.retry.attempts,
            track.retry.offline_attempts,
            cfg.max_attempts,
            base,
            cap,
            self.rng,
        )
        message = f"{doing}: {failure.message}"
        now = self.clock()
        if plan.give_up:

            def gave_up(t: Track) -> None:
                t.state = State.FAILED
                t.last_error = message
                t.retry = Retrying(error=message)
                t.met(step, failure, now)

            self.store.update(track.id, gave_up)
            fix = fix or f"releaseosd retry {track.id}"
            log.error("%s: %s; giving up (%s)", track.title, message, fix)
            self.emit(Failed(track_id=track.id, title=track.title, reason=message, fix_command=fix))
            return
        when = at(self.clock(), plan.delay_seconds)

        def later(t: Track) -> None:
            t.retry = Retrying(
                attempts=plan.attempts,
                offline_attempts=plan.offline_attempts,
                due_at=when,
                error=message,
            )
            t.next_attempt_at = when
            t.last_error = message
            t.met(step, failure, now)

        self.store.update(track.id, later, note=f"{doing} failed: {failure.message}")
        log.warning("%s: %s; trying again at %s", track.title, message, when.isoformat())
        self.wake(track.id, when)

    def too_public(self, track: Track) -> bool:
        """Public on SoundCloud though it should not be yet: a release time (or 'sharing:
        private') arrived while it went up public, or an adopted copy is public."""
        if track.soundcloud.sharing != "public":
            return False
        waiting = track.release_at is not None and track.release_at > self.clock()
        return waiting or target_sharing(track) == "private"

    def make_private(self, track: Track) -> bool:
        """Hide a track that is public too early, at once (not once SoundCloud has processed
        it). False when that failed and a retry is scheduled."""
        from releaseosd.soundcloud.errors import NEEDS_USER, SoundCloudError

        assert track.soundcloud.urn is not None
        try:
            self.client().update_track(track.soundcloud.urn, {"sharing": "private"})
        except NEEDS_USER as exc:
            wait_for_user(self.store, self.events, track.id, exc)
            return False
        except SoundCloudError as exc:
            self.step_failed(
                track, exc, "making it private until its release time", "make-private", quick=True
            )
            return False

        def hidden(t: Track) -> None:
            t.soundcloud.sharing = "private"
            t.soundcloud.sent_fields = {**t.soundcloud.sent_fields, "sharing": "private"}

        self.store.update(track.id, hidden, note="made private until its release time")
        return True

    def step_done(self, track_id: str) -> None:
        """The remote step succeeded: its counters start afresh for the next one."""

        def reset(t: Track) -> None:
            if t.retry.error is not None and t.last_error == t.retry.error:
                t.last_error = None
            t.retry = Retrying()

        self.store.update(track_id, reset)
