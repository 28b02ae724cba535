"""The dashboard in a real browser (Debian's chromium, headless) against a real daemon and the
sandbox over loopback: what a producer sees and does, from a dropped export to its release."""

from __future__ import annotations

import re
from typing import Any

from daemon_harness import by_title, local, make_audio, wait_for
from dashboard_harness import ARTIFACTS, Running
from playwright.sync_api import Page, expect
from sandbox_tools import TestSandbox

from releaseosd.model.states import State

SECOND = 1000  # Playwright counts in milliseconds


def card(page: Page, title: str) -> Any:
    return page.locator("article.card", has=page.get_by_role("heading", name=title))


def test_dropped_track_shows_progress_and_ends_on_soundcloud(
    page: Page, dashboard: Running, sandbox: TestSandbox
) -> None:
    # The upload stops 2 MB in until the test has seen its progress: 16 MB, more than
    # loopback's socket buffers take while the sandbox reads nothing.
    gate = sandbox.hold_uploads(after_bytes=2_000_000)
    (dashboard.exports / "Night Drive.yaml").write_text(
        "title: Night Drive\nartist: DJ Test\ngenre: Techno\nsharing: public\n"
    )
    make_audio(dashboard.exports / "Night Drive.wav", seconds=90.0, freq=330)
    night = card(page, "Night Drive")
    # The card appears without a reload: the page hears it from the event stream.
    expect(night).to_be_visible(timeout=20 * SECOND)
    expect(night.locator(".artist")).to_have_text("DJ Test")
    expect(night.locator("progress")).to_be_visible(timeout=20 * SECOND)
    expect(night.locator(".progress-text")).to_contain_text(re.compile(r"of .* · .*/s"))
    assert gate.reached.wait(20), "the upload never reached the gate"
    page.screenshot(path=str(ARTIFACTS / "uploading.png"))
    # Held there, the card stops showing a rate and says the upload is stalled.
    expect(night.locator(".progress-text")).to_contain_text(
        re.compile(r"MB of 15\.\d MB · no progress for 00:00:1\d"), timeout=20 * SECOND
    )
    page.screenshot(path=str(ARTIFACTS / "stalled.png"))
    gate.open()
    expect(night.locator(".badge")).to_have_text("released", timeout=45 * SECOND)
    link = night.get_by_role("link", name="On SoundCloud")
    href = link.get_attribute("href")
    assert href and href.startswith(sandbox.base_url)
    # The link opens the sandbox's page of the track, as a listener would see it.
    with page.context.expect_page() as opened:
        link.click()
    listener = opened.value
    listener.wait_for_load_state()
    expect(listener.get_by_role("heading", name="Night Drive")).to_be_visible()
    expect(listener.locator("audio")).to_have_count(1)
    expect(listener.get_by_text("Public", exact=True)).to_be_visible()
    listener.screenshot(path=str(ARTIFACTS / "sandbox-permalink.png"))
    listener.close()
    assert night.locator("img").evaluate("img => img.naturalWidth") > 0
    # The track page: artwork, the preview player, the waveform, what was sent, the history.
    night.get_by_role("link", name="Night Drive").click()
    expect(page.locator("audio")).to_have_count(1)
    expect(page.locator("svg.waveform rect").first).to_be_attached()
    expect(page.locator(".metadata").first).to_contain_text("Techno")
    expect(page.locator("#history li").first).to_contain_text("released")
    expect(page.locator(".checklist .done")).to_have_count(5)
    page.screenshot(path=str(ARTIFACTS / "track-page.png"), full_page=True)


def test_scheduled_track_counts_down_and_flips_to_released(page: Page, dashboard: Running) -> None:
    at = local(12)
    (dashboard.exports / "Later.yaml").write_text(
        f"title: Later Song\nsharing: public\nrelease_at: {at.isoformat()}\n"
    )
    make_audio(dashboard.exports / "Later.wav", freq=550)
    later = card(page, "Later Song")
    expect(later.locator(".badge")).to_have_text("scheduled", timeout=20 * SECOND)
    expect(later.locator(".countdown")).to_have_text(re.compile(r"in 00:00:\d\d"))
    page.screenshot(path=str(ARTIFACTS / "scheduled.png"))
    expect(later.locator(".badge")).to_have_text("released", timeout=25 * SECOND)
    expect(later.get_by_role("link", name="On SoundCloud")).to_be_visible()


def test_invalid_sidecar_shows_where_and_clears_after_the_fix(
    page: Page, dashboard: Running
) -> None:
    sidecar = dashboard.exports / "Broken.yaml"
    sidecar.write_text("title: Broken Song\nbpm: fast\nsharing: public\n")
    make_audio(dashboard.exports / "Broken.wav", freq=770)
    # Its sidecar cannot be read, so the card names it by its file until the fix.
    broken = card(page, "Broken")
    expect(broken.locator(".badge")).to_have_text("needs a fix", timeout=20 * SECOND)
    expect(broken.locator(".note")).to_contain_text("Broken.yaml:2: bpm:")
    expect(broken.locator(".fix")).to_contain_text("Fix the file")
    page.screenshot(path=str(ARTIFACTS / "invalid.png"))
    sidecar.write_text("title: Broken Song\nbpm: 128\nsharing: public\n")
    expect(broken.locator(".badge")).to_have_text("released", timeout=30 * SECOND)
    expect(broken.locator(".note")).to_have_count(0)


