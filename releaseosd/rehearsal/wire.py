"""How a request reaches the SoundCloud sandbox and how its answer leaves, on the product's one
HTTP stack (Starlette routing on uvicorn, releaseosd/web/served.py).

The sandbox's request cycle is plain blocking code under one lock (its state, its files), so each
request is answered in a worker thread; the body is read from there as it arrives, piece by piece
through the event loop, so a 4 GiB upload streams to disk without being held anywhere. A
multipart body is parsed by python-multipart's streaming parser, each part's headers by the
standard library's email parser (quoted strings, escapes, RFC 2231 parameters). What HTTP/1.1
framing is (Content-Length, chunked, keep-alive) is uvicorn's business, not this module's.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import anyio
import anyio.from_thread
import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from releaseosd.web.served import MAX_CONNECTIONS, cut_connection

PIECE = 1 << 20
MAX_SMALL_BODY = 1 << 20
MAX_FIELD_BYTES = 64 << 10
MAX_PART_HEADER_BYTES = 16 << 10


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class Dropped(Exception):
    """Cut this connection without an answer. The product's sandbox never does; a subclass's
    seams raise it to play a connection lost mid-request (tests/sandbox_tools)."""


class ClientGone(Exception):
    """The client closed the connection before sending the whole body."""


class BodyRefused(Exception):
    """The body cannot be read as what it says it is; answered with `status` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Body:
    """A request body read as it arrives, from the worker thread that answers the request."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._steps: list[Callable[[bytes], bytes]] = []
        self.read_bytes = 0
        self.done = False
        self.broken = False

    async def _next_piece(self) -> tuple[bytes, bool, bool]:
        """Up to PIECE bytes more of the body, whether more follows, whether the client left.
        uvicorn hands a body on in pieces of about 64 KiB: gathered here, each hop to the
        worker thread carries up to a MiB."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return b"", False, True
            data: bytes = message.get("body", b"")
            parts.append(data)
            size += len(data)
            more: bool = message.get("more_body", False)
            if not more or size >= PIECE:
                return b"".join(parts) if len(parts) > 1 else data, more, False

    def through(self, step: Callable[[bytes], bytes]) -> None:
        """Pass every piece still to arrive through `step`, which may hold it back (a slow
        uplink) or raise Dropped (a connection lost mid-upload): tests/sandbox_tools' faults.
        At the body's end it is called once more, with no bytes."""
        self._steps.append(step)

    def chunks(self) -> Iterator[bytes]:
        """The body in the pieces it arrives in."""
        while not self.done:
            data, more, gone = anyio.from_thread.run(self._next_piece)
            if gone:
                self.broken = True
                raise ClientGone
            self.done = not more
            for step in self._steps:
                data = step(data)
            if data:
                self.read_bytes += len(data)
                yield data
        for step in self._steps:
            step(b"")  # the body's end: a step may still cut the connection here

    def read_all(self, limit: int = MAX_SMALL_BODY) -> bytes:
        parts: list[bytes] = []
        size = 0
        for data in self.chunks():
            size += len(data)
            if size > limit:
                raise BodyRefused(413, f"request body larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    def drain(self) -> None:
        """Read what is left: the client then sees the answer, not a reset while it sends."""
        if not self.done and not self.broken:
            for _ in self.chunks():
                pass


def header_param(headers: Message, header: str, name: str) -> bytes | None:
    """A parameter of a header as the bytes that were sent (headers arrive decoded as latin-1);
    an RFC 2231 value (`name*=utf-8''…`) as UTF-8."""
    value = headers.get_param(name, header=header)
    if value is None:
        return None
    if isinstance(value, tuple):
        return collapse_rfc2231_value(value).encode("utf-8")
    return value.encode("latin-1", "replace")


def _message(pairs: list[tuple[str, str]]) -> Message:
    message = Message()
    for name, value in pairs:
        message[name] = value
    return message


@dataclass
class Upload:
    """A file part, spooled to disk while it arrives."""

    field: str
    filename: str
    content_type: str | None
    path: Path
    size: int = 0


class MultipartSink:
    """Reads a multipart/form-data body (RFC 7578) as it arrives: file parts go straight to files
    in `spool_dir` (writes of memoryview slices, no copies), small fields are kept in memory."""

    def __init__(self, boundary: bytes, spool_dir: Path) -> None:
        self.fields: list[tuple[str, str]] = []
        self.files: list[Upload] = []
        self.problems: list[str] = []
        self._spool_dir = spool_dir
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._out: IO[bytes] | None = None
        self._upload: Upload | None = None
        self._name = ""
        self._value = bytearray()
        self._skip = False
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._part_begin,
                    "on_header_field": self._header_name_piece,
                    "on_header_value": self._header_value_piece,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                },
                max_header_size=MAX_PART_HEADER_BYTES,
            )
        except ValueError as exc:  # FormParserError: a boundary longer than RFC 2046 allows
            raise BodyRefused(400, f"malformed multipart body: {exc}") from None

    def write(self, data: bytes) -> None:
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise BodyRefused(400, f"malformed multipart body: {exc}") from None

    def finish(self) -> None:
        self._parser.finalize()
        if self._parser.state != MultipartState.END:
            raise BodyRefused(400, "multipart body ended before its closing boundary")

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        for upload in self.files:
            upload.path.unlink(missing_ok=True)

    def _part_begin(self) -> None:
        self._headers = []
        self._name = ""
        self._value = bytearray()
        self._skip = False

    def _header_name_piece(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_piece(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        pair = (self._header_name.decode("latin-1"), self._header_value.decode("latin-1"))
        self._headers.append(pair)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        headers = _message(self._headers)
        name = header_param(headers, "content-disposition", "name")
        if headers.get_content_disposition() != "form-data" or name is None:
            self.problems.append("a multipart part has no Content-Disposition: form-data; name=…")
            self._skip = True
            return
        self._name = name.decode("utf-8", "replace")
        filename = header_param(headers, "content-disposition", "filename")
        if filename is not None:
            path = self._spool_dir / f"{secrets.token_hex(8)}.part"
            ctype = headers.get("content-type")
            self._upload = Upload(self._name, filename.decode("utf-8", "replace"), ctype, path)
            self.files.append(self._upload)
            self._out = open(path, "wb")  # noqa: SIM115 - closed in _part_end or discard

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        if self._out is not None and self._upload is not None:
            self._out.write(memoryview(data)[start:end])
            self._upload.size += end - start
        elif not self._skip:
            if len(self._value) + end - start > MAX_FIELD_BYTES:
                self.problems.append(f"{self._name} is longer than {MAX_FIELD_BYTES} bytes")
                self._skip = True
            else:
                self._value += data[start:end]

    def _part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            self._upload = None
        elif not self._skip:
            try:
                self.fields.append((self._name, self._value.decode("utf-8")))
            except UnicodeDecodeError:
                self.problems.append(f"{self._name} is not valid UTF-8")


@dataclass
class Request:
    method: str
    path: str
    template: str | None
    params: dict[str, str]
    query: list[tuple[str, str]]
    headers: Headers
    body: Body
    content_type: str | None
    boundary: bytes | None
    # What the body held, once a handler has read it (for a subclass's _observe).
    form: list[tuple[str, str]] = field(default_factory=list)
    files: list[Upload] = field(default_factory=list)
    json_body: Any = None

    def q(self, name: str) -> str | None:
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else None


# The sandbox's cycle for one request: its answer, or None when the client went away first.
# Runs in a worker thread; raises Dropped to have the connection cut instead.
AnswerRequest = Callable[[Request, Mapping[str, str]], Answer | None]


class Workers:
    """The worker threads the requests of one served app are answered in, shared by its
    Endpoints: as many as the server keeps connections open (served.MAX_CONNECTIONS). A request
    holds its thread while its body arrives, however slowly; with anyio's default pool (40
    threads) 40 stalled uploads would leave every other request, /me or the admin API,
    waiting for a thread for as long as they stall."""

    def __init__(self, threads: int = MAX_CONNECTIONS) -> None:
        self._threads = threads
        self._limiter: tuple[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = None

    def limiter(self) -> anyio.CapacityLimiter:
        """This loop's limiter (a sandbox started again serves on a new loop)."""
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter[0] is not loop:
            self._limiter = (loop, anyio.CapacityLimiter(self._threads))
        return self._limiter[1]


class Endpoint:
    """The ASGI app of one path template (None: what no template matches), whose methods are
    `handlers` (method -> the sandbox's handler name), answered in one of `workers`."""

    def __init__(
        self,
        answer: AnswerRequest,
        template: str | None,
        handlers: Mapping[str, str],
        workers: Workers,
    ) -> None:
        self._answer = answer
        self.template = template
        self._handlers = dict(handlers)
        self._workers = workers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        content_type_header = _message([("content-type", headers.get("content-type", ""))])
        params = content_type_header.get_params(header="content-type") or [("", "")]
        content_type = params[0][0].lower() or None
        req = Request(
            method=scope["method"],
            path=scope["path"],
            template=self.template,
            params=dict(scope.get("path_params", {})),
            query=parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True),
            headers=headers,
            body=Body(receive),
            content_type=content_type,
            boundary=header_param(content_type_header, "content-type", "boundary"),
        )
        try:
            answer = await anyio.to_thread.run_sync(
                self._answer,
                req,
                self._handlers,
                abandon_on_cancel=True,
                limiter=self._workers.limiter(),
            )
        except Dropped:
            cut_connection(scope)
            while (await receive())["type"] != "http.disconnect":
                pass  # uvicorn says so once the cut is done; returning earlier earns a 500
            return
        if answer is None:
            return
        response = Response(answer.body, answer.status, media_type=answer.content_type)
        response.raw_headers += [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in answer.headers
        ]
        if req.body.broken:
            response.raw_headers.append((b"connection", b"close"))
        await response(scope, receive, send)
