"""Desktop notifications for the producer: a track went live, was uploaded, failed, or login expired.

Notifications are a courtesy, never a dependency: every public method returns at once and never
raises. Messages go to one background worker thread through a bounded queue; a notification
service that is missing (headless box, no session bus), refuses, or hangs is logged once on the
"releaseosd.listeners.desktop" logger, and the daemon carries on.

On Linux the notification is one D-Bus call made here (see `DBusSender` for why not notify-py's
Linux backends); on macOS and Windows it goes through notify-py, imported lazily inside the worker
because it is slow to import, picks its backend at import time and logs through loguru to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from releaseosd.model.config import NotificationsConfig

log = logging.getLogger("releaseosd.listeners.desktop")

Send = Callable[[str, str], bool]

DEFAULT_QUEUE_SIZE = 32
DEFAULT_SEND_TIMEOUT = 10.0


@dataclass(frozen=True)
class Message:
    """One notification: what `send` receives as (title, body)."""

    title: str
    body: str


# --- what to say: plain functions, testable without any notification service -------------------


def released_message(title: str, url: str, late_by: timedelta | None = None) -> Message:
    lines = [url]
    if late_by is not None and late_by >= timedelta(minutes=1):
        lines.append(
            f"Released {_duration(late_by)} later than planned "
            "(the computer was asleep or offline at release time)."
        )
    return Message(f"{title} is live", "\n".join(lines))


def uploaded_message(title: str, url: str | None, public_at: datetime | None) -> Message:
    if public_at is None:
        first = "Uploaded privately; no release date set, so it stays private."
    else:
        first = f"Uploaded privately; goes public {_when(public_at)}."
    lines = [first] if url is None else [first, url]
    return Message(f"{title} uploaded", "\n".join(lines))


def failed_message(title: str, reason: str, fix_command: str) -> Message:
    return Message(f"{title} failed", f"{reason}\nTo retry, run: {fix_command}")


def artwork_dropped_message(title: str) -> Message:
    return Message(
        f"{title}: uploading without artwork",
        "SoundCloud keeps failing while the artwork is attached (a known SoundCloud problem), "
        "so the track goes up without it. Add the artwork on soundcloud.com once it is live.",
    )


def needs_login_message(problem: str | None = None) -> Message:
    """The login expired (no `problem`), or SoundCloud access is not set up: `problem` says
    what to do (set the client id, unlock the keyring, …)."""
    if problem is None:
        return Message(
            "SoundCloud login expired",
            "Uploads are paused until you log in again.\nRun: releaseosd auth login",
        )
    return Message(
        "releaseosd cannot reach your SoundCloud", f"{problem}\nUploads wait until then."
    )


def login_before_release_message(title: str, public_at: datetime, problem: str) -> Message:
    return Message(
        f"Log in before {title} goes public",
        f"It goes public {_when(public_at)}, but {problem}.\nRun: releaseosd auth login",
    )


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if mins and not days:
        parts.append(f"{mins} min")
    return " ".join(parts) or "less than a minute"


def _when(moment: datetime) -> str:
    # Aware times are shown in the local zone the producer reads the notification in; naive ones
    # are taken to be local already.
    local = moment.astimezone() if moment.tzinfo is not None else moment
    return f"{local:%a} {local.day} {local:%b %Y} at {local:%H:%M}"


# --- delivering it --------------------------------------------------------------------------------


class NotificationUnavailable(Exception):
    """A `send` may raise this; its message says why nothing was shown, for the log."""


class DBusSender:
    """The default `send` on Linux: one Notify call on the session bus, through jeepney.

    Not notify-py's Linux backends: its notify-send backend lets notify-send print D-Bus errors
    on the daemon's stderr, and its D-Bus backend reports success when no notification server
    exists (the error comes back as a reply it does not inspect). Here an error reply is a
    failure with a reason, and the bus address is read at send time, not at import time.
    """

    def __init__(self, app_name: str, timeout: float = 5.0) -> None:
        self.app_name = app_name
        self.timeout = timeout

    def __call__(self, title: str, body: str) -> bool:
        from jeepney import DBusAddress, DBusErrorResponse, new_method_call
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.wrappers import unwrap_msg

        address = session_bus_address()
        if address is None:
            raise NotificationUnavailable(
                "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set "
                "(headless, or started outside a desktop session)"
            )
        try:
            connection = open_dbus_connection(bus=address, auth_timeout=self.timeout)
        except Exception as exc:
            raise NotificationUnavailable(
                f"cannot connect to the D-Bus session bus at {address}: {exc}"
            ) from exc
        server = DBusAddress(
            "/org/freedesktop/Notifications",
            bus_name="org.freedesktop.Notifications",
            interface="org.freedesktop.Notifications",
        )
        # (app_name, replaces_id, icon, summary, body, actions, hints, expire_timeout)
        call = new_method_call(
            server, "Notify", "susssasa{sv}i", (self.app_name, 0, "", title, body, [], {}, -1)
        )
        try:
            reply = connection.send_and_get_reply(call, timeout=self.timeout)
        except TimeoutError as exc:
            raise NotificationUnavailable(
                f"the notification server did not answer within {self.timeout:g} s"
            ) from exc
        finally:
            connection.close()
        try:
            unwrap_msg(reply)
        except DBusErrorResponse as exc:
            if exc.name == "org.freedesktop.DBus.Error.ServiceUnknown":
                raise NotificationUnavailable(
                    f"no notification server on the session bus {address} "
                    "(nothing owns org.freedesktop.Notifications)"
                ) from exc
            raise NotificationUnavailable(
                f"the notification server refused: {exc.name}: {exc.data}"
            ) from exc
        return True


def session_bus_address() -> str | None:
    """The session bus as D-Bus clients find it: the variable, else the per-user socket."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime, "bus").is_socket():
        return f"unix:path={Path(runtime, 'bus')}"
    return None