def test_pause_resume_release_now_and_remove_from_the_page(
    page: Page, dashboard: Running, sandbox: TestSandbox
) -> None:
    page.get_by_role("button", name="Pause uploads").click()
    expect(page.get_by_text("uploads paused", exact=True)).to_be_visible()
    (dashboard.exports / "Held.yaml").write_text(
        "title: Held Song\nsharing: public\nrelease_at: 2031-01-01T10:00:00\n"
    )
    make_audio(dashboard.exports / "Held.wav", freq=440)
    held = card(page, "Held Song")
    expect(held.locator(".badge")).to_have_text("queued", timeout=20 * SECOND)
    assert sandbox.tracks() == []
    page.get_by_role("button", name="Resume uploads").click()
    expect(held.locator(".badge")).to_have_text("scheduled", timeout=30 * SECOND)
    # Release now: a confirmation naming the track, then public on SoundCloud.
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    held.get_by_role("button", name="Release now").click()
    expect(held.locator(".badge")).to_have_text("released", timeout=20 * SECOND)
    assert "'Held Song'" in asked[-1] and "public" in asked[-1]
    assert [t["sharing"] for t in sandbox.tracks()] == ["public"]
    # Remove from SoundCloud: the confirmation names the track, its id and its link.
    track_id = by_title(dashboard.state)["Held Song"].id
    held.get_by_role("button", name="Remove from SoundCloud").click()
    wait_for(
        lambda: by_title(dashboard.state)["Held Song"].state == State.REMOVED,
        what="Held Song removed",
    )
    assert "'Held Song'" in asked[-1] and track_id in asked[-1] and sandbox.base_url in asked[-1]
    assert sandbox.tracks() == []
    expect(held.locator(".badge")).to_have_text("removed")
    expect(page.locator("#flash")).to_contain_text("deleted on SoundCloud")


def test_retry_a_failed_upload_from_the_page(
    page: Page, dashboard: Running, sandbox: TestSandbox
) -> None:
    # SoundCloud refuses the upload for good (403): the track fails and says so.
    sandbox.faults.push(status=403, match="POST /tracks")
    (dashboard.exports / "Refused.yaml").write_text("title: Refused Song\nsharing: public\n")
    make_audio(dashboard.exports / "Refused.wav", freq=660)
    refused = card(page, "Refused Song")
    expect(refused.locator(".badge")).to_have_text("failed", timeout=30 * SECOND)
    expect(refused.locator(".fix")).to_contain_text("Retry")
    page.screenshot(path=str(ARTIFACTS / "failed.png"))
    refused.get_by_role("button", name="Retry").click()
    expect(refused.locator(".badge")).to_have_text("released", timeout=30 * SECOND)


def test_disconnect_and_connect_run_the_real_login(
    page: Page, dashboard: Running, sandbox: TestSandbox
) -> None:
    account = page.locator("#account")
    expect(account).to_contain_text("Connected as @", timeout=10 * SECOND)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Disconnect").click()
    expect(account).to_contain_text("Not connected", timeout=10 * SECOND)
    # Disconnect keeps the app's secret: Connect works again without 'auth setup'.
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Connect SoundCloud").click()
    login_tab = opened.value
    # The sandbox's /authorize approves at once and redirects to the loopback callback.
    login_tab.wait_for_load_state()
    expect(login_tab.locator("body")).to_contain_text("Logged in", timeout=10 * SECOND)
    login_tab.close()
    expect(account).to_contain_text("Connected as @", timeout=10 * SECOND)
    authorize = [r for r in sandbox.requests if r.path == "/authorize"]
    assert authorize and "code_challenge" in authorize[-1].query


def test_phone_sized_and_keyboard_only(page: Page, dashboard: Running) -> None:
    (dashboard.exports / "Small.yaml").write_text(
        "title: A Rather Long Title For A Small Screen Indeed\nsharing: private\n"
    )
    make_audio(dashboard.exports / "Small.wav", freq=990)
    small = card(page, "A Rather Long Title")
    expect(small.locator(".badge")).to_have_text("private", timeout=30 * SECOND)
    page.set_viewport_size({"width": 390, "height": 800})
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    # Keyboard only: Tab reaches "Pause uploads", Enter presses it.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Pause uploads":
            break
    else:
        raise AssertionError("Tab never reached the Pause uploads button")
    page.keyboard.press("Enter")
    expect(page.get_by_text("uploads paused", exact=True)).to_be_visible()


def test_a_card_refreshed_twice_at_once_is_shown_once(page: Page, dashboard: Running) -> None:
    """Seen in CI: a new track's 'track' and 'progress' events each fetched its card; both
    answers found no card yet and both put one in, so the page showed it twice (one 'building',
    one 'uploading'). Only the answer to the latest refresh asked is shown."""
    (dashboard.exports / "Twice.yaml").write_text("title: Twice Song\nsharing: public\n")
    make_audio(dashboard.exports / "Twice.wav", freq=790)
    twice = card(page, "Twice Song")
    expect(twice.locator(".badge")).to_have_text("released", timeout=30 * SECOND)
    track_id = by_title(dashboard.state)["Twice Song"].id
    # The card gone from the page (as for a track not shown yet), then two refreshes whose
    # answers (the card as the server renders it) come at the same moment.
    page.evaluate(
        """async (id) => {
            const url = `/tracks/${encodeURIComponent(id)}/card`;
            const html = await (await fetch(url)).text();
            const real = window.fetch, held = [];
            window.fetch = (asked, options) => asked === url
                ? new Promise((answer) => held.push(() => answer(new Response(html))))
                : real(asked, options);
            document.getElementById(`card-${id}`).remove();
            const both = Promise.all([refreshCard(id), refreshCard(id)]);
            held.forEach((answer) => answer());
            await both;
            window.fetch = real;
        }""",
        track_id,
    )
    expect(page.locator(f"#card-{track_id}")).to_have_count(1)
    expect(twice.locator(".badge")).to_have_text("released")
