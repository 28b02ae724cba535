"""An upload streams from disk: a child process's peak RSS does not grow with the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILE_BYTES = 160 * 1024 * 1024


class _Sink(BaseHTTPRequestHandler):
    """Reads a body in 1 MiB pieces, keeps only its length, answers like SoundCloud's 201."""

    received: list[int]

    def do_POST(self) -> None:
        remaining = int(self.headers["Content-Length"])
        total = 0
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
            total += len(chunk)
        type(self).received.append(total)
        body = json.dumps({"urn": "soundcloud:tracks:1", "permalink_url": "x"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[tuple[str, list[int]]]:
    received: list[int] = []
    handler = type("Sink", (_Sink,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


CHILD = textwrap.dedent(
    """
    import hashlib, json, resource, sys
    from pathlib import Path
    import httpx
    from releaseosd.model.config import SoundCloudConfig
    from releaseosd.soundcloud.client import SoundCloudClient, TrackFields
    from releaseosd.soundcloud.tokens import MemoryKeyring, TokenManager, TokenSet, TokenStore

    base, audio = sys.argv[1], Path(sys.argv[2])
    config = SoundCloudConfig(client_id="cid", api_url=base, auth_url=base)
    store = TokenStore(MemoryKeyring())
    store.set_tokens("cid", TokenSet("tok", "ref", 4e9))
    http = httpx.Client()
    client = SoundCloudClient(config, TokenManager(store, config, http), http)
    seen = []
    def progress(done, total):
        seen.append(done)
    with audio.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client.upload_track(audio, TrackFields(title="Big"), progress=progress,
                        sha256=digest, check_quota=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "calls": len(seen),
                      "last": seen[-1]}))
    """
)


def test_upload_memory_stays_flat(sink: tuple[str, list[int]], tmp_path: Path) -> None:
    base, received = sink
    audio = tmp_path / "big.wav"
    with audio.open("wb") as handle:
        block = os.urandom(1 << 20)
        for _ in range(FILE_BYTES >> 20):
            handle.write(block)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, base, str(audio)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    growth_mib = (report["after_kib"] - report["before_kib"]) / 1024
    assert growth_mib < 20, f"peak RSS grew {growth_mib:.1f} MiB for a {FILE_BYTES >> 20} MiB file"
    [length] = received
    assert length > FILE_BYTES and report["last"] == length
    assert report["calls"] >= FILE_BYTES >> 20