class NotifyPySender:
    """The default `send` on macOS and Windows: notify-py, imported on first use.

    On Linux it works too (tests use it there) but see `DBusSender` for what it gets wrong.
    """

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name

    def __call__(self, title: str, body: str) -> bool:
        notifypy = _import_notifypy()
        note = notifypy.Notify(default_notification_application_name=self.app_name)
        # notify-send parses its arguments: a title or body starting with '-' would be taken for
        # an option and the notification lost. A word joiner in front is invisible.
        note.title = _not_an_option(title)
        note.message = _not_an_option(body)
        # notify-py's fallback icon is the Python logo; an empty icon lets the desktop choose.
        note._notification_icon = ""
        done = threading.Event()
        # Sends in this thread: `send()` would start a non-daemon thread of its own, which can
        # hold up interpreter exit for 35 s when the service hangs.
        note.start_notification_thread(done)
        return done.is_set()


def default_sender(app_name: str) -> Send:
    if sys.platform.startswith("linux"):
        return DBusSender(app_name)
    return NotifyPySender(app_name)


def _not_an_option(text: str) -> str:
    return "\u2060" + text if text.startswith("-") else text


_notifypy_lock = threading.Lock()


def _import_notifypy() -> ModuleType:
    with _notifypy_lock:
        if "notifypy" not in sys.modules:
            # notify-py logs through loguru, whose default sink is stderr; the daemon's stderr is
            # its log, and that noise does not belong in it. Must happen before the import,
            # which already logs.
            from loguru import logger

            logger.disable("notifypy")
        import notifypy

        module: ModuleType = notifypy
        return module


