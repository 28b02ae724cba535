"""Scheduler: decides from the store what is due and hands it to the upload and publish workers.

The store is the only record of what is owed: APScheduler holds no job store of its own, only
wake-ups (one per track at its next due time) and a short periodic tick. The tick is what makes
a release due during a laptop's sleep run soon after wake: APScheduler's waits use a clock that
stops during suspend, so one long timer would fire late by the length of the sleep.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from releaseosd.model.states import State
from releaseosd.model.store import Store
from releaseosd.model.track import Track, utcnow

log = logging.getLogger("releaseosd.pipeline.schedule")

TICK_SECONDS = 15.0


@dataclass(frozen=True)
class Due:
    uploads: list[str]
    polls: list[str]
    releases: list[str]
    syncs: list[str]


def _ready_at(track: Track, now: dt.datetime) -> bool:
    return track.next_attempt_at is None or track.next_attempt_at <= now


def due_work(
    tracks: list[Track], now: dt.datetime, paused: bool, owed: list[Track] | None = None
) -> Due:
    """Pure: what is due now. Uploads oldest first; releases are never held back by pausing
    uploads (a paused queue must not make a producer miss their release minute). `owed`: the
    tracks with something still to send to SoundCloud (edits, playlists)."""
    uploads = sorted(
        (t for t in tracks if t.state == State.READY and _ready_at(t, now)),
        key=lambda t: (t.created_at, t.id),
    )
    polls = [t.id for t in tracks if t.state == State.PROCESSING and _ready_at(t, now)]
    releases = [
        t.id
        for t in tracks
        if t.state == State.SCHEDULED
        and (t.release_at is None or t.release_at <= now)
        and _ready_at(t, now)
    ]
    syncs = [
        t.id
        for t in owed or []
        if t.sync is not None
        and t.sync.due_at is not None
        and t.sync.due_at <= now
        and t.state in (State.SCHEDULED, State.PUBLISHED, State.RELEASED)
        and t.id not in releases
    ]
    return Due([] if paused else [t.id for t in uploads], polls, releases, syncs)


class _Pool:
    """A fixed set of daemon threads: an upload in flight must never keep the process from
    stopping on SIGTERM (its track stays 'uploading' and is looked up again on start)."""

    def __init__(self, name: str, size: int) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._queue.put(job)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("a background job failed")

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


class Scheduler:
    def __init__(
        self,
        store: Store,
        upload: Callable[[str], None],
        poll: Callable[[str], None],
        release: Callable[[str], None],
        concurrency: int,
        sync: Callable[[str], None] = lambda _id: None,
        clock: Callable[[], dt.datetime] = utcnow,
        tick_seconds: float = TICK_SECONDS,
        can_resume_login: Callable[[], bool] = lambda: False,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.store = store
        self._upload = upload
        self._poll = poll
        self._release = release
        self._sync = sync
        self.concurrency = concurrency
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.can_resume_login = can_resume_login
        # An explicit timezone: a bad $TZ must not break the scheduler's construction.
        self._aps = BackgroundScheduler(
            timezone=dt.UTC,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self._uploads = _Pool("upload", concurrency)
        # Releases and processing checks have their own workers: a long upload never stands
        # between a producer and their release minute.
        self._remote = _Pool("publish", 2)
        self._busy: set[str] = set()
        # Tracks whose job broke with an unexpected error: left alone until the next tick, so a
        # bug never turns into a tight loop of the same failing job.
        self._cooling: dict[str, float] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # a track's job ended
        self._uploads_running = 0

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._aps.add_job(self.kick, "interval", seconds=self.tick_seconds, id="tick")
        self._aps.start()
        self.kick()

    def every(self, job_id: str, seconds: float, job: Callable[[], None]) -> None:
        """Run `job` now and then every `seconds` on the scheduler's own threads (never the
        daemon's main loop, which must keep answering systemd's watchdog)."""

        def guarded() -> None:
            try:
                job()
            except Exception:
                log.exception("%s failed; it runs again in %.0f s", job_id, seconds)

        self._aps.add_job(guarded, "interval", seconds=seconds, id=job_id, next_run_time=utcnow())

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
        self._uploads.stop()
        self._remote.stop()

    def recover(self) -> None:
        """After a crash or stop: uploads that were in flight are retried — the uploader looks
        for the machine tag first, so a copy that reached SoundCloud is adopted, not repeated."""
        for track in self.store.in_states(State.UPLOADING):
            self.store.transition(
                track.id, State.READY, note="interrupted upload; will check SoundCloud first"
            )
        self.rebuild()

    def rebuild(self) -> None:
        """One wake-up per track that owes future work, from the store alone."""
        for job in self._aps.get_jobs():
            if job.id.startswith("wake:"):
                job.remove()
        now = self.clock()
        # Only these can owe a wake-up: asking for them spares reading every finished track.
        waiting = self.store.in_states(State.READY, State.PROCESSING, State.SCHEDULED)
        due = {t.id: t for t in (*waiting, *self.store.owing())}
        for track in due.values():
            when: dt.datetime | None = None
            if track.state in (State.READY, State.PROCESSING) and track.next_attempt_at:
                when = track.next_attempt_at
            elif track.state == State.SCHEDULED:
                when = max(filter(None, (track.release_at, track.next_attempt_at)), default=None)
            if track.sync is not None and track.sync.due_at is not None:
                when = min(filter(None, (when, track.sync.due_at)))
            if when is not None and when > now:
                self.wake(track.id, when)

    # --- wake-ups -----------------------------------------------------------------------------

    def wake(self, track_id: str, when: dt.datetime) -> None:
        self._aps.add_job(
            self.kick,
            "date",
            run_date=when,
            id=f"wake:{track_id}",
            replace_existing=True,
        )

    def kick(self) -> None:
        """Dispatch everything that is due now. Safe to call from any thread, any time."""
        if self.can_resume_login():
            self.resume_after_login()
        waiting = self.store.in_states(State.READY, State.PROCESSING, State.SCHEDULED)
        due = due_work(
            waiting, self.clock(), paused=self.store.flag("paused"), owed=self.store.owing()
        )
        remote = [
            *((t, self._release) for t in due.releases),
            *((t, self._poll) for t in due.polls),
            *((t, self._sync) for t in due.syncs),
        ]
        with self._lock:
            now = time.monotonic()
            self._cooling = {k: v for k, v in self._cooling.items() if v > now}
            for track_id, job in remote:
                if track_id not in self._busy and track_id not in self._cooling:
                    self._busy.add(track_id)
                    self._remote.submit(self._job(track_id, job))
            for track_id in due.uploads:
                if self._uploads_running >= self.concurrency:
                    break
                if track_id in self._busy or track_id in self._cooling:
                    continue
                self._busy.add(track_id)
                self._uploads_running += 1
                self._uploads.submit(self._job(track_id, self._upload, upload=True))

    @contextlib.contextmanager
    def holding(self, track_id: str, timeout: float = 60.0) -> Iterator[None]:
        """Keep the scheduler's hands off one track (waiting for a job on it to end first):
        what a command does to it meanwhile cannot race an upload or a release."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while track_id in self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"track {track_id} stayed busy for {timeout:.0f} s")
                self._idle.wait(left)
            self._busy.add(track_id)
        try:
            yield
        finally:
            with self._idle:
                self._busy.discard(track_id)
                self._idle.notify_all()
            self.kick()

    def _job(
        self, track_id: str, work: Callable[[str], None], upload: bool = False
    ) -> Callable[[], None]:
        def run() -> None:
            broke = True
            try:
                work(track_id)
                broke = False
            finally:
                with self._idle:
                    if broke:
                        self._cooling[track_id] = time.monotonic() + self.tick_seconds
                    self._busy.discard(track_id)
                    if upload:
                        self._uploads_running -= 1
                    self._idle.notify_all()
                # Something may have become due meanwhile (a free upload slot, a follow-up).
                self.kick()

        return run

    def resume_after_login(self) -> None:
        """Tracks waiting for a login go back to where they were, without losing an attempt."""
        for track in self.store.in_states(State.NEEDS_LOGIN):
            # Records from before `waited_in` was kept say it in their history.
            waited_in = track.waited_in or next(
                (h.previous for h in reversed(track.history) if h.state == State.NEEDS_LOGIN),
                None,
            )
            back = {
                State.UPLOADING: State.READY,
                State.READY: State.READY,
                State.PROCESSING: State.PROCESSING,
                State.SCHEDULED: State.SCHEDULED,
                State.PUBLISHED: State.PUBLISHED,
            }.get(waited_in or State.READY, State.READY)
            if back == State.READY and track.soundcloud.urn:
                back = State.PROCESSING
            self.store.transition(
                track.id,
                back,
                note="logged in again",
                last_error=None,
                next_attempt_at=None,
                waited_in=None,
            )
