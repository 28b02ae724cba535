"""When to try again: pure decisions, no clocks or I/O, so every rule is unit-testable."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from releaseosd.model.failure import Failure, Kind

# Attempts spent while SoundCloud cannot be reached at all count only this many times in a row:
# an afternoon offline is normal for a laptop and must not use up a track's attempts.
OFFLINE_ATTEMPTS_COUNTED = 3


@dataclass(frozen=True)
class RetryPlan:
    give_up: bool
    delay_seconds: float
    attempts: int
    offline_attempts: int


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None
) -> float:
    """Exponential backoff with jitter; never earlier than SoundCloud's Retry-After."""
    # The exponent stops growing long before a float overflows: weeks offline count thousands
    # of attempts, and the wait is the cap by then anyway.
    exponential = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    # Jitter only ever lengthens the wait, so that many tracks failing together spread out
    # without any of them coming back earlier than the schedule (or Retry-After) allows.
    delay = exponential * (1.0 + 0.25 * rng.random())
    if retry_after is not None:
        delay = max(delay, retry_after + 0.05)
    return delay


def plan_retry(
    attempts: int,
    offline_attempts: int,
    offline: bool,
    max_attempts: int,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
    rate_limited: bool = False,
) -> RetryPlan:
    """What to do after a failed attempt that may succeed later.

    `attempts` is what has been counted so far; an offline failure counts only while fewer than
    OFFLINE_ATTEMPTS_COUNTED offline failures happened in a row, and a rate limit never counts:
    SoundCloud asking everyone to slow down says nothing about this track.
    """
    if rate_limited:
        delay = backoff_seconds(max(attempts, 1), base, cap, rng, retry_after)
        return RetryPlan(False, delay, attempts, offline_attempts)
    if offline:
        offline_attempts += 1
        counted = attempts + 1 if offline_attempts <= OFFLINE_ATTEMPTS_COUNTED else attempts
    else:
        offline_attempts = 0
        counted = attempts + 1
    if counted >= max_attempts:
        return RetryPlan(True, 0.0, counted, offline_attempts)
    delay = backoff_seconds(max(counted, offline_attempts), base, cap, rng, retry_after)
    return RetryPlan(False, delay, counted, offline_attempts)


def at(now: dt.datetime, seconds: float) -> dt.datetime:
    return now + dt.timedelta(seconds=seconds)


def plan_for(
    failure: Failure,
    attempts: int,
    offline_attempts: int,
    max_attempts: int,
    base: float,
    cap: float,
    rng: random.Random,
) -> RetryPlan:
    """plan_retry for any step that talks to SoundCloud: uploads, processing checks, going
    private or public, edits and playlists all follow the same rules. A failure that is not
    transient gives up at once."""
    if not failure.transient:
        return RetryPlan(True, 0.0, attempts + 1, offline_attempts)
    return plan_retry(
        attempts,
        offline_attempts,
        failure.kind == Kind.OFFLINE,
        max_attempts,
        base,
        cap,
        rng,
        failure.retry_after,
        rate_limited=failure.kind == Kind.RATE_LIMITED,
    )
