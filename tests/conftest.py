"""Shared test set-up: every test gets its own HOME/XDG dirs so nothing touches the real user's;
and the fixtures that end-to-end tests of several folders use: `sandbox` (the SoundCloud stand-in
over loopback HTTP, every request checked against SoundCloud's spec when the test ends) and
`token_store` (a real keyring backend holding a sandbox login, in the file that
`daemon_env(tmp_path)` selects for child processes too). tests/soundcloud has its own `sandbox`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parent
# tests/ itself for the sandbox_tools package (the test suite's SoundCloud).
for _folder in (_TESTS, _TESTS / "e2e", _TESTS / "soundcloud"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from daemon_harness import (  # noqa: E402
    CLIENT_ID,
    CLIENT_SECRET,
    file_token_store,
    keyring_file,
    log_in,
)
from sandbox_tools import RecordedRequest, TestSandbox  # noqa: E402
from spec_check import SPEC_PATH, check_request, load_spec  # noqa: E402

from releaseosd.rehearsal.listener_page import LISTENER_TEMPLATE  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(path))
    monkeypatch.delenv("RELEASEOSD_CONFIG", raising=False)


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """write("name.yaml", text) -> Path, for files made in a test."""

    def _write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[TestSandbox]:
    box = TestSandbox(
        data_dir=tmp_path / "sandbox",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        processing_seconds=0.2,
    )
    box.start()
    yield box
    box.stop()
    # Every request the daemon sent in the test must be one SoundCloud's own spec documents.
    if SPEC_PATH.exists():
        spec = load_spec()
        # A request the sandbox answered with an injected fault before parsing its body has no
        # fields on record; there is nothing to check in it.
        # A browser's visits to the sandbox's listener pages are not API requests.
        api = [r for r in box.requests if r.template != LISTENER_TEMPLATE]
        parsed = [r for r in api if not _answered_by_a_fault(r)]
        problems = [f"{r.method} {r.path}: {p}" for r in parsed for p in check_request(r, spec)]
        assert problems == [], "requests that do not match openapi.yaml:\n" + "\n".join(problems)


def _answered_by_a_fault(rec: RecordedRequest) -> bool:
    """An injected 429/5xx answered before the body was parsed leaves no fields to check; so
    does an upload the client cut off (status 0) before the sandbox read any of its body."""
    unparsed = (rec.content_type == "multipart/form-data" and not rec.form and not rec.files) or (
        rec.content_type == "application/json" and rec.json_body is None
    )
    return unparsed and (rec.status in (0, 403, 422, 429) or rec.status >= 500)


@pytest.fixture
def token_store(tmp_path: Path, sandbox: TestSandbox) -> Any:
    """keyrings.alt's file keyring where `daemon_env(tmp_path)` points child processes,
    holding a sandbox login."""
    store = file_token_store(keyring_file(tmp_path))
    log_in(store, sandbox)
    return store


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $XDG_RUNTIME_DIR, where the CLI finds the in-process daemon's control socket."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    return run
