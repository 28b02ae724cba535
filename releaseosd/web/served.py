"""The product's one HTTP stack: a Starlette app served by uvicorn in a thread of its own, on
sockets the caller has bound and checked (the control socket's folder checks, the dashboard's
loopback-only bind). uvicorn is told nothing about addresses: it serves what it is handed, so
the checks that decide where the product listens stay in one place each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("releaseosd.web.served")

START_WITHIN_SECONDS = 10.0
# Anyone on the machine can connect to a loopback port without knowing a secret: a connection
# that sends no request soon is closed, and past this many the newest are, so idle sockets can
# never use up the daemon's file descriptors (its store, uploads and control socket need them).
MAX_CONNECTIONS = 64
REQUEST_WITHIN_SECONDS = 10.0
_CUT = "releaseosd.cut"


def cut_connection(scope: Scope) -> None:
    """Close the connection a request came on at once, with no answer and unread data
    discarded (the peer sees a reset): the sandbox's faults play lost answers and uploads cut
    off with it. Call it on the server's loop."""
    scope["extensions"][_CUT]["cut"]()


def tcp_listener(address: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening socket on one address (an IPv6 one for IPv6 only), ready for ServedApp:
    what the dashboard and the login callback bind. Raises what socket raises (OSError,
    OverflowError for a port past 65535), the socket closed."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _GuardedH11(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        app = self.app

        async def with_cut(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[_CUT] = {"cut": transport.abort}
            await app(scope, receive, send)

        self.app = with_cut
        if len(self.connections) > MAX_CONNECTIONS:
            transport.close()
            return
        self.loop.call_later(REQUEST_WITHIN_SECONDS, self._close_if_silent)

    def _close_if_silent(self) -> None:
        # No request has come in on it (uvicorn makes a cycle per request it parsed).
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()


class ServeFailed(Exception):
    """The server could not start on its sockets; the message says why."""


class _QuietServer(uvicorn.Server):
    """uvicorn's own loop wakes ten times a second to see whether it should stop; an idle
    daemon (two servers) would spend most of its CPU there. This one sleeps until `stop`."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        await self.on_tick(0)  # the default headers, once (no Date header: it would go stale)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # Set after the event exists: a stop from now on wakes it, one before is seen here.
        if not self.should_exit:
            await self._wake.wait()

    def cut_connections(self) -> None:
        loop = self._loop
        if loop is None:
            return

        def cut() -> None:
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(cut)

    def stop(self) -> None:
        self.should_exit = True
        wake, loop = self._wake, self._loop
        if wake is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(wake.set)


class ServedApp:
    def __init__(
        self,
        app: ASGIApp,
        sockets: list[socket.socket],
        name: str,
        *,
        keep_alive_seconds: int = 5,
    ) -> None:
        self.name = name
        self._sockets = sockets
        config = uvicorn.Config(
            app,
            lifespan="off",
            access_log=False,
            log_config=None,  # the daemon's logging stays as it is
            log_level="warning",
            http=_GuardedH11,
            ws="none",
            date_header=False,
            timeout_keep_alive=keep_alive_seconds,
            loop="asyncio",
            # Streams (the dashboard's live events) never end by themselves: a stop cancels them.
            timeout_graceful_shutdown=1,
        )
        self._server = _QuietServer(config)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._error: BaseException | None = None

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=self._sockets))
        except BaseException as exc:  # reported by start(), or logged if it dies later
            self._error = exc
            log.exception("%s server stopped", self.name)

    def start(self) -> None:
        """Serve; returns once the server accepts connections (or raises ServeFailed)."""
        self._thread.start()
        deadline = time.monotonic() + START_WITHIN_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeFailed(f"the {self.name} server did not start: {self._error}")
            time.sleep(0.01)

    def stop(self, timeout: float = 3.0, *, cut_connections: bool = False) -> None:
        """Stop serving; with `cut_connections`, requests still in progress (an upload) end
        now, their clients see the connection reset, as when a real server goes down."""
        if cut_connections:
            self._server.cut_connections()
        self._server.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for sock in self._sockets:
            sock.close()
