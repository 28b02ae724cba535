"""releaseosd's upload of a 300 MB file against curl's, both to the sandbox over loopback.

Run on demand: `pytest tests/benchmarks/test_client_upload_bench.py -p no:cacheprovider -s`.
Baseline: `curl -F` of the same file with the same fields, measured in the same run. Targets:
throughput at least 0.8x curl's, and the uploading process's peak RSS under 100 MB.

The sandbox, on uvicorn since it joined the product's one HTTP stack, takes an upload at about
400 MiB/s on a 2-core machine (its http.server predecessor: about 700), which bounds both sides:
the ratio says releaseosd streams as fast as curl to it, not how far past that it could go.

The file and the sandbox's storage live in /dev/shm when there is one: on disk, write-back stalls
of the sandbox's copy swing either side's time by seconds and the ratio measures the disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox_tools import TestSandbox

from releaseosd.rehearsal.sandbox import Quota

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parents[2]
SIZE_MIB = 300
ROUNDS = 5
SHM = Path("/dev/shm")

CHILD = textwrap.dedent(
    """
    import hashlib, json, resource, sys, time
    from pathlib import Path
    import httpx
    from releaseosd.model.config import SoundCloudConfig
    from releaseosd.soundcloud.client import SoundCloudClient, TrackFields
    from releaseosd.soundcloud.tokens import MemoryKeyring, TokenManager, TokenSet, TokenStore

    base, token, audio = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    config = SoundCloudConfig(client_id="sandbox-bench", api_url=base, auth_url=base)
    store = TokenStore(MemoryKeyring())
    store.set_tokens("sandbox-bench", TokenSet(token, None, time.time() + 3600))
    http = httpx.Client()
    client = SoundCloudClient(config, TokenManager(store, config, http), http)
    with audio.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    started = time.perf_counter()
    # The body is hashed as it streams (nothing but the checked bytes is ever sent whole).
    track = client.upload_track(audio, TrackFields(title="Bench"), sha256=digest)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": elapsed, "peak_rss": peak, "urn": track["urn"]}))
    """
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(
        prefix="releaseosd-bench-", dir=SHM if SHM.is_dir() else None
    ) as path:
        yield Path(path)


@pytest.fixture(scope="module")
def audio(scratch: Path) -> Path:
    path = scratch / "bench.wav"
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for _ in range(SIZE_MIB):
            out.write(block)
    return path


@pytest.fixture
def sandbox(scratch: Path) -> Iterator[TestSandbox]:
    box = TestSandbox(
        scratch / "sandbox",
        client_id="sandbox-bench",
        client_secret="s",
        quota=Quota(unlimited_upload_quota=True),
    )
    box.start()
    yield box
    box.stop()


def forget_uploads(sandbox: TestSandbox, token: str) -> None:
    """Delete every stored upload so memory-backed storage does not fill up between rounds."""
    for track in sandbox.tracks():
        httpx.delete(
            f"{sandbox.base_url}/tracks/{track['urn']}", headers={"Authorization": f"OAuth {token}"}
        ).raise_for_status()


def curl_upload(base: str, token: str, audio: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            "curl", "--silent", "--show-error", "--fail", "--output", os.devnull,
            "-H", f"Authorization: OAuth {token}",
            "-F", "track[title]=Bench",
            "-F", f"track[asset_data]=@{audio};filename=bench.wav;type=audio/wav",
            f"{base}/tracks",
        ],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def releaseosd_upload(base: str, token: str, audio: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, base, token, str(audio)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, float] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is the baseline")
def test_upload_throughput_and_memory(sandbox: TestSandbox, audio: Path) -> None:
    token = sandbox.issue_tokens().access_token
    size_mb = audio.stat().st_size / 1e6
    curl_best = ours_best = float("inf")
    peak = 0.0
    for _ in range(ROUNDS):  # interleaved, best of each: disk cache and CPU noise hit both
        curl_time = curl_upload(sandbox.base_url, token, audio)
        curl_best = min(curl_best, curl_time)
        ours = releaseosd_upload(sandbox.base_url, token, audio)
        print(f"\nround: curl {curl_time:.3f} s, releaseosd {ours['seconds']:.3f} s")
        ours_best = min(ours_best, ours["seconds"])
        forget_uploads(sandbox, token)
        peak = max(peak, ours["peak_rss"])
    ratio = curl_best / ours_best
    print(
        f"\nupload {size_mb:.0f} MB: curl {size_mb / curl_best:.0f} MB/s, "
        f"releaseosd {size_mb / ours_best:.0f} MB/s, ratio {ratio:.2f}x curl; "
        f"peak RSS {peak / 1e6:.0f} MB"
    )
    assert ratio >= 0.8
    assert peak < 100e6
