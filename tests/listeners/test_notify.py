"""releaseosd.listeners.desktop: what the producer reads, and that no notification trouble reaches the daemon."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fake_notification_server import NotificationBus, SessionBus

from releaseosd.listeners.desktop import (
    DBusSender,
    NotificationUnavailable,
    Notifier,
    NotifyPySender,
    failed_message,
    needs_login_message,
    released_message,
    uploaded_message,
)
from releaseosd.model.config import NotificationsConfig

REPO = Path(__file__).resolve().parents[2]
URL = "https://soundcloud.com/someone/night-drive"
LOGGER = "releaseosd.listeners.desktop"


class Recorder:
    """An injected `send` that records, and can be told to fail, raise or hang."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.result: bool | Exception = True
        self.gate: threading.Event | None = None

    def __call__(self, title: str, body: str) -> bool:
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append((title, body))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


# --- texts ----------------------------------------------------------------------------------------


def test_released_text_names_the_track_and_link() -> None:
    message = released_message("Night Drive", URL)
    assert message.title == "Night Drive is live"
    assert message.body == URL


def test_released_late_says_by_how_much() -> None:
    message = released_message("Night Drive", URL, late_by=timedelta(hours=3, minutes=12))
    assert message.body.splitlines()[0] == URL
    assert "3 h 12 min later than planned" in message.body
    days = released_message("Night Drive", URL, late_by=timedelta(days=2, hours=1, minutes=5))
    assert "2 d 1 h later" in days.body
    # A few seconds of scheduling jitter is not worth mentioning.
    assert released_message("Night Drive", URL, timedelta(seconds=20)).body == URL


