"""Where the dashboard listens: loopback only, unless the config says otherwise on purpose."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from releaseosd.model.config import DashboardConfig
from releaseosd.web.served import tcp_listener

log = logging.getLogger("releaseosd.dashboard.listen")


class BindRefused(Exception):
    """The dashboard cannot listen where the config says; the message says what to change."""


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def non_loopback(config: DashboardConfig) -> list[str]:
    return [a for a in config.bind if not is_loopback(a)]


def bind(config: DashboardConfig, port: int | None = None) -> list[socket.socket]:
    """Listening sockets on every address of `bind`, all on one port (the config's, or the one
    the first address got when it is 0). An address this machine lacks (no IPv6) is skipped
    unless it is the only one; a port in use is refused with what to do."""
    wide = non_loopback(config)
    if wide and not config.allow_non_loopback:
        raise BindRefused(
            f"dashboard.bind names {', '.join(wide)}, which other machines can reach; the "
            "dashboard controls your releases, so it listens on loopback only. Remove it from "
            "dashboard.bind (or set dashboard.allow_non_loopback: true if you really mean it)"
        )
    if wide:
        log.warning(
            "the dashboard listens on %s, reachable from other machines: anyone there who learns "
            "its secret controls your releases",
            ", ".join(wide),
        )
    chosen = config.port if port is None else port
    sockets: list[socket.socket] = []
    try:
        for address in config.bind:
            try:
                sock = tcp_listener(address, chosen)
            except OverflowError:
                raise BindRefused(f"dashboard port {chosen} is not a port (0 to 65535)") from None
            except OSError as exc:
                missing = exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
                if missing and len(config.bind) > 1:
                    log.debug("dashboard: %s is not available here (%s)", address, exc.strerror)
                    continue
                if exc.errno == errno.EADDRINUSE:
                    raise BindRefused(
                        f"port {chosen} on {address} is in use (another releaseosd, or another "
                        "program): set dashboard.port to a free port, or stop what uses it"
                    ) from None
                raise BindRefused(
                    f"cannot listen on {address} port {chosen}: {exc.strerror}"
                ) from None
            sockets.append(sock)
            chosen = sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise BindRefused(f"none of {', '.join(config.bind)} can be listened on here")
    return sockets
