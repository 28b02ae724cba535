"""The producer's wall clock: what a release time without an offset means, and which calendar day
a listener is shown.

The local zone is the C library's (what `date` shows: $TZ in any form, else /etc/localtime), so
the daemon, the CLI and the service agree with the desktop. A wall-clock time is made explicit by
PEP 495's fold=0 rule, as zoneinfo does: a time inside a spring-forward gap (02:30 on the night
Europe/Berlin skips from 02:00 to 03:00) takes the offset in effect before the gap, so it lands
after the gap and never before the wall clock has passed it; an ambiguous fall-back time means its
first occurrence. Python's own `naive.astimezone()` resolves gap times an hour early.
"""

from __future__ import annotations

import datetime as dt
import time

_DAY = 86400.0
# Times outside these years are typos, and near the ends of the calendar the system's clock
# functions overflow.
MIN_YEAR, MAX_YEAR = 1970, 2999


def _offset_at(timestamp: float) -> int:
    return time.localtime(timestamp).tm_gmtoff


def localize(wall: dt.datetime) -> dt.datetime:
    """A local wall-clock time (naive, or aware: its own offset is ignored) as an aware time."""
    naive = wall.replace(tzinfo=None, fold=0)
    as_if_utc = naive.replace(tzinfo=dt.UTC).timestamp()
    # Offsets a day either side bracket any transition near this wall time.
    before, after = _offset_at(as_if_utc - _DAY), _offset_at(as_if_utc + _DAY)

    def fits(offset: int) -> bool:
        return _offset_at(as_if_utc - offset) == offset

    # fold=0: the offset before the transition, unless only the later one describes this time.
    offset = after if fits(after) and not fits(before) else before
    return naive.replace(tzinfo=dt.timezone(dt.timedelta(seconds=offset)))


def explicit(moment: dt.datetime) -> dt.datetime:
    """An aware time as it is; a naive one is local wall-clock time."""
    return localize(moment) if moment.tzinfo is None else moment


def parse(text: str) -> dt.datetime:
    """An ISO 8601 time as a producer types it; without an offset it is local time. Raises
    ValueError for text that is not one, or a time outside what the clock can represent."""
    moment = dt.datetime.fromisoformat(text.strip())
    check_year(moment)
    return explicit(moment)


def check_year(moment: dt.datetime) -> None:
    """ValueError for a time outside the years releaseosd schedules in."""
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(
            f"{moment.isoformat()} is not a time releaseosd can schedule "
            f"(years {MIN_YEAR} to {MAX_YEAR})"
        )


def local_date(moment: dt.datetime) -> dt.date:
    """The calendar day a moment falls on in the producer's zone (a release's display date)."""
    return explicit(moment).astimezone().date()


def shown(moment: dt.datetime, spec: str = "%Y-%m-%d %H:%M %Z") -> str:
    """A moment on the producer's wall clock, for messages."""
    return explicit(moment).astimezone().strftime(spec)
