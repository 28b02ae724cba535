"""Fault injection for the test suite's SoundCloud sandbox: which request gets which failure.

Every kind of trouble SoundCloud's users reported (soundcloud/api issues) can be switched on here:
5xx answers (half of them HTML pages, as SoundCloud's edge sends them), 429 with or without
`Retry-After`, uploads whose connection drops after K bytes, processing that ends `failed`, 500s
only when artwork is attached, token answers lost after the refresh token rotated, a slow token
endpoint, and one-off scripted answers ("the next POST /tracks gets a 401 with an empty body").
Decisions are deterministic for a given seed and sequence of requests, so a test that fails
fails the same way the next time. TestSandbox (harness.py) consults them; the product's sandbox
knows nothing of them.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from html import escape
from typing import Any, Literal

from releaseosd.rehearsal.sandbox import _json_response, _Response, error_body, reason

ProcessingOutcome = Literal["finished", "failed"]
RATE_LINK = "https://developers.soundcloud.com/docs/api/rate-limits#errors"
# What `apply_to_auth` is about: faults skip these unless it is set.
AUTH_TEMPLATES = frozenset({"/authorize", "/oauth/token"})


def html_error_page(status: int) -> str:
    """The kind of page SoundCloud's edge answers with when the API behind it is down (#300, #301)."""
    title = f"{status} {escape(reason(status))}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>SoundCloud - {title}</title></head>\n<body>"
        f"<h1>{title}</h1><p>We are experiencing some technical difficulties. "
        "Please try again later.</p></body></html>\n"
    )


@dataclass(frozen=True)
class ScriptedFault:
    """One answer to give instead of the real one, to the first request that `match`es.

    `match` is None (any request), a method ("POST"), or a method and a route template
    ("POST /tracks", "PUT /tracks/{track_urn}"). `body` None means a SoundCloud-shaped body
    (JSON, or an HTML page when `html`); "" means an empty body.
    """

    status: int
    html: bool = False
    retry_after: int | None = None
    body: str | None = None
    match: str | None = None

    def matches(self, method: str, template: str) -> bool:
        if self.match is None:
            return True
        want_method, _, want_path = self.match.partition(" ")
        if want_method.upper() != method:
            return False
        return not want_path or want_path == template


@dataclass(frozen=True)
class FaultDecision:
    status: int
    html: bool
    retry_after: int | None
    body: str | None
    cause: Literal["script", "rate_limit", "error_rate"]

    def response(self) -> _Response:
        """The answer, shaped as SoundCloud (or the edge in front of it) sends it."""
        headers = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
        if self.body is not None:
            ctype = "text/html; charset=utf-8" if self.html else "application/json; charset=utf-8"
            body = self.body.encode("utf-8")
            return _Response(self.status, body, ctype if self.body else None, headers)
        if self.html:
            page = html_error_page(self.status).encode("utf-8")
            return _Response(self.status, page, "text/html; charset=utf-8", headers)
        if self.status == 429:
            answer = error_body(429, "rate limit reached; slow down", link=RATE_LINK)
            answer["spam_warning_urn"] = None
            return _json_response(429, answer, headers)
        return _json_response(self.status, error_body(self.status, reason(self.status)), headers)


_SETTINGS = (
    "error_rate",
    "rate_limit_every",
    "rate_limit_rate",
    "retry_after",
    "drop_upload_after_bytes",
    "upload_bytes_per_second",
    "drop_upload_times",
    "processing_outcome",
    "artwork_fails",
    "deny_authorization",
    "apply_to_auth",
    "drop_token_answers",
    "drop_upload_answers",
    "token_answer_delay",
    "seed",
)


