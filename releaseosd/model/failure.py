"""A failure as a value: what kind it is says whether and how to try again (pipeline/retry.py
decides when); SoundCloud's errors are classified into these by soundcloud/errors.py."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a failure says about trying again."""

    RETRYABLE = "retryable"  # a 5xx, a timeout, an HTML error page: later, with backoff
    RATE_LIMITED = "rate-limited"  # SoundCloud asks everyone to wait; never counts as an attempt
    OFFLINE = "offline"  # SoundCloud cannot be reached at all: counts only a few times in a row
    NEEDS_USER = "needs-user"  # a login, a secret, an unlocked keyring: waits for the producer
    PERMANENT = "permanent"  # repeating will not help; the producer gets SoundCloud's message


@dataclass(frozen=True)
class Failure:
    kind: Kind
    message: str
    status: int | None = None
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind in (Kind.RETRYABLE, Kind.RATE_LIMITED, Kind.OFFLINE)
