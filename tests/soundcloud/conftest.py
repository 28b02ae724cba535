"""Fixtures for tests that talk to the SoundCloud sandbox: TestSandbox (tests/sandbox_tools), the
product's sandbox (releaseosd/rehearsal/sandbox.py) with faults, a request log and accessors.

Stable API — other test modules in this folder rely on it:

`sandbox` -> TestSandbox
    Started on 127.0.0.1 with an OS-chosen port; state and uploads under tmp_path/"sandbox";
    stopped after the test. Registered app: CLIENT_ID / CLIENT_SECRET below (other client ids
    are refused); any absolute redirect_uri is accepted. Access tokens live 3600 s; tracks
    finish processing 0.2 s after upload. Point a client at it with
    `SoundCloudConfig(client_id=CLIENT_ID, api_url=sandbox.base_url, auth_url=sandbox.base_url)`.
    Useful members: base_url, faults (Faults: error_rate, rate_limit_every, retry_after,
    drop_upload(after_bytes, times=1), processing_outcome, artwork_fails, deny_authorization,
    push(status, html=, retry_after=, body=, match="POST /tracks")), requests (list of
    RecordedRequest), tracks(), playlists(), upload_of(urn), refresh_count, rate_limited,
    retry_after_violations(), expire_access_tokens(), issue_tokens(), authorize_url(...).

`sandbox_factory(**kwargs) -> TestSandbox`
    Starts another sandbox with TestSandbox(...) keyword arguments of your choice (token_ttl,
    processing_gets, clock, quota, data_dir to reuse a folder across a "restart", ...). Defaults:
    the same app as `sandbox` and a fresh folder under tmp_path. All are stopped after the test.

`sandbox_tokens` -> TokenPair
    Tokens minted directly by `sandbox` (no login flow): .access_token, .refresh_token,
    .headers ({"Authorization": "OAuth …"}).

`spec_checker` -> Callable[[RecordedRequest], list[str]]
    spec_check.check_request bound to SoundCloud's spec; skips the test when
    ../shared/soundcloud/openapi.yaml is not there. `assert spec_checker(rec) == []`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_tools import RecordedRequest, TestSandbox, TokenPair
from spec_check import SPEC_PATH, check_request, load_spec

CLIENT_ID = "sandbox-test-client"
CLIENT_SECRET = "sandbox-test-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"

SandboxFactory = Callable[..., TestSandbox]


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[SandboxFactory]:
    started: list[TestSandbox] = []

    def make(**kwargs: Any) -> TestSandbox:
        kwargs.setdefault("data_dir", tmp_path / f"sandbox-{len(started)}")
        kwargs.setdefault("client_id", CLIENT_ID)
        kwargs.setdefault("client_secret", CLIENT_SECRET)
        kwargs.setdefault("processing_seconds", 0.2)
        box = TestSandbox(**kwargs)
        box.start()
        started.append(box)
        return box

    yield make
    for box in started:
        box.stop()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[TestSandbox]:
    box = TestSandbox(
        tmp_path / "sandbox",
        token_ttl=3600,
        processing_seconds=0.2,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    box.start()
    yield box
    box.stop()


@pytest.fixture
def sandbox_tokens(sandbox: TestSandbox) -> TokenPair:
    return sandbox.issue_tokens()


@pytest.fixture
def spec_checker() -> Callable[[RecordedRequest], list[str]]:
    if not SPEC_PATH.is_file():
        pytest.skip(f"SoundCloud's spec is not at {SPEC_PATH} (../shared beside the repository)")
    spec = load_spec()
    return lambda rec: check_request(rec, spec)
