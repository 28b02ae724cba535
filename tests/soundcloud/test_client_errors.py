"""The failure table: what each SoundCloud answer or network failure becomes."""

from __future__ import annotations

import email.utils
import json

import httpx
import pytest

from releaseosd.soundcloud.errors import (
    ARTWORK_5XX_LIMIT,
    NeedsLogin,
    NotFound,
    Permanent,
    RateLimited,
    Retryable,
    SoundCloudError,
    UploadNotPermitted,
    artwork_5xx_streak,
    classify,
    parse_retry_after,
    quota_problem,
    should_drop_artwork,
    soundcloud_message,
)

NOW = 1_800_000_000.0
REQUEST = httpx.Request("POST", "https://api.soundcloud.com/tracks")


def response(
    status: int,
    body: bytes | dict[str, object] = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if isinstance(body, dict):
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    else:
        content = body
    return httpx.Response(status, content=content, headers=headers, request=REQUEST)


HTML_503 = b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>"
SC_422 = {
    "code": 422,
    "message": "Unable to process provided asset_data",
    "link": "https://developers.soundcloud.com/docs/api/explorer/open-api",
    "status": "422 - Unprocessable Entity",
    "errors": [{"error_message": "asset_data is corrupt"}],
    "error": None,
}


@pytest.mark.parametrize(
    ("failure", "upload", "kind", "status", "retry_after"),
    [
        (httpx.ConnectTimeout("timed out", request=REQUEST), False, Retryable, None, None),
        (httpx.ReadTimeout("timed out", request=REQUEST), True, Retryable, None, None),
        (httpx.WriteTimeout("timed out", request=REQUEST), True, Retryable, None, None),
        (httpx.ConnectError("refused", request=REQUEST), False, Retryable, None, None),
        (httpx.ReadError("reset", request=REQUEST), False, Retryable, None, None),
        (httpx.RemoteProtocolError("eof", request=REQUEST), True, Retryable, None, None),
        (response(500), False, Retryable, 500, None),
        (response(503, HTML_503, {"Content-Type": "text/html"}), True, Retryable, 503, None),
        (response(502, HTML_503), False, Retryable, 502, None),  # HTML without a content type
        (response(429, {"code": 429, "message": "slow down"}), False, RateLimited, 429, None),
        (response(429, b"", {"Retry-After": "120"}), False, RateLimited, 429, 120.0),
        (
            response(429, b"", {"Retry-After": email.utils.formatdate(NOW + 90, usegmt=True)}),
            True,
            RateLimited,
            429,
            90.0,
        ),
        (response(401, b""), True, UploadNotPermitted, 401, None),
        (response(401, b""), False, NeedsLogin, 401, None),
        (
            response(401, {"code": 401, "message": "email not verified"}),
            True,
            NeedsLogin,
            401,
            None,
        ),
        (response(404, {"code": 404, "message": "not found"}), False, NotFound, 404, None),
        (response(422, SC_422), True, Permanent, 422, None),
        (response(400, {"code": 400, "message": "invalid request"}), True, Permanent, 400, None),
        (response(403, b"<html>Forbidden by edge</html>"), False, Retryable, 403, None),
        (response(403, {"code": 403, "message": "not yours"}), False, Permanent, 403, None),
    ],
)
def test_classification_table(
    failure: httpx.Response | Exception,
    upload: bool,
    kind: type[SoundCloudError],
    status: int | None,
    retry_after: float | None,
) -> None:
    error = classify(failure, upload=upload, action="uploading a.wav", now=NOW)
    assert type(error) is kind
    assert error.status == status
    assert error.retryable is issubclass(kind, Retryable)
    assert error.retry_after == retry_after
    assert str(error).startswith("uploading a.wav: ")


def test_permanent_keeps_soundclouds_words() -> None:
    error = classify(response(422, SC_422))
    assert (
        error.soundcloud_message == "Unable to process provided asset_data; asset_data is corrupt"
    )
    assert "Unable to process provided asset_data" in str(error)
    assert "422" in str(error)


def test_bare_401_on_upload_says_a_refresh_will_not_help() -> None:
    error = classify(response(401, b"  "), upload=True)
    assert "refresh does not fix" in str(error)
    assert not error.retryable


def test_rate_limit_without_retry_after_leaves_the_delay_to_the_scheduler() -> None:
    error = classify(response(429, {"message": "rate limited", "spam_warning_urn": "x"}))
    assert error.retryable and error.retry_after is None
    assert "rate limited" in str(error)


def test_success_is_not_a_failure() -> None:
    with pytest.raises(ValueError):
        classify(response(201, {"urn": "soundcloud:tracks:1"}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("30", 30.0),
        ("  7 ", 7.0),
        ("-5", 0.0),
        ("soon", None),
        (email.utils.formatdate(NOW + 60, usegmt=True), 60.0),
        (email.utils.formatdate(NOW - 60, usegmt=True), 0.0),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_soundcloud_message_shapes() -> None:
    assert soundcloud_message({"error": "invalid_grant", "error_description": "used"}) == (
        "used; invalid_grant"
    )
    assert soundcloud_message({"code": 500}) is None
    assert soundcloud_message("text") is None
    assert len(soundcloud_message({"message": "x" * 5000}) or "") == 300


@pytest.mark.parametrize(
    ("me", "needed", "problem"),
    [
        ({"quota": {"unlimited_upload_quota": True, "upload_seconds_left": 0}}, 600, None),
        ({"quota": {"unlimited_upload_quota": False, "upload_seconds_left": 0}}, None, "used up"),
        ({"quota": {"upload_seconds_left": 300}}, 600, "10.0 minutes long"),
        ({"quota": {"upload_seconds_left": 900}}, 600, None),
        ({"quota": {"upload_seconds_left": 900}}, None, None),
        ({}, 600, None),
        ({"quota": "unknown"}, 600, None),
    ],
)
def test_quota(me: dict[str, object], needed: float | None, problem: str | None) -> None:
    result = quota_problem(me, needed)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result


RUN = [500] * (ARTWORK_5XX_LIMIT - 1)  # one 5xx short of dropping the artwork


@pytest.mark.parametrize(
    ("history", "drop"),
    [
        ([], False),
        ([500], False),
        (RUN, False),
        ([*RUN, 502], True),
        ([*RUN, None, 500], False),
        ([422, *RUN, 503], True),
        ([*RUN, 500, 429], False),
    ],
)
def test_should_drop_artwork(history: list[int | None], drop: bool) -> None:
    streak = 0
    for status in history:
        streak = artwork_5xx_streak(streak, status)
    assert should_drop_artwork(streak) is drop