class Notifier:
    """Sends the producer's notifications without ever blocking or failing the caller.

    `send(title, body) -> bool` delivers one notification (True: handed to the notification
    service; False or an exception, ideally `NotificationUnavailable`: not shown). It defaults
    to `default_sender(app_name)`. It runs on a single worker thread, at most `timeout` seconds per notification; at most `queue_size`
    notifications wait, newer ones beyond that are dropped (and logged at debug level).
    Each public method returns whether the notification was queued (False when its kind is
    switched off in the config, or the queue is full).
    """

    def __init__(
        self,
        settings: NotificationsConfig,
        app_name: str = "releaseosd",
        send: Send | None = None,
        *,
        timeout: float = DEFAULT_SEND_TIMEOUT,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.settings = settings
        self.app_name = app_name
        self._send: Send = send if send is not None else default_sender(app_name)
        self._timeout = timeout
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._worker: threading.Thread | None = None
        self._closed = False
        self._broken = False
        # A send that timed out may still be running; while it is, the service counts as hung and
        # no second one is started, so a hanging service costs one thread, not one per message.
        self._straggler: threading.Thread | None = None

    # -- what it tells ------------------------------------------------------------------------

    def released(self, title: str, url: str, late_by: timedelta | None = None) -> bool:
        """The track is public now; `late_by` when it went out later than planned."""
        if not self.settings.released:
            return False
        return self._enqueue(released_message(title, url, late_by))

    def uploaded(self, title: str, url: str | None, public_at: datetime | None) -> bool:
        """The track was uploaded privately and goes public at `public_at` (None: not scheduled)."""
        if not self.settings.uploaded:
            return False
        return self._enqueue(uploaded_message(title, url, public_at))

    def failed(self, title: str, reason: str, fix_command: str) -> bool:
        """The track needs the producer: why, and the command that retries it."""
        if not self.settings.failed:
            return False
        return self._enqueue(failed_message(title, reason, fix_command))

    def artwork_dropped(self, title: str) -> bool:
        """SoundCloud kept failing with the artwork attached; the track goes up without it."""
        if not self.settings.failed:
            return False
        return self._enqueue(artwork_dropped_message(title))

    def needs_login(self, problem: str | None = None) -> bool:
        """SoundCloud refused the stored login (or access is not set up: `problem` says how to
        fix it); uploads wait for the user."""
        if not self.settings.needs_login:
            return False
        return self._enqueue(needs_login_message(problem))

    def login_before_release(self, title: str, public_at: datetime, problem: str) -> bool:
        """A release is near and the stored login will not carry it: said a day ahead."""
        if not self.settings.needs_login:
            return False
        return self._enqueue(login_before_release_message(title, public_at, problem))

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification was sent or given up on; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Send what is queued (waiting at most `timeout`), then stop the worker.

        Later calls are ignored. False if notifications were still waiting at the deadline.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        done = self.flush(timeout)
        worker = self._worker
        if worker is not None:
            # On a full queue the worker just stays: it is a daemon thread and dies with the process.
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
        return done

    # -- internals -----------------------------------------------------------------------------

    def _enqueue(self, message: Message) -> bool:
        try:
            with self._lock:
                if self._closed:
                    return False
                self._queue.put_nowait(message)
                self._pending += 1
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._run, name="releaseosd-notify", daemon=True
                    )
                    self._worker.start()
        except queue.Full:
            log.debug("notification queue full; dropped %r", message.title)
            return False
        except Exception:  # e.g. no thread can be started: still never the caller's problem
            log.debug("could not queue notification %r", message.title, exc_info=True)
            return False
        return True

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            try:
                self._deliver(message)
            except Exception:  # the worker must outlive any bug below it
                log.debug("notification %r failed", message.title, exc_info=True)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, message: Message) -> None:
        if self._straggler is not None and self._straggler.is_alive():
            self._failed(
                message, f"the previous notification is still hanging (> {self._timeout:g} s)"
            )
            return
        outcome: list[bool | BaseException] = []

        def attempt() -> None:
            try:
                outcome.append(bool(self._send(message.title, message.body)))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=attempt, name="releaseosd-notify-send", daemon=True)
        thread.start()
        thread.join(self._timeout)
        if thread.is_alive():
            self._straggler = thread
            self._failed(
                message, f"the notification service did not answer within {self._timeout:g} s"
            )
            return
        result = outcome[0] if outcome else False
        if isinstance(result, NotificationUnavailable):
            self._failed(message, str(result))
        elif isinstance(result, BaseException):
            self._failed(message, f"{type(result).__name__}: {result}")
        elif result:
            self._succeeded(message)
        else:
            self._failed(message, "the notification service refused it")

    def _succeeded(self, message: Message) -> None:
        if self._broken:
            self._broken = False
            log.info("desktop notifications work again")
        log.debug("notified: %s", message.title)

    def _failed(self, message: Message, cause: str) -> None:
        if self._broken:
            log.debug("notification %r not shown: %s", message.title, cause)
            return
        self._broken = True
        # Once per outage: a headless box would otherwise log this for every track.
        log.warning(
            "desktop notifications are not working: %s. releaseosd carries on without them and "
            "says so only once; to stop trying, switch the kinds off under 'notifications:' in "
            "the config",
            cause,
        )
