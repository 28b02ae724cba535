"""Fixtures for the dashboard's tests: a real daemon (in this process) serving its dashboard on
loopback against the sandbox, and Debian's chromium driven headless by Playwright.

Screenshots go to tests/artifacts/dashboard/ (not committed): look at them after a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import ThreadedDaemon, free_port, wait_for, write_config
from dashboard_harness import ARTIFACTS, CHROMIUM, Running
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from sandbox_tools import TestSandbox


@pytest.fixture
def dashboard(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, runtime_dir: Path
) -> Iterator[Running]:
    config = write_config(
        tmp_path,
        sandbox.base_url,
        dashboard=True,
        redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
    )
    daemon = ThreadedDaemon(config, token_store)
    with daemon:
        url = wait_for(lambda: daemon.daemon.dashboard_url, what="the dashboard to listen")
        yield Running(daemon, tmp_path, tmp_path / "exports", tmp_path / "state", url)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: tests/run installs Debian's chromium (apt-get install chromium)"
    )
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, dashboard: Running, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
    )
    page.goto(dashboard.signed_in)
    page.wait_for_selector("body[data-live=yes]")
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    # A script error or a refused resource (the CSP) in the page is a bug.
    assert not errors, errors
