"""SoundCloudClient end to end: real loopback HTTP to the sandbox, tokens in a real keyring."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from keyring_fixtures import plaintext_keyring
from sandbox_tools import RecordedRequest, TestSandbox

from releaseosd.model.config import SoundCloudConfig
from releaseosd.rehearsal.sandbox import Quota
from releaseosd.soundcloud import client as client_module
from releaseosd.soundcloud.client import SoundCloudClient, TrackFields, connect
from releaseosd.soundcloud.errors import (
    ARTWORK_5XX_LIMIT,
    NeedsLogin,
    QuotaExhausted,
    RateLimited,
    Retryable,
    UploadNotPermitted,
    artwork_5xx_streak,
    should_drop_artwork,
)
from releaseosd.soundcloud.tokens import TokenManager, TokenSet, TokenStore

SpecChecker = Callable[[RecordedRequest], list[str]]
SandboxFactory = Callable[..., TestSandbox]
# The app the conftest's sandbox registers (Connected asserts it, so the two cannot drift).
CLIENT_ID = "sandbox-test-client"


def make_wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x01\x00" * int(8000 * seconds))
    return path


class Connected:
    def __init__(self, sandbox: TestSandbox, tmp_path: Path, expires_in: float = 3600) -> None:
        assert sandbox.client_id == CLIENT_ID and sandbox.client_secret is not None
        self.sandbox = sandbox
        self.config = SoundCloudConfig(
            client_id=CLIENT_ID, api_url=sandbox.base_url, auth_url=sandbox.base_url
        )
        self.store = TokenStore(plaintext_keyring(tmp_path))
        self.store.set_client_secret(CLIENT_ID, sandbox.client_secret)
        pair = sandbox.issue_tokens()
        self.store.set_tokens(
            CLIENT_ID, TokenSet(pair.access_token, pair.refresh_token, time.time() + expires_in)
        )
        self.answers = 0
        self.http = httpx.Client(event_hooks={"response": [self._count]})
        self.tokens = TokenManager(self.store, self.config, self.http)
        self.skipped = 0.0  # added to the client's monotonic clock: "waiting" without sleeping
        self.client = SoundCloudClient(
            self.config, self.tokens, self.http, clock=lambda: time.monotonic() + self.skipped
        )

    def _count(self, response: httpx.Response) -> None:
        self.answers += 1

    def recorded(self) -> list[RecordedRequest]:
        """The sandbox's log once it holds every request answered so far (it records each
        request just after sending the answer, so the last one can lag behind)."""
        deadline = time.monotonic() + 5
        while len(self.sandbox.requests) < self.answers and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        return self.sandbox.requests


def processed(sc: Connected, urn: str, timeout: float = 10.0) -> dict[str, Any]:
    """The track once SoundCloud (the sandbox) has finished processing it, or failed to."""
    deadline = time.monotonic() + timeout
    while True:
        track = sc.client.get_track(urn)
        if track.get("state") not in ("processing", "pending") or time.monotonic() > deadline:
            return track
        time.sleep(0.05)


@pytest.fixture
def sc(sandbox: TestSandbox, tmp_path: Path) -> Connected:
    return Connected(sandbox, tmp_path)


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    return make_wav(tmp_path / "Nuit Électrique (v3 final).wav")


@pytest.fixture
def artwork(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "cover.png"
    Image.new("RGB", (800, 800), "#ff5500").save(path)
    return path


FIELDS = TrackFields(
    title="Nuit Électrique",
    description="Created with Release OS\nBPM: 124\nKey: F# minor",
    genre="Techno",
    tags=("techno", "late night"),
    sharing="private",
    release_date=dt.date(2026, 12, 1),
    label_name="Night Label",
    release="Night EP",
    isrc="GBABC2600001",
    license="cc-by-nc",
    downloadable=False,
    streamable=True,
    commentable=False,
    quiet=True,
    permalink="nuit-electrique",
)


def test_full_upload_with_metadata_matches_the_spec(
    sc: Connected, sandbox: TestSandbox, audio: Path, artwork: Path, spec_checker: SpecChecker
) -> None:
    sha = hashlib.sha256(audio.read_bytes()).hexdigest()
    progress: list[tuple[int, int]] = []
    track = sc.client.upload_track(
        audio, FIELDS, artwork, lambda d, t: progress.append((d, t)), sha256=sha
    )
    assert track["urn"].startswith("soundcloud:tracks:")
    assert progress[-1][0] == progress[-1][1]

    done = processed(sc, track["urn"])
    assert done["state"] == "finished" and done["duration"] == 1000
    for key, value in {
        "title": "Nuit Électrique",
        "description": FIELDS.description,
        "genre": "Techno",
        "sharing": "private",
        "label_name": "Night Label",
        "release": "Night EP",
        "isrc": "GBABC2600001",
        "license": "cc-by-nc",
        "downloadable": False,
        "streamable": True,
        "commentable": False,
        "reveal_stats": False,
        "reveal_comments": False,
        "permalink": "nuit-electrique",
        "release_year": 2026,
        "release_month": 12,
        "release_day": 1,
        "bpm": None,
        "key_signature": None,
    }.items():
        assert done[key] == value, key
    assert done["tag_list"] == f'techno "late night" releaseosd:sha256={sha[:16]}'

    stored = sandbox.upload_of(track["urn"])
    assert stored.path.read_bytes() == audio.read_bytes()
    assert stored.filename == "Nuit-Electrique-v3-final.wav"
    assert stored.artwork is not None and stored.artwork.read_bytes() == artwork.read_bytes()

    assert sc.client.copies_of([sha]) != []
    public = sc.client.update_track(track["urn"], {"sharing": "public"})
    assert public["sharing"] == "public"
    assert sc.client.delete_track(track["urn"]) is True
    assert sc.client.delete_track(track["urn"]) is False
    assert sc.client.copies_of([sha]) == []

    recorded = sc.recorded()
    for rec in recorded:
        assert spec_checker(rec) == [], (rec.method, rec.path)
        assert "oauth_token" not in rec.query and "access_token" not in rec.query
    assert {(r.method, r.template) for r in recorded} >= {
        ("GET", "/me"),
        ("POST", "/tracks"),
        ("GET", "/tracks/{track_urn}"),
        ("PUT", "/tracks/{track_urn}"),
        ("DELETE", "/tracks/{track_urn}"),
        ("GET", "/me/tracks"),
    }


def test_paging_follows_next_href(
    sc: Connected,
    sandbox: TestSandbox,
    audio: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec_checker: SpecChecker,
) -> None:
    urns = [
        sc.client.upload_track(audio, TrackFields(title=f"Sketch {i}"), check_quota=False)["urn"]
        for i in range(5)
    ]
    monkeypatch.setattr(client_module, "PAGE_LIMIT", 2)
    listed = [
        t["urn"] for t in sc.client.copies_of([hashlib.sha256(audio.read_bytes()).hexdigest()])
    ]
    assert sorted(listed) == sorted(urns) and len(listed) == 5
    pages = [r for r in sc.recorded() if r.path == "/me/tracks"]
    assert len(pages) == 3
    assert all(spec_checker(r) == [] for r in pages)


def test_playlists(
    sc: Connected, sandbox: TestSandbox, audio: Path, spec_checker: SpecChecker
) -> None:
    a, b, c = (
        sc.client.upload_track(audio, TrackFields(title=t), check_quota=False)["urn"] for t in "ABC"
    )
    ep = sc.client.create_playlist("Night EP", "private", [a], set_type="album")
    sc.client.add_to_playlist(ep["urn"], b)
    sc.client.add_to_playlist(ep["urn"], a)
    found = sc.client.find_playlist("Night EP")
    assert found is not None and found["urn"] == ep["urn"]
    sc.client.add_to_playlist(found["urn"], c)
    assert sc.client.find_playlist("Sketches") is None
    sc.client.create_playlist("Sketches", "private", [a])
    playlists = {p["title"]: p for p in sandbox.playlists()}
    assert [t["urn"] for t in playlists["Night EP"]["tracks"]] == [a, b, c]
    assert playlists["Night EP"]["type"] == "album"
    assert [t["urn"] for t in playlists["Sketches"]["tracks"]] == [a]
    assert sorted(p["title"] for p in sc.client.my_playlists()) == ["Night EP", "Sketches"]
    for rec in sc.recorded():
        assert spec_checker(rec) == [], (rec.method, rec.path)


def test_expired_token_is_refreshed_once_and_the_request_retried(
    sc: Connected, sandbox: TestSandbox
) -> None:
    old = sc.store.get_tokens(CLIENT_ID)
    sandbox.expire_access_tokens()
    assert sc.client.me()["username"]
    assert sandbox.refresh_count == 1
    new = sc.store.get_tokens(CLIENT_ID)
    assert old is not None and new is not None
    assert new.access_token != old.access_token and new.refresh_token != old.refresh_token


def test_parallel_threads_share_one_refresh(sandbox: TestSandbox, tmp_path: Path) -> None:
    sc = Connected(sandbox, tmp_path, expires_in=-10)
    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(sc.client.me()["username"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and len(results) == 4
    assert sandbox.refresh_count == 1


def test_used_refresh_token_means_login_again(sc: Connected, sandbox: TestSandbox) -> None:
    tokens = sc.store.get_tokens(CLIENT_ID)
    assert tokens is not None
    # Someone else (another machine with the same login) used the refresh token first.
    httpx.post(
        f"{sandbox.base_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": sandbox.client_secret or "",
            "refresh_token": tokens.refresh_token or "",
            "redirect_uri": sc.config.redirect_uri,
        },
    ).raise_for_status()
    sandbox.expire_access_tokens()
    with pytest.raises(NeedsLogin, match="releaseosd auth login"):
        sc.client.me()
    assert sc.store.get_tokens(CLIENT_ID) is None


def test_failures_seen_in_the_wild(
    sc: Connected, sandbox: TestSandbox, audio: Path, artwork: Path
) -> None:
    sandbox.faults.push(503, html=True, match="POST /tracks")
    with pytest.raises(Retryable, match="HTML error page"):
        sc.client.upload_track(audio, FIELDS, check_quota=False)

    sandbox.faults.push(429, retry_after=7, match="GET /me")
    with pytest.raises(RateLimited) as limited:
        sc.client.me()
    assert limited.value.retry_after == 7
    sent = len(sc.recorded())
    with pytest.raises(RateLimited, match="not sent") as held:
        sc.client.upload_track(audio, FIELDS, check_quota=False)
    assert held.value.retry_after is not None and 6 < held.value.retry_after <= 7
    assert len(sc.recorded()) == sent
    sc.skipped += 7

    sandbox.faults.push(401, body="", match="POST /tracks")
    with pytest.raises(UploadNotPermitted):
        sc.client.upload_track(audio, FIELDS, check_quota=False)
    assert sandbox.refresh_count == 0

    sandbox.faults.drop_upload(after_bytes=2000)
    with pytest.raises(Retryable, match=r"connection to SoundCloud broke|cannot reach"):
        sc.client.upload_track(audio, FIELDS, check_quota=False)

    sandbox.faults.update(processing_outcome="failed")
    track = sc.client.upload_track(audio, FIELDS, check_quota=False)
    assert processed(sc, track["urn"])["state"] == "failed"


def test_artwork_fallback(sc: Connected, sandbox: TestSandbox, audio: Path, artwork: Path) -> None:
    sandbox.faults.update(artwork_fails=True)
    statuses: list[int | None] = []
    streak = 0
    while not should_drop_artwork(streak):
        with pytest.raises(Retryable) as failed:
            sc.client.upload_track(audio, FIELDS, artwork, check_quota=False)
        statuses.append(failed.value.status)
        streak = artwork_5xx_streak(streak, failed.value.status)
    assert statuses == [500] * ARTWORK_5XX_LIMIT
    track = sc.client.upload_track(audio, FIELDS, None, check_quota=False)
    assert sandbox.upload_of(track["urn"]).artwork is None


def test_quota_is_checked_before_uploading(
    sandbox_factory: SandboxFactory, tmp_path: Path, audio: Path
) -> None:
    box = sandbox_factory(quota=Quota(upload_seconds_left=0))
    sc = Connected(box, tmp_path)
    with pytest.raises(QuotaExhausted, match="used up"):
        sc.client.upload_track(audio, FIELDS)
    assert not any(r.method == "POST" and r.path == "/tracks" for r in sc.recorded())


def test_sign_out(sc: Connected, sandbox: TestSandbox, spec_checker: SpecChecker) -> None:
    tokens = sc.store.get_tokens(CLIENT_ID)
    assert tokens is not None
    assert sc.client.sign_out(tokens.access_token) is True
    [rec] = [r for r in sc.recorded() if r.path == "/sign-out"]
    assert spec_checker(rec) == []


def test_connect_reports_every_uploads_progress_and_closes_what_it_opened(
    sc: Connected, sandbox: TestSandbox, audio: Path
) -> None:
    """`connect` is how the daemon, `releaseosd upload` and `auth status` reach SoundCloud: one
    HTTP client for tokens and API calls, closed with the client; `progress=` hears each upload
    whose caller passes no callback of its own."""
    seen: list[tuple[int, int]] = []
    client = connect(sc.config, sc.store, progress=lambda sent, total: seen.append((sent, total)))
    with client:
        assert client.me()["username"]
        client.upload_track(audio, FIELDS, check_quota=False)
        size = audio.stat().st_size
        assert seen and seen[-1][0] == seen[-1][1] > size  # the whole body, the audio in it
        own: list[tuple[int, int]] = []
        client.upload_track(audio, FIELDS, progress=lambda s, t: own.append((s, t)))
        assert own and seen[-1][0] == seen[-1][1]
        assert len([s for s in seen if s[0] == s[1]]) == 1  # the second went to its own callback
    assert client._http.is_closed
