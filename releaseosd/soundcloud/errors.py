"""What went wrong talking to SoundCloud, as values the scheduler and the user can act on.

`classify` turns an httpx response or exception into one of these; it is a pure function so the
whole table of failures seen in the wild (see the soundcloud/api issues) is unit-testable.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx

from releaseosd.model.failure import Failure, Kind

LOGIN_HINT = "run 'releaseosd auth login'"
_MAX_MESSAGE = 300


class SoundCloudError(Exception):
    """Base of every SoundCloud failure.

    `retryable` tells the scheduler whether trying again later can help; `retry_after` is
    SoundCloud's own wish (seconds) when it gave one; `soundcloud_message` is SoundCloud's text,
    kept for the user.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        soundcloud_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.soundcloud_message = soundcloud_message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status}, "
            f"retryable={self.retryable}, retry_after={self.retry_after})"
        )


class Retryable(SoundCloudError):
    """Network trouble, timeouts, 5xx, HTML error pages: try again later."""

    default_retryable = True


class RateLimited(Retryable):
    """429: back off, for `retry_after` seconds when SoundCloud says how long."""


class AssetChanged(SoundCloudError):
    """The file being uploaded is not the one that was checked (it changed on disk before or
    while it was sent); the request was cut off before its last byte, so SoundCloud created
    nothing. Build and check the new export, then upload that."""

    default_retryable = True


class RequestWithdrawn(SoundCloudError):
    """The upload was cut off before its last byte because what it would create is no longer
    wanted as sent (an edit made while it was sent says: not public yet); SoundCloud created
    nothing. Upload again at once, as the track is now."""

    default_retryable = True


class Permanent(SoundCloudError):
    """A 4xx that repeating will not fix; the message carries SoundCloud's explanation."""


class NotFound(Permanent):
    """404: the track or playlist is gone (deleted on soundcloud.com, or a wrong URN)."""


class QuotaExhausted(Permanent):
    """The account has no upload time left."""


class UploadNotPermitted(Permanent):
    """401 with an empty body on an upload: the app may not upload for this account.

    A token refresh does not fix it: the app's upload permission was revoked, or the token is a
    client-credentials one.
    """


class NeedsLogin(SoundCloudError):
    """No usable tokens: the user has to log in again (refresh rejected, never logged in, …)."""


class LoginFailed(SoundCloudError):
    """The interactive login did not complete (wrong state, refused code, timeout, …)."""


class NotConfigured(SoundCloudError):
    """Client id or client secret missing."""


class KeyringUnavailable(SoundCloudError):
    """No usable keyring backend for the tokens and the client secret."""


def soundcloud_message(body: Any) -> str | None:
    """SoundCloud's human text from its JSON error shape, or None.

    The shape is `{"code", "message", "link", "status", "errors": [{"error_message"}], "error"}`;
    OAuth endpoints answer `{"error", "error_description"}`. Every distinct text is kept.
    """
    if not isinstance(body, dict):
        return None
    texts: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value.strip() and value.strip() not in texts:
            texts.append(value.strip())

    add(body.get("message"))
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict):
                add(item.get("error_message"))
            else:
                add(item)
    add(body.get("error_description"))
    add(body.get("error"))
    if not texts:
        return None
    return _clip("; ".join(texts))