@dataclass
class Faults:
    """Mutable fault settings of one sandbox, safe to change from a test while it serves.

    Assigning a field works; `update(...)` also validates and restarts the counters, which makes
    "every Nth request" count from the moment of the change.
    """

    error_rate: float = 0.0
    """Fraction of API requests answered 500/503; every second one of those is an HTML page."""
    rate_limit_every: int = 0
    """Every Nth API request is answered 429 (0: off)."""
    rate_limit_rate: float = 0.0
    """Fraction of API requests answered 429, drawn from the seeded generator."""
    retry_after: int | None = 1
    """Seconds sent in `Retry-After` with each 429; None sends none (SoundCloud usually doesn't)."""
    drop_upload_after_bytes: int | None = None
    """Close the socket of a POST /tracks after reading this many body bytes (None: off)."""
    upload_bytes_per_second: int | None = None
    """Read a POST /tracks body no faster than this: a slow uplink, to watch an upload go."""
    drop_upload_times: int | None = 1
    """How many uploads to drop before the fault clears itself (None: every one)."""
    processing_outcome: ProcessingOutcome = "finished"
    """Where processing of tracks uploaded from now on ends."""
    artwork_fails: bool = False
    """Uploads carrying `track[artwork_data]` get a 500 (#409)."""
    deny_authorization: bool = False
    """/authorize redirects back with error=access_denied, as when the user clicks "Deny"."""
    apply_to_auth: bool = False
    """Also inject error_rate/rate-limit faults into /authorize and /oauth/token."""
    drop_token_answers: int = 0
    """The next N successful /oauth/token grants are carried out (a refresh token rotates, the
    old one dies) and then the connection is closed without an answer: an answer lost in
    transit, a client killed or a laptop asleep mid-request. Counts down to 0 (off)."""
    drop_upload_answers: int = 0
    """The next N uploads that succeed are created (the track exists, its quota is spent) and
    then the connection is closed without an answer: the upload's answer lost in transit, as
    when the client is killed or the link drops after the body is in. Counts down to 0 (off)."""
    token_answer_delay: float = 0.0
    """Seconds every /oauth/token answer (granted or refused) waits after the grant was decided:
    a slow link, which widens the window in which two refreshes race."""
    seed: int = 0
    script: list[ScriptedFault] = field(default_factory=list)
    """One-off answers, consumed in order by the first matching request."""

    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)
    _errors: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        _check(self)

    def update(self, **changes: Any) -> None:
        """Change settings by name (JSON-friendly values accepted); unknown names are an error."""
        unknown = sorted(set(changes) - set(_SETTINGS) - {"script"})
        if unknown:
            raise ValueError(
                f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(_SETTINGS)}, script"
            )
        with self._lock:
            candidate = Faults(**{name: getattr(self, name) for name in _SETTINGS})
            candidate.script = list(self.script)
            for name, value in changes.items():
                if name == "script":
                    value = [_scripted(item) for item in value]
                setattr(candidate, name, value)
            _check(candidate)
            for name in (*_SETTINGS, "script"):
                setattr(self, name, getattr(candidate, name))
            self._rng = random.Random(self.seed)
            self._count = 0
            self._errors = 0

    def clear(self) -> None:
        """Back to a sandbox that never fails."""
        defaults = Faults()
        self.update(**{name: getattr(defaults, name) for name in _SETTINGS}, script=[])

    def push(
        self,
        status: int,
        *,
        html: bool = False,
        retry_after: int | None = None,
        body: str | None = None,
        match: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` scripted answers (see ScriptedFault)."""
        fault = _scripted(
            {
                "status": status,
                "html": html,
                "retry_after": retry_after,
                "body": body,
                "match": match,
            }
        )
        with self._lock:
            self.script.extend([fault] * times)

    def decide(self, method: str, template: str, *, is_auth: bool) -> FaultDecision | None:
        """The fault (if any) to answer this request with, before the sandbox looks at it."""
        with self._lock:
            for index, fault in enumerate(self.script):
                if fault.matches(method, template):
                    del self.script[index]
                    return FaultDecision(
                        fault.status, fault.html, fault.retry_after, fault.body, "script"
                    )
            if is_auth and not self.apply_to_auth:
                return None
            self._count += 1
            limited = self.rate_limit_every > 0 and self._count % self.rate_limit_every == 0
            if limited or (self.rate_limit_rate > 0 and self._rng.random() < self.rate_limit_rate):
                return FaultDecision(429, False, self.retry_after, None, "rate_limit")
            if self.error_rate > 0 and self._rng.random() < self.error_rate:
                # Cycle 503 HTML, 500 JSON, 500 HTML, 503 JSON: both codes, both shapes, evenly.
                n = self._errors
                self._errors += 1
                status = 503 if n % 4 in (0, 3) else 500
                return FaultDecision(status, n % 2 == 0, None, None, "error_rate")
            return None

    def drop_upload(self, after_bytes: int, *, times: int | None = 1) -> None:
        """Drop the connection of the next `times` uploads (None: all) after `after_bytes`."""
        self.update(drop_upload_after_bytes=after_bytes, drop_upload_times=times)

    def upload_drop_point(self) -> int | None:
        """Bytes of the next upload's body to read before dropping its connection, if any."""
        with self._lock:
            if self.drop_upload_times is not None and self.drop_upload_times <= 0:
                return None
            return self.drop_upload_after_bytes

    def upload_dropped(self) -> None:
        with self._lock:
            if self.drop_upload_times is not None:
                self.drop_upload_times -= 1
                if self.drop_upload_times <= 0:
                    self.drop_upload_after_bytes = None
                    self.drop_upload_times = 1

    def upload_answer_dropped(self) -> bool:
        """Whether to drop the answer of the upload just created (and count it)."""
        with self._lock:
            if self.drop_upload_answers <= 0:
                return False
            self.drop_upload_answers -= 1
            return True

    def token_answer_dropped(self) -> bool:
        """Whether to drop the answer of the grant just carried out (and count it)."""
        with self._lock:
            if self.drop_token_answers <= 0:
                return False
            self.drop_token_answers -= 1
            return True

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {name: getattr(self, name) for name in _SETTINGS}
            out["script"] = [
                {f.name: getattr(s, f.name) for f in fields(ScriptedFault)} for s in self.script
            ]
            return out


def _scripted(item: Mapping[str, Any] | ScriptedFault) -> ScriptedFault:
    if isinstance(item, ScriptedFault):
        fault = item
    else:
        if not isinstance(item, Mapping):
            raise ValueError(f"a scripted fault must be an object, got {item!r}")
        allowed = {f.name for f in fields(ScriptedFault)}
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise ValueError(f"unknown scripted fault key(s) {', '.join(unknown)}")
        if "status" not in item:
            raise ValueError("a scripted fault needs a 'status'")
        fault = ScriptedFault(**item)
    if not isinstance(fault.status, int) or not 100 <= fault.status <= 599:
        raise ValueError(f"scripted fault status must be an HTTP status, got {fault.status!r}")
    if fault.retry_after is not None and (
        not isinstance(fault.retry_after, int) or fault.retry_after < 0
    ):
        raise ValueError(f"retry_after must be whole seconds ≥ 0, got {fault.retry_after!r}")
    return fault


def _check(f: Faults) -> None:
    for name in ("error_rate", "rate_limit_rate"):
        value = getattr(f, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")
    if not isinstance(f.rate_limit_every, int) or f.rate_limit_every < 0:
        raise ValueError(f"rate_limit_every must be a whole number ≥ 0, got {f.rate_limit_every!r}")
    # Retry-After carries delay-seconds (RFC 9110 §10.2.3): a whole number.
    if f.retry_after is not None and (
        not isinstance(f.retry_after, int) or isinstance(f.retry_after, bool) or f.retry_after < 0
    ):
        raise ValueError(f"retry_after must be whole seconds ≥ 0 or None, got {f.retry_after!r}")
    for name in ("drop_upload_after_bytes", "drop_upload_times"):
        value = getattr(f, name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a whole number ≥ 0 or None, got {value!r}")
    if f.processing_outcome not in ("finished", "failed"):
        raise ValueError(
            f"processing_outcome must be 'finished' or 'failed', got {f.processing_outcome!r}"
        )
    if (
        not isinstance(f.drop_token_answers, int)
        or isinstance(f.drop_token_answers, bool)
        or f.drop_token_answers < 0
    ):
        raise ValueError(
            f"drop_token_answers must be a whole number ≥ 0, got {f.drop_token_answers!r}"
        )
    if (
        not isinstance(f.drop_upload_answers, int)
        or isinstance(f.drop_upload_answers, bool)
        or f.drop_upload_answers < 0
    ):
        raise ValueError(
            f"drop_upload_answers must be a whole number ≥ 0, got {f.drop_upload_answers!r}"
        )
    delay = f.token_answer_delay
    if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= 60:
        raise ValueError(f"token_answer_delay must be seconds from 0 to 60, got {delay!r}")
    for name in ("artwork_fails", "deny_authorization", "apply_to_auth"):
        if not isinstance(getattr(f, name), bool):
            raise ValueError(f"{name} must be true or false, got {getattr(f, name)!r}")
