"""The scheduler's and the retry policy's decisions as plain functions: no clock, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from releaseosd.model.states import State
from releaseosd.model.store import Store
from releaseosd.model.track import Track
from releaseosd.pipeline.retry import OFFLINE_ATTEMPTS_COUNTED, backoff_seconds, plan_retry
from releaseosd.pipeline.schedule import Scheduler, due_work

NOW = dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)


@given(
    attempt=st.integers(1, 50),
    retry_after=st.none() | st.floats(0, 10_000),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_bounded_and_never_undercuts_retry_after(
    attempt: int, retry_after: float | None, seed: int
) -> None:
    delay = backoff_seconds(attempt, 30, 3600, random.Random(seed), retry_after)
    assert delay >= min(3600, 30 * 2 ** (attempt - 1))
    assert delay <= 3600 * 1.25 or (retry_after is not None and delay <= retry_after + 0.05)
    if retry_after is not None:
        assert delay > retry_after


def test_backoff_grows() -> None:
    rng = random.Random(1)
    delays = [backoff_seconds(n, 1, 1000, rng) for n in range(1, 8)]
    assert all(b > a for a, b in itertools.pairwise(delays))


def test_give_up_after_max_attempts() -> None:
    rng = random.Random(0)
    plan = plan_retry(8, 0, False, 10, 1, 10, rng)
    assert not plan.give_up and plan.attempts == 9
    plan = plan_retry(9, 0, False, 10, 1, 10, rng)
    assert plan.give_up and plan.attempts == 10


def test_a_long_outage_does_not_use_up_the_attempts() -> None:
    rng = random.Random(0)
    attempts, offline = 0, 0
    for _ in range(500):  # hours offline
        plan = plan_retry(attempts, offline, True, 10, 30, 3600, rng)
        assert not plan.give_up
        attempts, offline = plan.attempts, plan.offline_attempts
    assert attempts == OFFLINE_ATTEMPTS_COUNTED
    # Back online, a real failure resets the offline streak and counts again.
    plan = plan_retry(attempts, offline, False, 10, 30, 3600, rng)
    assert plan.attempts == OFFLINE_ATTEMPTS_COUNTED + 1 and plan.offline_attempts == 0


def test_rate_limits_never_count_and_wait_at_least_retry_after() -> None:
    plan = plan_retry(9, 0, False, 10, 0.1, 1, random.Random(0), retry_after=120, rate_limited=True)
    assert not plan.give_up and plan.attempts == 9
    assert plan.delay_seconds > 120


def _track(state: State, minutes_ago: int, **kw: object) -> Track:
    return Track(
        audio_path=f"/m/{minutes_ago}.wav",
        state=state,
        created_at=NOW - dt.timedelta(minutes=minutes_ago),
        **kw,  # type: ignore[arg-type]
    )


def test_uploads_oldest_first_and_only_when_due() -> None:
    old = _track(State.READY, 30)
    new = _track(State.READY, 5)
    waiting = _track(State.READY, 60, next_attempt_at=NOW + dt.timedelta(seconds=10))
    due = due_work([new, waiting, old], NOW, paused=False)
    assert due.uploads == [old.id, new.id]


@pytest.mark.parametrize("paused", [True, False])
def test_pausing_holds_uploads_but_never_a_release(paused: bool) -> None:
    ready = _track(State.READY, 1)
    release = _track(State.SCHEDULED, 10, release_at=NOW - dt.timedelta(seconds=1))
    future = _track(State.SCHEDULED, 10, release_at=NOW + dt.timedelta(seconds=1))
    polling = _track(State.PROCESSING, 3)
    due = due_work([ready, release, future, polling], NOW, paused=paused)
    assert due.uploads == ([] if paused else [ready.id])
    assert due.releases == [release.id]
    assert due.polls == [polling.id]


def test_a_release_that_failed_waits_for_its_retry_time() -> None:
    track = _track(
        State.SCHEDULED,
        10,
        release_at=NOW - dt.timedelta(minutes=1),
        next_attempt_at=NOW + dt.timedelta(seconds=5),
    )
    assert due_work([track], NOW, paused=False).releases == []
    assert due_work([track], NOW + dt.timedelta(seconds=6), paused=False).releases == [track.id]


def test_a_release_due_during_sleep_runs_at_the_next_tick(tmp_path: Path) -> None:
    """A laptop asleep past a release minute: APScheduler's date job waits on a clock that stopped
    during suspend, so the periodic tick (well under 60 s) is what notices the wall clock moved."""
    from releaseosd.model.store import Store
    from releaseosd.pipeline.schedule import TICK_SECONDS, Scheduler

    now = [NOW]
    store = Store.open(tmp_path)
    track = store.insert(
        Track(
            audio_path="/m/a.wav",
            state=State.SCHEDULED,
            release_at=NOW + dt.timedelta(hours=1),
            soundcloud={"urn": "soundcloud:tracks:1", "sharing": "private"},  # type: ignore[arg-type]
        )
    )
    released: list[str] = []
    done = threading.Event()

    def release(track_id: str) -> None:
        released.append(track_id)
        store.transition(track_id, State.RELEASED)
        done.set()

    scheduler = Scheduler(
        store,
        upload=lambda _id: None,
        poll=lambda _id: None,
        release=release,
        concurrency=1,
        clock=lambda: now[0],
        tick_seconds=3600,  # the tick is driven by hand below
    )
    try:
        scheduler.kick()
        assert released == []
        now[0] = NOW + dt.timedelta(hours=3)  # woke up two hours after the release minute
        scheduler.kick()  # what the periodic tick does
        assert done.wait(5)
        assert released == [track.id]
    finally:
        scheduler.stop()
        store.close()
    assert TICK_SECONDS <= 60


@pytest.mark.parametrize("offline_failures", [1_100, 10**6])
def test_weeks_offline_keep_waiting_the_cap_instead_of_overflowing(offline_failures: int) -> None:
    """Found by a daemon left running after its chaos run: every offline failure counts for the
    backoff's exponent, and after ~1000 of them 2.0 ** n overflowed; the failing job then ran
    again at once, 450 000 times, logging each (65 % CPU, 17 M log lines)."""
    plan = plan_retry(3, offline_failures, True, 5, 1.0, 600.0, random.Random(1))
    assert not plan.give_up and 600.0 <= plan.delay_seconds <= 750.0
    assert backoff_seconds(offline_failures, 1.0, 600.0, random.Random(2)) >= 600.0


def test_a_job_that_breaks_is_not_run_again_until_the_next_tick(tmp_path: Path) -> None:
    """The overflow above turned into a tight loop because a job that raised was due again at
    once, and the scheduler ran it again right away, forever."""
    store = Store.open(tmp_path / "state")
    track = store.insert(Track(audio_path="/m/b.wav", state=State.READY))
    runs: list[str] = []
    ran = threading.Event()

    def broken_upload(track_id: str) -> None:
        runs.append(track_id)
        ran.set()
        raise RuntimeError("a bug in a stage")

    scheduler = Scheduler(
        store,
        upload=broken_upload,
        poll=lambda _id: None,
        release=lambda _id: None,
        concurrency=1,
        tick_seconds=3600,
    )
    try:
        scheduler.kick()
        assert ran.wait(5)
        deadline = time.monotonic() + 5
        while track.id in scheduler._busy and time.monotonic() < deadline:
            time.sleep(0.01)  # (polling the job's end with a deadline)
        scheduler.stop()  # no worker left to take a second run; kicks below only dispatch
        for _ in range(3):
            scheduler.kick()
        assert runs == [track.id]
        assert scheduler._busy == set() and track.id in scheduler._cooling
    finally:
        scheduler.stop()
        store.close()
