"""The SoundCloud sandbox against clients that misbehave, over real loopback sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest
from sandbox_tools import TestSandbox, TokenPair

from releaseosd.rehearsal.wire import PIECE

BOUNDARY = b"hostile-boundary"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def tokens(sandbox: TestSandbox) -> TokenPair:
    return sandbox.issue_tokens()


@pytest.fixture
def http(sandbox: TestSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, timeout=10.0) as client:
        yield client


def _part(disposition: bytes, value: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY
        + b"\r\nContent-Disposition: "
        + disposition
        + b"\r\n\r\n"
        + value
        + b"\r\n"
    )


def _upload_head(sandbox: TestSandbox, tokens: TokenPair, length: int) -> bytes:
    host = sandbox.base_url.removeprefix("http://").encode()
    return (
        b"POST /tracks HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Authorization: OAuth " + tokens.access_token.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_stalled_uploads_past_the_worker_pool_do_not_stop_other_requests(
    sandbox: TestSandbox, tokens: TokenPair, http: httpx.Client
) -> None:
    # anyio's default pool has 40 threads; each stalled upload holds one while it waits for
    # its body. Every connection the server accepts must still get its request answered.
    stalled = 45
    start = _part(b'form-data; name="track[title]"', b"T") + (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="track[asset_data]"; '
        b'filename="a.mp3"\r\n\r\nID3'
    )
    # A body reaches the worker in pieces of up to a MiB (wire.PIECE): past one, the upload's
    # file is on disk, and the request is in its thread waiting for more.
    start += bytes(PIECE)
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    with ExitStack() as stack:
        for _ in range(stalled):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), 10.0))
            sock.sendall(_upload_head(sandbox, tokens, 1 << 30) + start)
        wait_for(
            lambda: len(list(sandbox.incoming_dir.glob("*.part"))) == stalled,
            f"{stalled} uploads in progress",
        )
        me = http.get("/me", headers=tokens.headers, timeout=5.0)
        assert me.status_code == 200
        faults = http.get("/_sandbox/faults", timeout=5.0)
        assert faults.status_code == 200
    wait_for(lambda: not list(sandbox.incoming_dir.glob("*.part")), "the cut uploads' files gone")


@pytest.mark.parametrize(
    "artwork_disposition",
    [
        b"form-data; name=\"track[artwork_data]\"; filename*=utf-8''cover.png%00",
        b'form-data; name="track[artwork_data]"; filename="cover.' + b"x" * 300 + b'"',
    ],
    ids=["nul-in-suffix", "300-char-suffix"],
)
def test_an_artwork_filename_the_disk_cannot_hold_is_no_sandbox_bug(
    sandbox: TestSandbox, tokens: TokenPair, http: httpx.Client, artwork_disposition: bytes
) -> None:
    body = (
        _part(b'form-data; name="track[title]"', b"T")
        + _part(b'form-data; name="track[asset_data]"; filename="a.mp3"', b"ID3" + bytes(64))
        + _part(artwork_disposition, b"\x89PNG")
        + b"--"
        + BOUNDARY
        + b"--\r\n"
    )
    answer = http.post(
        "/tracks",
        content=body,
        headers={
            **tokens.headers,
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
        },
    )
    assert answer.status_code == 201, answer.text
    track = answer.json()
    assert track["artwork_url"] is not None
    stored = sandbox.upload_of(track["urn"])
    assert stored.path.exists()
    assert stored.artwork is not None
    assert stored.artwork.read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in sandbox.uploads_dir.iterdir() if p.is_file()) == sorted(
        [stored.path.name, stored.artwork.name]
    )
    # The same artwork given again in an update.
    body = _part(artwork_disposition, b"\x89PNG2") + b"--" + BOUNDARY + b"--\r\n"
    updated = http.put(
        f"/tracks/{track['urn']}",
        content=body,
        headers={
            **tokens.headers,
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
        },
    )
    assert updated.status_code == 200, updated.text
    again = sandbox.upload_of(track["urn"])
    assert again.artwork is not None
    assert again.artwork.read_bytes() == b"\x89PNG2"
