"""The systemd notify protocol (sd_notify(3)) in plain stdlib: readiness, stopping, watchdog.

Every function is a no-op returning False when $NOTIFY_SOCKET is unset, so the daemon calls them
unconditionally: under `releaseosd run` in a terminal or under launchd nothing happens.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("releaseosd.app.sdnotify")

_failure_logged = False


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        # A leading '@' names a Linux abstract socket, whose kernel name starts with a NUL byte.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd may also hand out vsock: addresses (VMs); the daemon never runs there.
    return None


def notify(message: str) -> bool:
    """Send one sd_notify message ("READY=1", "WATCHDOG=1", …); True if it was handed over.

    Never raises: a service manager that went away must not take the daemon with it.
    """
    global _failure_logged
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _socket_address(value)
    if address is None:
        log.debug("NOTIFY_SOCKET=%r is not a unix socket address; not notifying", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        # Watchdog pings repeat every few seconds: say it once, not every time.
        if not _failure_logged:
            _failure_logged = True
            log.warning("could not notify systemd through NOTIFY_SOCKET=%s: %s", value, exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd start-up is done (Type=notify units count as started only now)."""
    return notify("READY=1" if status is None else f"READY=1\nSTATUS={_one_line(status)}")


def status(text: str) -> bool:
    """Set the one-line status `systemctl --user status releaseosd` shows."""
    return notify(f"STATUS={_one_line(text)}")


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun, so it waits for it instead of counting a failure."""
    return notify("STOPPING=1")


def watchdog_ping() -> bool:
    """Tell systemd the daemon is alive; needed at least once per WatchdogSec."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds if systemd expects pings from this process, else None.

    Ping at half this interval. $WATCHDOG_PID, when set, names the process the watchdog is meant
    for: a child that inherited the environment must not ping on its parent's behalf.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 1_000_000


def _one_line(text: str) -> str:
    # Each message is newline-separated KEY=VALUE: a newline in the status would start a new key.
    return " ".join(text.split())
