"""Benchmarks of the dashboard, on the real daemon (a child process, as the service runs it) and
Debian's chromium (headless, through Playwright). Run on demand:
    dbus-run-session -- .venv/bin/python -m pytest -q -p no:cacheprovider -s \\
        tests/benchmarks/test_dashboard_bench.py

Goals (issue 12), each printed with its same-run baseline:
- first load with 500 tracks: first contentful paint ≤ 1 s (browser-measured). Baseline: the
  same dashboard with no tracks.
- an event visible in the page ≤ 1 s after the state change. Baseline: the CLI command that
  makes the change (its own round trip to the daemon).
- idle CPU with the dashboard enabled and one page open ≤ 0.3 CPU-s per minute. Baseline: the
  same daemon on the same tracks with the dashboard switched off and no page.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_harness import daemon_env, wait_for
from test_startup_bench import catalogue

from releaseosd.dashboard.server import address_path, login_url
from releaseosd.model.store import Store
from releaseosd.model.track import built_dir

pytestmark = pytest.mark.benchmark

PAINT_BUDGET = 1.0
EVENT_BUDGET = 1.0
IDLE_BUDGET = 0.3  # CPU-s per minute
IDLE_SECONDS = 60.0
CHROMIUM = "/usr/bin/chromium"


def with_artwork(root: Path) -> None:
    """Every track of a catalogue gets built artwork (the cards show thumbnails)."""
    state = root / "state"
    store = Store.open(state)
    try:
        for track in store.all():
            folder = built_dir(state, track.id)
            folder.mkdir(parents=True, exist_ok=True)
            art = folder / "artwork.png"
            Image.new("RGB", (800, 800), (17, 19, 24)).save(art)
            store.update(track.id, lambda t, a=str(art): setattr(t, "artwork_path", a))
    finally:
        store.close()


def configure(root: Path, enabled: bool = True) -> Path:
    config = root / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text + f"dashboard:\n  enabled: {str(enabled).lower()}\n  port: 0\n", encoding="utf-8"
    )
    return config


@contextmanager
def daemon(root: Path, config: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = root / "daemon.log"
    log.write_bytes(b"")  # a fresh log: "running" must be this start's
    process = subprocess.Popen(
        [sys.executable, "-m", "releaseosd", "--config", str(config), "run"],
        env=daemon_env(root),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    try:
        # Past READY and the start-up scan: what is measured after is the daemon at rest.
        wait_for(lambda: "Start-up scan done" in log.read_text(), timeout=60, what="the scan")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def first_paint(page: Page, url: str) -> dict[str, float]:
    page.goto(url)
    page.wait_for_selector("body[data-live=yes]")
    timing = page.evaluate(
        """() => {
            const paint = performance.getEntriesByName('first-contentful-paint')[0];
            const nav = performance.getEntriesByType('navigation')[0];
            return {fcp: paint ? paint.startTime : -1, response: nav.responseEnd,
                    cards: document.querySelectorAll('article.card').length};
        }"""
    )
    return {k: float(v) for k, v in timing.items()}


def test_dashboard_first_paint_event_latency_and_idle_cpu(tmp_path: Path) -> None:
    empty_root, full_root = tmp_path / "empty", tmp_path / "full"
    catalogue(empty_root, 0)
    catalogue(full_root, 500)
    empty, full = configure(empty_root), configure(full_root)
    with_artwork(full_root)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # --- first paint: 500 tracks vs none --------------------------------------------
            loads: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
            for name, root, config in (("empty", empty_root, empty), ("full", full_root, full)):
                with daemon(root, config):
                    url = login_url(root / "state")
                    for _ in range(3):
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        loads[name].append(first_paint(context.new_page(), url))
                        context.close()
            fcp_full = statistics.median(x["fcp"] for x in loads["full"]) / 1000
            fcp_empty = statistics.median(x["fcp"] for x in loads["empty"]) / 1000
            assert all(x["cards"] == 500 for x in loads["full"])

            # --- an event in the page: the CLI's state change, seen in the DOM --------------
            with daemon(full_root, full) as process:
                context = browser.new_context()
                page = context.new_page()
                page.goto(login_url(full_root / "state"))
                page.wait_for_selector("body[data-live=yes]")
                ids = page.eval_on_selector_all(
                    "article.card", "els => els.map(e => e.dataset.id)"
                )[:10]
                page.evaluate(
                    """() => { window.seen = {}; new MutationObserver(() => {
                        for (const el of document.querySelectorAll('article.state-removed'))
                            if (!(el.dataset.id in window.seen)) window.seen[el.dataset.id] = Date.now();
                    }).observe(document.getElementById('cards'), {childList: true, subtree: true}); }"""
                )
                latencies: list[float] = []
                commands: list[float] = []
                for track_id in ids:
                    started = time.time()
                    subprocess.run(
                        [sys.executable, "-m", "releaseosd", "--config", str(full), "remove",
                         "--yes", track_id],
                        env=daemon_env(full_root), check=True, capture_output=True,
                    )  # fmt: skip
                    commands.append(time.time() - started)
                    page.wait_for_function(f"() => '{track_id}' in window.seen", timeout=10_000)
                    latencies.append(page.evaluate(f"window.seen['{track_id}']") / 1000 - started)
                # --- idle: one page open, nothing happening -----------------------------------
                before = cpu_seconds(process.pid)
                time.sleep(IDLE_SECONDS)  # the span measured, not a wait for something
                idle_with = (cpu_seconds(process.pid) - before) * 60 / IDLE_SECONDS
                context.close()
        finally:
            browser.close()
    # The same daemon on the same 500 tracks, with the dashboard off and no page.
    off = full_root / "config-off.yaml"
    off.write_text(full.read_text().replace("enabled: true", "enabled: false"), encoding="utf-8")
    with daemon(full_root, off) as process:
        assert not address_path(full_root / "state").exists()
        before = cpu_seconds(process.pid)
        time.sleep(IDLE_SECONDS)
        idle_without = (cpu_seconds(process.pid) - before) * 60 / IDLE_SECONDS

    event_median, event_max = statistics.median(latencies), max(latencies)
    command_median = statistics.median(commands)
    print(
        "\ndashboard (same run):"
        f"\n  first contentful paint, 500 tracks  {fcp_full:.3f} s vs {fcp_empty:.3f} s with none "
        f"({fcp_full / fcp_empty:.2f}x); budget {PAINT_BUDGET} s ({fcp_full / PAINT_BUDGET:.2f} of it)"
        f"\n  state change → visible in the page   median {event_median:.3f} s, max {event_max:.3f} s "
        f"over {len(latencies)}; the CLI command itself {command_median:.3f} s "
        f"({event_median / command_median:.2f}x); budget {EVENT_BUDGET} s "
        f"({event_max / EVENT_BUDGET:.2f} of it)"
        f"\n  idle CPU, one page open             {idle_with:.3f} CPU-s/min vs {idle_without:.3f} "
        f"with the dashboard off ({idle_with / max(idle_without, 1e-3):.2f}x); budget "
        f"{IDLE_BUDGET} ({idle_with / IDLE_BUDGET:.2f} of it)"
    )
    print(json.dumps({"loads": loads}, indent=None))
    assert fcp_full <= PAINT_BUDGET
    assert event_max <= EVENT_BUDGET
    assert idle_with <= IDLE_BUDGET
