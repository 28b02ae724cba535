"""The dashboard's live stream: a listener on the event bus that tells every open page what
changed, as server-sent events. It sends what changed, never the whole page: a card that
changed is fetched again by the page (one GET), progress comes as numbers.

The bus delivers in a stage's thread and a listener must return at once: each page has a
bounded queue on the server's event loop, filled with `call_soon_threadsafe`; a page too slow
to keep up is told to reload instead of holding memory."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from releaseosd.model.events import (
    Event,
    LoginBeforeRelease,
    NeedsLogin,
    TrackEvent,
    UploadProgress,
)

QUEUE_LIMIT = 256


@dataclass(frozen=True)
class Progress:
    """How an upload is going: bytes so far, of how many, at what rate since it began."""

    sent: int
    total: int
    started_at: dt.datetime
    at: dt.datetime
    started_sent: int

    @property
    def rate(self) -> float | None:
        """Bytes per second since the upload began (None until it has run a moment)."""
        seconds = (self.at - self.started_at).total_seconds()
        return (self.sent - self.started_sent) / seconds if seconds > 0.05 else None

    @property
    def seconds_left(self) -> float | None:
        rate = self.rate
        return (self.total - self.sent) / rate if rate else None

    @property
    def amount(self) -> str:
        """ "12.3 MB of 40.0 MB"."""
        return f"{byte_size(self.sent)} of {byte_size(self.total)}"

    @property
    def text(self) -> str:
        """As the card shows it: "12.3 MB of 40.0 MB · 2.1 MB/s · 0:13 left"."""
        parts = [self.amount]
        rate, left = self.rate, self.seconds_left
        if rate:
            parts.append(f"{byte_size(rate)}/s")
        if left is not None:
            minutes, seconds = divmod(round(left), 60)
            parts.append(f"{minutes}:{seconds:02d} left")
        return " · ".join(parts)

    def as_json(self) -> dict[str, float | int | str | None]:
        rate = self.rate
        left = self.seconds_left
        return {
            "sent": self.sent,
            "total": self.total,
            "rate": round(rate) if rate is not None else None,
            "seconds_left": round(left, 1) if left is not None else None,
            "text": self.text,
            # When the uploader last said how far it is: the page tells a stalled upload by it.
            "at": self.at.isoformat(),
            "amount": self.amount,
        }


def byte_size(count: float) -> str:
    for limit, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if count >= limit:
            return f"{count / limit:.1f} {unit}"
    return f"{round(count)} B"


@dataclass(frozen=True)
class Message:
    event: str
    data: str


class LiveFeed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._closed = False
        self._pages: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Message]]] = {}
        self._progress: dict[str, Progress] = {}
        self._next_page = 0

    # --- the bus side (any thread) ---------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, UploadProgress):
            if self._note_progress(event):
                progress = self.progress(event.track_id)
                if progress is not None:
                    self._send(
                        Message(
                            "progress", json.dumps({"id": event.track_id, **progress.as_json()})
                        )
                    )
            return
        if isinstance(event, NeedsLogin):
            self.tell_account()
        if isinstance(event, TrackEvent):
            if not isinstance(event, LoginBeforeRelease):
                with self._lock:
                    self._progress.pop(event.track_id, None)
            self._send(Message("track", json.dumps({"id": event.track_id})))

    def tell_account(self) -> None:
        """The login changed (connected, disconnected, lost): pages show the account again."""
        self._send(Message("account", "{}"))

    def _note_progress(self, event: UploadProgress) -> Progress:
        with self._lock:
            before = self._progress.get(event.track_id)
            if before is None or event.sent < before.sent:
                # A new upload (or a retry starting over): its rate counts from here.
                now = Progress(event.sent, event.total, event.at, event.at, event.sent)
            else:
                now = Progress(
                    event.sent, event.total, before.started_at, event.at, before.started_sent
                )
            self._progress[event.track_id] = now
            return now

    def progress(self, track_id: str) -> Progress | None:
        with self._lock:
            return self._progress.get(track_id)

    def _send(self, message: Message) -> None:
        with self._lock:
            pages = list(self._pages.values())
        for loop, queue in pages:
            # RuntimeError: that page's loop has closed, the server is stopping.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer, queue, message)

    def close(self, timeout: float = 1.0) -> None:
        """End every page's stream (the daemon stops): each finishes its answer cleanly, so the
        server's stop cancels nothing and logs nothing; the pages reconnect when it is back."""
        with self._lock:
            self._closed = True
        self._send(Message("bye", "{}"))
        with self._drained:
            self._drained.wait_for(lambda: not self._pages, timeout)

    # --- the page side (the server's event loop) -------------------------------------------------

    async def stream(self) -> AsyncIterator[dict[str, str]]:
        """What one page hears, as sse-starlette's event dicts, until it goes away."""
        queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_LIMIT)
        with self._lock:
            if self._closed:
                return
            page = self._next_page
            self._next_page += 1
            self._pages[page] = (asyncio.get_running_loop(), queue)
        try:
            yield {"event": "hello", "data": "{}"}
            while True:
                message = await queue.get()
                yield {"event": message.event, "data": message.data}
                if message.event in ("reload", "bye"):
                    return
        finally:
            with self._lock:
                self._pages.pop(page, None)
                self._drained.notify_all()


def _offer(queue: asyncio.Queue[Message], message: Message) -> None:
    if queue.full():
        # Too far behind to catch up event by event: the page loads everything again.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(Message("reload", "{}"))
        return
    queue.put_nowait(message)
