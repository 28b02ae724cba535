"""The dashboard in Firefox: Debian's firefox-esr, headless, driven over Marionette (its own
remote protocol; marionette_driver is Mozilla's client, so no geckodriver is needed). The same
page as in Chromium: it signs in from the URL `releaseosd ui` opens, hears the event stream
under the strict CSP, shows a sidecar's file:line problem live, and acts through a CSRF-checked
POST. Playwright drives only its own patched Firefox, which it would have to download."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from daemon_harness import free_port, make_audio
from dashboard_harness import ARTIFACTS, Running
from marionette_driver import By, marionette
from marionette_driver.errors import NoSuchElementException, StaleElementException

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
T = TypeVar("T")


def _until(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except (NoSuchElementException, StaleElementException):
            found = None  # not there yet, or re-rendered by a live update meanwhile
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"Firefox never showed {what} within {timeout:.0f} s")
        time.sleep(0.05)  # polling the browser's DOM, with a deadline


@pytest.fixture(scope="module")
def firefox() -> Iterator[Any]:
    assert FIREFOX, "firefox-esr is missing: tests/run installs it (apt-get install firefox-esr)"
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="releaseosd-firefox-"))
    # A closed network: nothing of Firefox's own reaches out (updates, telemetry, safebrowsing).
    prefs = {
        "marionette.port": port,
        "browser.shell.checkDefaultBrowser": False,
        "app.update.disabledForTesting": True,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.enabled": False,
        "browser.safebrowsing.malware.enabled": False,
        "browser.safebrowsing.phishing.enabled": False,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        "browser.aboutwelcome.enabled": False,
    }
    (profile / "user.js").write_text(
        "".join(
            f'user_pref("{k}", {str(v).lower() if isinstance(v, bool) else v});\n'
            for k, v in prefs.items()
        )
    )
    process = subprocess.Popen(
        [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", str(profile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = marionette.Marionette(host="127.0.0.1", port=port, startup_timeout=60)
    try:
        client.start_session()
        client.set_window_rect(width=1280, height=900)
        yield client
        client.delete_session()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _card(firefox: Any, title: str) -> Any:
    for card in firefox.find_elements(By.CSS_SELECTOR, "article.card"):
        if card.find_element(By.CSS_SELECTOR, "h2, h3").text.strip() == title:
            return card
    return None


def test_the_dashboard_works_in_firefox(firefox: Any, dashboard: Running) -> None:
    firefox.navigate(dashboard.signed_in)
    # Signed in by the one-time URL, and the event stream is open (the page says so).
    _until("the live page", lambda: firefox.find_element(By.CSS_SELECTOR, "body[data-live=yes]"))
    assert firefox.get_url().startswith(dashboard.url), firefox.get_url()
    assert "?" not in firefox.get_url(), "the secret stayed in the address bar"

    # A broken sidecar: its card comes by the event stream, naming file, line and field.
    (dashboard.exports / "Broken.yaml").write_text("title: Fox\nbpm: fast\nsharing: public\n")
    make_audio(dashboard.exports / "Broken.wav", freq=780)
    broken = _until("the broken track's card", lambda: _card(firefox, "Broken"))
    note = _until(
        "the sidecar's problem",
        lambda: broken.find_element(By.CSS_SELECTOR, ".note").text or None,
    )
    assert "Broken.yaml:2: bpm:" in note, note

    # An action: a POST with the page's CSRF token and Origin, as Firefox sends them.
    pause = next(
        b for b in firefox.find_elements(By.TAG_NAME, "button") if b.text == "Pause uploads"
    )
    pause.click()
    _until(
        "the queue paused",
        lambda: any(
            b.text == "Resume uploads" for b in firefox.find_elements(By.TAG_NAME, "button")
        ),
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "firefox.png").write_bytes(firefox.screenshot(format="binary"))

    # The fix clears the problem live.
    (dashboard.exports / "Broken.yaml").write_text("title: Fox\nbpm: 128\nsharing: public\n")
    _until("the fixed track's card", lambda: _card(firefox, "Fox"))
