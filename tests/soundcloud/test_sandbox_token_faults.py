"""The sandbox's token-endpoint faults over real loopback HTTP: an answer lost after the refresh
token rotated (`drop_token_answers`), and a slow token endpoint (`token_answer_delay`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sandbox_tools import TestSandbox

# The app tests/soundcloud/conftest.py registers with the `sandbox` fixture.
CLIENT_ID = "sandbox-test-client"
CLIENT_SECRET = "sandbox-test-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def http(sandbox: TestSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as client:
        yield client


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": token,
            "redirect_uri": REDIRECT_URI,
        },
    )


def test_a_dropped_token_answer_has_rotated_the_refresh_token(
    sandbox: TestSandbox, http: httpx.Client
) -> None:
    tokens = sandbox.issue_tokens()
    sandbox.faults.update(drop_token_answers=1)
    with pytest.raises(httpx.TransportError):
        refresh(http, tokens.refresh_token or "")
    assert sandbox.refresh_count == 1
    assert sandbox.faults.drop_token_answers == 0  # the fault used itself up
    wait_for(lambda: len(sandbox.requests) == 1, "the dropped request to be logged")
    [dropped] = sandbox.requests
    assert (dropped.path, dropped.status) == ("/oauth/token", 0)
    # SoundCloud carried the refresh out: the token the client still holds is dead now.
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as fresh:
        again = refresh(fresh, tokens.refresh_token or "")
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "already used" in again.json()["error_description"]


def test_refused_grants_are_answered_and_do_not_use_up_the_fault(
    sandbox: TestSandbox, http: httpx.Client
) -> None:
    sandbox.faults.update(drop_token_answers=1)
    refused = refresh(http, "no-such-refresh-token")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert sandbox.faults.drop_token_answers == 1
    tokens = sandbox.issue_tokens()
    with pytest.raises(httpx.TransportError):
        refresh(http, tokens.refresh_token or "")
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as fresh:
        pair = sandbox.issue_tokens()
        assert refresh(fresh, pair.refresh_token or "").status_code == 200  # off again


def test_token_faults_through_the_admin_api_and_their_checks(
    sandbox: TestSandbox, http: httpx.Client
) -> None:
    changed = http.post("/_sandbox/faults", json={"drop_token_answers": 2, "token_answer_delay": 0})
    assert changed.status_code == 200 and changed.json()["drop_token_answers"] == 2
    for bad in (
        {"drop_token_answers": -1},
        {"drop_token_answers": 1.5},
        {"token_answer_delay": -1},
    ):
        answer = http.post("/_sandbox/faults", json=bad)
        assert answer.status_code == 400 and next(iter(bad)) in answer.json()["message"]
    with pytest.raises(ValueError, match="token_answer_delay"):
        sandbox.faults.update(token_answer_delay=True)
    assert sandbox.faults.drop_token_answers == 2  # a refused update changes nothing
    sandbox.faults.clear()
    assert sandbox.faults.drop_token_answers == 0 and sandbox.faults.token_answer_delay == 0


def test_a_slow_token_answer_holds_only_itself(sandbox: TestSandbox) -> None:
    tokens = sandbox.issue_tokens()
    sandbox.faults.update(token_answer_delay=1.0)
    answers: list[httpx.Response] = []

    def slow_refresh() -> None:
        with httpx.Client(base_url=sandbox.base_url, timeout=30) as own:
            answers.append(refresh(own, tokens.refresh_token or ""))

    started = time.monotonic()
    worker = threading.Thread(target=slow_refresh)
    worker.start()
    wait_for(lambda: sandbox.refresh_count == 1, "the refresh to arrive")
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as other:
        assert other.get("/me", headers=tokens.headers).status_code == 200
        assert worker.is_alive(), "the API answered while the token answer was held"
    worker.join(30)
    [answer] = answers
    assert answer.status_code == 200 and time.monotonic() - started >= 1.0