def oauth_error_code(response: httpx.Response) -> str | None:
    """The OAuth error code (`invalid_grant`, …) in either of SoundCloud's answer shapes."""
    body = _json_body(response)
    if not isinstance(body, dict):
        return None
    for key in ("error", "message"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date; None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


def classify(
    failure: httpx.Response | BaseException,
    *,
    upload: bool = False,
    action: str = "",
    now: float | None = None,
) -> SoundCloudError:
    """Turn a failed response or a transport exception into the error the caller should raise.

    `upload` marks a POST /tracks (where a bare 401 means "not allowed to upload"); `action` is a
    short description ("uploading 'Night Drive.wav'") put in front of the message.
    """
    prefix = f"{action}: " if action else ""
    if isinstance(failure, httpx.Response):
        return _classify_response(failure, upload=upload, prefix=prefix, now=now)
    return _classify_exception(failure, prefix)


def _classify_exception(exc: BaseException, prefix: str) -> SoundCloudError:
    if isinstance(exc, SoundCloudError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        kind = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for its answer",
            httpx.WriteTimeout: "sending",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "talking to it")
        return Retryable(f"{prefix}SoundCloud timed out while {kind}; will try again")
    if isinstance(exc, httpx.ConnectError):
        return Retryable(
            f"{prefix}cannot reach SoundCloud ({_clip(str(exc)) or 'connection failed'}); "
            "check the network; will try again"
        )
    if isinstance(exc, httpx.TransportError):
        return Retryable(
            f"{prefix}connection to SoundCloud broke ({type(exc).__name__}: "
            f"{_clip(str(exc)) or 'no detail'}); will try again"
        )
    if isinstance(exc, OSError):
        name = getattr(exc, "filename", None)
        where = f" {name}" if name else ""
        return Permanent(f"{prefix}cannot read{where}: {exc.strerror or exc}")
    return Permanent(f"{prefix}unexpected error: {type(exc).__name__}: {_clip(str(exc))}")


def _classify_response(
    response: httpx.Response, *, upload: bool, prefix: str, now: float | None
) -> SoundCloudError:
    status = response.status_code
    if response.is_success:
        raise ValueError(f"classify() called on a successful response ({status})")
    body = _json_body(response)
    sc_message = soundcloud_message(body)
    html = body is None and _looks_like_html(response)
    said = f": {sc_message}" if sc_message else ""

    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        wait = (
            f"SoundCloud asks to wait {retry_after:.0f} s"
            if retry_after is not None
            else "backing off"
        )
        return RateLimited(
            f"{prefix}SoundCloud is rate limiting this account (429){said}; {wait}",
            status=status,
            retry_after=retry_after,
            soundcloud_message=sc_message,
        )
    if status >= 500 or status == 408:
        what = "an HTML error page" if html else "an error"
        return Retryable(
            f"{prefix}SoundCloud answered {status} with {what}{said}; will try again",
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
            soundcloud_message=sc_message,
        )
    if status == 401:
        if upload and not response.content.strip():
            return UploadNotPermitted(
                f"{prefix}SoundCloud refused the upload (401, no message). This app may not "
                "upload for this account: its upload permission was revoked or the token is not a "
                "user token. A token refresh does not fix this; check the app at "
                f"https://soundcloud.com/you/apps, then {LOGIN_HINT}",
                status=status,
            )
        return NeedsLogin(
            f"{prefix}SoundCloud refused the login (401){said}. If your account's e-mail is "
            f"unverified, verify it; otherwise {LOGIN_HINT}",
            status=status,
            soundcloud_message=sc_message,
        )
    if status == 404:
        return NotFound(
            f"{prefix}SoundCloud has no such item (404){said}",
            status=status,
            soundcloud_message=sc_message,
        )
    if html:
        # A CDN's HTML page (e.g. 403 from the edge, issue #335) is not SoundCloud's verdict.
        return Retryable(
            f"{prefix}SoundCloud's edge answered {status} with an HTML page; will try again",
            status=status,
        )
    return Permanent(
        f"{prefix}SoundCloud refused the request ({status}){said or ' without a message'}",
        status=status,
        soundcloud_message=sc_message,
    )


def quota_problem(me: dict[str, Any], needed_seconds: float | None = None) -> str | None:
    """Why /me's quota forbids an upload (plain words), or None if it allows it."""
    quota = me.get("quota")
    if not isinstance(quota, dict) or quota.get("unlimited_upload_quota") is True:
        return None
    left = quota.get("upload_seconds_left")
    if not isinstance(left, int | float) or isinstance(left, bool):
        return None
    if left <= 0:
        return (
            "your SoundCloud upload time is used up (0 minutes left on your plan); delete old "
            "tracks or upgrade the plan, then retry"
        )
    if needed_seconds is not None and needed_seconds > left:
        return (
            f"this track is {needed_seconds / 60:.1f} minutes long but your SoundCloud plan has "
            f"{left / 60:.1f} minutes of upload time left; delete old tracks or upgrade the plan"
        )
    return None


# After this many consecutive 5xx answers to uploads carrying artwork, the upload drops the
# artwork and tries again without it: SoundCloud has been seen to answer 500 only when
# `artwork_data` is attached (soundcloud/api#409).
ARTWORK_5XX_LIMIT = 3


def artwork_5xx_streak(streak: int, status: int | None) -> int:
    """The run of consecutive 5xx answers to uploads carrying artwork, after one more such upload
    failed with `status`: any other answer, or a network failure (None, which says nothing about
    the artwork), ends the run."""
    return streak + 1 if status is not None and 500 <= status <= 599 else 0


def should_drop_artwork(streak: int) -> bool:
    """Whether an upload whose artwork met `streak` consecutive 5xx answers goes without it."""
    return streak >= ARTWORK_5XX_LIMIT


def _json_body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _looks_like_html(response: httpx.Response) -> bool:
    if "html" in response.headers.get("content-type", "").lower():
        return True
    head = response.content[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


# Failures only the user can fix (log in, set up the app, unlock the keyring). A track meeting one
# waits in `needs_login` without spending attempts, and carries on once the user has acted.
NEEDS_USER: tuple[type[SoundCloudError], ...] = (NeedsLogin, NotConfigured, KeyringUnavailable)


def failure_of(exc: BaseException) -> Failure:
    """Any exception a step met, as what it means for trying again."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, NEEDS_USER):
        return Failure(Kind.NEEDS_USER, message)
    if not isinstance(exc, SoundCloudError):
        # A bug or a local hiccup: tried again on the normal schedule, and logged where it arose.
        return Failure(Kind.RETRYABLE, message)
    if isinstance(exc, RateLimited):
        kind = Kind.RATE_LIMITED
    elif not exc.retryable:
        kind = Kind.PERMANENT
    elif exc.status is None and not isinstance(exc, AssetChanged):
        kind = Kind.OFFLINE
    else:
        kind = Kind.RETRYABLE
    return Failure(kind, message, exc.status, exc.retry_after)