def test_uploaded_text_says_when_it_goes_public(local_tz: None) -> None:
    at = datetime(2025, 12, 12, 17, 0, tzinfo=UTC)  # 18:00 in Berlin
    message = uploaded_message("Night Drive", URL, at)
    assert message.title == "Night Drive uploaded"
    assert message.body == f"Uploaded privately; goes public Fri 12 Dec 2025 at 18:00.\n{URL}"
    naive = uploaded_message("Night Drive", None, datetime(2025, 12, 12, 9, 5))
    assert naive.body == "Uploaded privately; goes public Fri 12 Dec 2025 at 09:05."
    other = datetime(2025, 12, 12, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert "at 18:00" in uploaded_message("X", None, other).body


def test_uploaded_without_release_date_says_it_stays_private() -> None:
    body = uploaded_message("Night Drive", URL, None).body
    assert body.startswith("Uploaded privately; no release date set")
    assert body.endswith(URL)


def test_failed_text_gives_reason_and_fix() -> None:
    message = failed_message(
        "Night Drive", "SoundCloud rejected the file (422).", "releaseosd retry night-drive"
    )
    assert message.title == "Night Drive failed"
    assert message.body == (
        "SoundCloud rejected the file (422).\nTo retry, run: releaseosd retry night-drive"
    )


def test_needs_login_text_gives_the_command() -> None:
    message = needs_login_message()
    assert message.title == "SoundCloud login expired"
    assert message.body.endswith("Run: releaseosd auth login")


# --- the worker, with an injected send --------------------------------------------------------------


def test_each_kind_is_sent_in_order() -> None:
    send = Recorder()
    notifier = Notifier(NotificationsConfig(), send=send)
    assert notifier.released("A", URL)
    assert notifier.uploaded("B", URL, None)
    assert notifier.failed("C", "why", "releaseosd retry c")
    assert notifier.needs_login()
    assert notifier.flush(5)
    assert [title for title, _ in send.calls] == [
        "A is live",
        "B uploaded",
        "C failed",
        "SoundCloud login expired",
    ]


@pytest.mark.parametrize("kind", ["released", "uploaded", "failed", "needs_login"])
def test_a_disabled_kind_sends_nothing(kind: str) -> None:
    send = Recorder()
    notifier = Notifier(NotificationsConfig.model_validate({kind: False}), send=send)
    calls = {
        "released": lambda: notifier.released("T", URL),
        "uploaded": lambda: notifier.uploaded("T", URL, None),
        "failed": lambda: notifier.failed("T", "why", "fix"),
        "needs_login": notifier.needs_login,
    }
    for name, call in calls.items():
        assert call() is (name != kind)
    assert notifier.flush(5)
    assert len(send.calls) == 3


def test_callers_never_wait_for_a_slow_service_and_the_queue_is_bounded() -> None:
    send = Recorder()
    send.gate = threading.Event()
    notifier = Notifier(NotificationsConfig(), send=send, queue_size=3)
    started = time.monotonic()
    queued = [notifier.needs_login() for _ in range(20)]
    elapsed = time.monotonic() - started
    assert elapsed < 0.5
    # One in the worker's hands (maybe not yet taken) plus three waiting; the rest dropped.
    assert 3 <= sum(queued) <= 4
    assert queued[:3] == [True, True, True]
    send.gate.set()
    assert notifier.flush(5)
    assert len(send.calls) == sum(queued)


def test_a_hanging_service_is_given_up_on_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    send = Recorder()
    send.gate = threading.Event()
    notifier = Notifier(NotificationsConfig(), send=send, timeout=0.2)
    try:
        for _ in range(3):
            notifier.needs_login()
        assert notifier.flush(5)
        [warning] = warnings_of(caplog)
        assert "did not answer within 0.2 s" in warning
        # Only the first reached the hung service; the others did not pile up threads behind it.
        hanging = [r for r in caplog.records if "still hanging" in r.getMessage()]
        assert len(hanging) == 2
    finally:
        send.gate.set()
    # Once the hung send returns, the service is tried again and its recovery is logged.
    deadline = time.monotonic() + 5
    while not any(r.getMessage() == "desktop notifications work again" for r in caplog.records):
        assert time.monotonic() < deadline, "notifier never recovered"
        notifier.needs_login()
        assert notifier.flush(5)


def test_failures_never_raise_and_are_logged_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = Recorder()
    notifier = Notifier(NotificationsConfig(), send=send)
    send.result = RuntimeError("boom")
    notifier.released("A", URL)
    notifier.released("B", URL)
    assert notifier.flush(5)
    send.result = False
    notifier.released("C", URL)
    assert notifier.flush(5)
    assert len(warnings_of(caplog)) == 1
    assert "RuntimeError: boom" in warnings_of(caplog)[0]
    send.result = True
    notifier.released("D", URL)
    assert notifier.flush(5)
    send.result = NotificationUnavailable("no D-Bus session bus")
    notifier.released("E", URL)
    assert notifier.flush(5)
    assert len(warnings_of(caplog)) == 2
    assert warnings_of(caplog)[1].startswith(
        "desktop notifications are not working: no D-Bus session bus."
    )


def test_close_sends_what_is_queued_then_refuses_more() -> None:
    send = Recorder()
    notifier = Notifier(NotificationsConfig(), send=send)
    notifier.released("A", URL)
    assert notifier.close(5)
    assert send.calls == [("A is live", URL)]
    assert notifier.released("B", URL) is False
    assert notifier.close(5)


# --- over a real session bus -------------------------------------------------------------------


def test_all_kinds_arrive_over_the_bus(notification_bus: NotificationBus) -> None:
    notifier = Notifier(NotificationsConfig())
    public_at = datetime(2030, 1, 4, 18, 0)
    notifier.released("Night Drive", URL, late_by=timedelta(minutes=90))
    notifier.uploaded("Night Drive", URL, public_at)
    notifier.failed("Night Drive", "The WAV file is truncated.", "releaseosd retry night-drive")
    notifier.needs_login()
    got = notification_bus.wait_for(4)
    assert [(n["summary"], n["body"]) for n in got] == [
        (
            "Night Drive is live",
            f"{URL}\nReleased 1 h 30 min later than planned "
            "(the computer was asleep or offline at release time).",
        ),
        (
            "Night Drive uploaded",
            f"Uploaded privately; goes public Fri 4 Jan 2030 at 18:00.\n{URL}",
        ),
        (
            "Night Drive failed",
            "The WAV file is truncated.\nTo retry, run: releaseosd retry night-drive",
        ),
        (
            "SoundCloud login expired",
            "Uploads are paused until you log in again.\nRun: releaseosd auth login",
        ),
    ]
    assert {n["app_name"] for n in got} == {"releaseosd"}
    assert notifier.close(5)


def test_a_disabled_kind_never_reaches_the_bus(notification_bus: NotificationBus) -> None:
    notifier = Notifier(NotificationsConfig(released=False, needs_login=False))
    notifier.released("Night Drive", URL)
    notifier.needs_login()
    notifier.failed("Night Drive", "why", "releaseosd retry night-drive")
    assert notifier.flush(10)
    # One worker sends in order: had the disabled ones gone out, they would be in the record.
    assert [n["summary"] for n in notification_bus.received()] == ["Night Drive failed"]


def test_bus_without_notification_server_is_a_logged_failure(
    session_bus: SessionBus, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(NotificationsConfig())
    notifier.released("Night Drive", URL)
    notifier.needs_login()
    assert notifier.flush(10)
    [warning] = warnings_of(caplog)
    assert "nothing owns org.freedesktop.Notifications" in warning


def test_a_server_that_never_answers_times_out(
    hanging_notification_bus: NotificationBus, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(NotificationsConfig(), send=DBusSender("releaseosd", timeout=0.3))
    started = time.monotonic()
    notifier.needs_login()
    assert time.monotonic() - started < 0.1
    assert notifier.flush(10)
    [warning] = warnings_of(caplog)
    assert "did not answer within 0.3 s" in warning


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (None, "DBUS_SESSION_BUS_ADDRESS is not set"),
        ("unix:path=/nonexistent/releaseosd-test/bus", "cannot connect to the D-Bus session bus"),
    ],
)
def test_no_bus_returns_promptly_logs_once_and_never_raises(
    address: str | None,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    if address is None:
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    notifier = Notifier(NotificationsConfig())
    started = time.monotonic()
    for _ in range(3):
        notifier.released("Night Drive", URL)
        notifier.uploaded("Night Drive", None, None)
        notifier.failed("Night Drive", "why", "releaseosd retry night-drive")
        notifier.needs_login()
    assert time.monotonic() - started < 0.5
    assert notifier.flush(10)
    [warning] = warnings_of(caplog)
    assert expected in warning


# --- the daemon's view: a separate process, as it would import and call it ------------------------

SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import releaseosd.listeners.desktop as notify
    from releaseosd.model.config import NotificationsConfig
    lazy = [m for m in ("notifypy", "jeepney", "loguru") if m in sys.modules]
    backend = sys.argv[1]
    send = notify.NotifyPySender("releaseosd") if backend == "notifypy" else None
    notifier = notify.Notifier(NotificationsConfig(uploaded=False), send=send)
    started = time.monotonic()
    for _ in range(2):
        notifier.released("Night Drive", "https://soundcloud.com/someone/night-drive")
        notifier.uploaded("Night Drive", None, None)
        notifier.failed("Night Drive", "why", "releaseosd retry night-drive")
        notifier.needs_login()
    calls = time.monotonic() - started
    flushed = notifier.close(30)
    print(f"lazy={lazy} calls={calls:.3f} flushed={flushed}")
    """
)


def run_script(backend: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(env, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, backend],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def daemon_env(tmp_path: Path, *, bus: str | None, notify_send: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR")
    }
    if bus is not None:
        env["DBUS_SESSION_BUS_ADDRESS"] = bus
    if not notify_send:
        # notify-py picks notify-send whenever it is on PATH; an empty PATH forces its D-Bus path.
        empty = tmp_path / "empty-path"
        empty.mkdir(exist_ok=True)
        env["PATH"] = str(empty)
    return env


def parse(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(part.split("=", 1) for part in result.stdout.split())


@pytest.mark.parametrize(
    ("backend", "notify_send"),
    [("default", True), ("notifypy", True), ("notifypy", False)],
    ids=["dbus-sender", "notify-py-via-notify-send", "notify-py-via-jeepney"],
)
def test_subprocess_delivers_over_the_bus_with_a_clean_stderr(
    backend: str, notify_send: bool, notification_bus: NotificationBus, tmp_path: Path
) -> None:
    result = run_script(
        backend, daemon_env(tmp_path, bus=notification_bus.address, notify_send=notify_send)
    )
    out = parse(result)
    assert result.stderr == ""
    assert out["lazy"] == "[]"
    assert out["flushed"] == "True"
    got = notification_bus.wait_for(6)
    assert [n["summary"] for n in got] == [
        "Night Drive is live",
        "Night Drive failed",
        "SoundCloud login expired",
    ] * 2
    assert got[0]["body"] == URL
    assert got[1]["body"] == "why\nTo retry, run: releaseosd retry night-drive"
    assert {n["app_name"] for n in got} == {"releaseosd"}


def test_subprocess_without_any_bus_or_notify_send_logs_one_line(tmp_path: Path) -> None:
    result = run_script("default", daemon_env(tmp_path, bus=None, notify_send=False))
    out = parse(result)
    assert float(out["calls"]) < 0.5
    assert out["flushed"] == "True"
    assert result.stderr.splitlines() == [
        "WARNING releaseosd.listeners.desktop: desktop notifications are not working: no D-Bus session bus: "
        "DBUS_SESSION_BUS_ADDRESS is not set (headless, or started outside a desktop session). "
        "releaseosd carries on without them and says so only once; to stop trying, switch the "
        "kinds off under 'notifications:' in the config"
    ]


def test_notify_py_without_any_bus_fails_quietly(tmp_path: Path) -> None:
    result = run_script("notifypy", daemon_env(tmp_path, bus=None, notify_send=False))
    out = parse(result)
    assert float(out["calls"]) < 0.5
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "WARNING releaseosd.listeners.desktop: desktop notifications are not working"
    )


def test_notify_py_sender_reports_delivery(notification_bus: NotificationBus) -> None:
    # In-process too: notify-send (on PATH here) reads the bus address when it runs.
    assert NotifyPySender("releaseosd")("-Dash first", "body")
    [got] = notification_bus.wait_for(1)
    assert got["summary"] == "\u2060-Dash first"


def test_the_per_user_bus_socket_is_found_without_the_variable(
    notification_bus: NotificationBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under systemd the bus lives at $XDG_RUNTIME_DIR/bus; the fake bus's socket has that name.
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(notification_bus.bus.socket_dir))
    notifier = Notifier(NotificationsConfig())
    notifier.needs_login()
    assert notifier.flush(10)
    assert [n["summary"] for n in notification_bus.wait_for(1)] == ["SoundCloud login expired"]
