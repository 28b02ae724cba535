"""SoundCloudClient against an in-process fake API (httpx.MockTransport)."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from keyring_fixtures import MemoryKeyring

from releaseosd.model.config import SoundCloudConfig
from releaseosd.soundcloud.client import SoundCloudClient, TrackFields
from releaseosd.soundcloud.errors import (
    NeedsLogin,
    Permanent,
    QuotaExhausted,
    RateLimited,
    Retryable,
    UploadNotPermitted,
)
from releaseosd.soundcloud.tags import machine_tag
from releaseosd.soundcloud.tokens import TokenManager, TokenSet, TokenStore

API = "https://api.example.test"
CONFIG = SoundCloudConfig(
    client_id="cid",
    api_url=API,
    auth_url="https://secure.example.test",
    redirect_uri="http://localhost:8765/callback",
)
T0 = 1_800_000_000.0
# The digest of the `audio` fixture's bytes: an upload sends only bytes with the digest it names.
SHA = hashlib.sha256(b"RIFF" + bytes(range(256)) * 5000).hexdigest()

Handler = Callable[[httpx.Request], httpx.Response | None]


def parse_multipart(
    request: httpx.Request, body: bytes
) -> dict[str, tuple[str | None, str, bytes]]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        parts[name] = (part.get_filename(), part.get_content_type(), payload)
    return parts


class FakeAPI:
    """Just enough SoundCloud; `overrides` answer first (return None to fall through)."""

    def __init__(self) -> None:
        self.requests: list[tuple[httpx.Request, bytes]] = []
        self.overrides: list[Handler] = []
        self.quota: dict[str, Any] = {"unlimited_upload_quota": False, "upload_seconds_left": 9999}
        self.tracks: list[dict[str, Any]] = []
        self.playlists: dict[str, dict[str, Any]] = {}
        self.access = "access-0"
        self.refreshes = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.requests.append((request, body))
        for override in self.overrides:
            answer = override(request)
            if answer is not None:
                return answer
        path, method = request.url.path, request.method
        if path == "/oauth/token":
            self.refreshes += 1
            self.access = f"access-{self.refreshes}"
            return httpx.Response(
                200,
                json={
                    "access_token": self.access,
                    "refresh_token": f"refresh-{self.refreshes}",
                    "expires_in": 3599,
                },
            )
        if request.headers.get("Authorization") != f"OAuth {self.access}":
            return httpx.Response(401, json={"code": 401, "message": "token expired"})
        if path == "/me":
            return httpx.Response(200, json={"username": "producer", "quota": self.quota})
        if path == "/tracks" and method == "POST":
            parts = parse_multipart(request, body)
            new = {
                "urn": f"soundcloud:tracks:{100 + len(self.tracks)}",
                "title": parts["track[title]"][2].decode(),
                "tag_list": parts.get("track[tag_list]", (None, "", b""))[2].decode(),
                "permalink_url": "https://soundcloud.com/producer/x",
            }
            self.tracks.insert(0, new)
            return httpx.Response(201, json=new, headers={"Location": f"{API}/tracks/1"})
        if path == "/me/tracks":
            return self._page(request, self.tracks)
        if path.startswith("/tracks/"):
            urn = path.removeprefix("/tracks/")
            track = next((t for t in self.tracks if t["urn"] == urn), None)
            if track is None:
                return httpx.Response(404, json={"code": 404, "message": "Not found"})
            if method == "DELETE":
                self.tracks.remove(track)
                return httpx.Response(200, json={"status": "200 - OK"})
            if method == "PUT":
                track.update(json.loads(body)["track"])
            return httpx.Response(200, json=track)
        if path == "/me/playlists":
            return self._page(request, list(self.playlists.values()))
        if path == "/playlists" and method == "POST":
            data = json.loads(body)["playlist"]
            urn = f"soundcloud:playlists:{len(self.playlists) + 1}"
            self.playlists[urn] = {**data, "urn": urn, "track_count": len(data["tracks"])}
            return httpx.Response(201, json=self.playlists[urn])
        if path.startswith("/playlists/"):
            urn = path.removeprefix("/playlists/")
            playlist = self.playlists[urn]
            if method == "PUT":
                playlist["tracks"] = json.loads(body)["playlist"]["tracks"]
                playlist["track_count"] = len(playlist["tracks"])
            return httpx.Response(200, json=playlist)
        return httpx.Response(404, json={"code": 404, "message": f"no route {path}"})

    def _page(self, request: httpx.Request, items: list[dict[str, Any]]) -> httpx.Response:
        params = request.url.params
        assert params["linked_partitioning"] == "true"
        limit = int(params["limit"])
        offset = int(params.get("offset", "0"))
        page = items[offset : offset + limit]
        next_href = None
        if offset + limit < len(items):
            next_href = str(request.url.copy_merge_params({"offset": offset + limit}))
        return httpx.Response(200, json={"collection": page, "next_href": next_href})

    def calls(self, method: str, path: str) -> list[tuple[httpx.Request, bytes]]:
        return [(r, b) for r, b in self.requests if r.method == method and r.url.path == path]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(api: FakeAPI, clock: Clock) -> SoundCloudClient:
    store = TokenStore(MemoryKeyring())
    store.set_client_secret("cid", "secret")
    store.set_tokens("cid", TokenSet("access-0", "refresh-0", T0 + 3600))
    http = httpx.Client(transport=httpx.MockTransport(api))
    return SoundCloudClient(CONFIG, TokenManager(store, CONFIG, http, clock=clock), http)


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "Ñight Drive (final).wav"
    path.write_bytes(b"RIFF" + bytes(range(256)) * 5000)
    return path


FIELDS = TrackFields(
    title="Night Drive",
    description="Created with Release OS",
    genre="Techno",
    tags=("techno", "late night"),
    quiet=True,
    downloadable=False,
)


def test_upload_streams_the_file_with_every_field(
    client: SoundCloudClient, api: FakeAPI, audio: Path, tmp_path: Path
) -> None:
    artwork = tmp_path / "cover.png"
    artwork.write_bytes(b"\x89PNG fake")
    seen: list[tuple[int, int]] = []
    track = client.upload_track(
        audio, FIELDS, artwork, lambda done, total: seen.append((done, total)), sha256=SHA
    )
    assert track["urn"] == "soundcloud:tracks:100"
    [_quota_check] = api.calls("GET", "/me")  # the quota check comes first
    [(request, body)] = api.calls("POST", "/tracks")
    assert request.headers["Authorization"] == "OAuth access-0"
    assert "access-0" not in str(request.url)
    assert int(request.headers["Content-Length"]) == len(body)
    parts = parse_multipart(request, body)
    assert parts["track[asset_data]"] == ("Night-Drive-final.wav", "audio/wav", audio.read_bytes())
    assert parts["track[artwork_data]"] == ("cover.png", "image/png", b"\x89PNG fake")
    assert {
        name: value.decode() for name, (_, _, value) in parts.items() if "data" not in name
    } == {
        "track[title]": "Night Drive",
        "track[sharing]": "private",
        "track[description]": "Created with Release OS",
        "track[genre]": "Techno",
        "track[tag_list]": f'techno "late night" releaseosd:sha256={SHA[:16]}',
        "track[downloadable]": "false",
        "track[reveal_stats]": "false",
        "track[reveal_comments]": "false",
    }
    dones = [done for done, _ in seen]
    assert dones == sorted(dones) and seen[-1] == (len(body), len(body))


def test_upload_without_a_digest_tags_the_files_own(
    client: SoundCloudClient, api: FakeAPI, audio: Path
) -> None:
    import hashlib

    client.upload_track(audio, TrackFields(title="x"))
    digest = hashlib.sha256(audio.read_bytes()).hexdigest()
    assert client.copies_of([digest]) != []


def test_401_refreshes_once_and_resends_the_whole_upload(
    client: SoundCloudClient, api: FakeAPI, audio: Path
) -> None:
    api.access = "access-1"  # SoundCloud already considers access-0 dead
    api.refreshes = 0
    client.upload_track(audio, FIELDS, sha256=SHA, check_quota=False)
    posts = api.calls("POST", "/tracks")
    assert [r.headers["Authorization"] for r, _ in posts] == ["OAuth access-0", "OAuth access-1"]
    assert posts[0][1] == posts[1][1]  # the file was read again, whole
    assert len(api.calls("POST", "/oauth/token")) == 1


def test_still_401_after_a_refresh_needs_login(client: SoundCloudClient, api: FakeAPI) -> None:
    api.overrides.append(
        lambda r: (
            httpx.Response(401, json={"message": "email not confirmed"})
            if r.url.path == "/me"
            else None
        )
    )
    with pytest.raises(NeedsLogin, match="email not confirmed"):
        client.me()
    assert len(api.calls("GET", "/me")) == 2
    assert len(api.calls("POST", "/oauth/token")) == 1


def test_bare_401_on_upload_is_not_refreshed(
    client: SoundCloudClient, api: FakeAPI, audio: Path
) -> None:
    api.overrides.append(lambda r: httpx.Response(401) if r.url.path == "/tracks" else None)
    with pytest.raises(UploadNotPermitted, match="refresh does not fix"):
        client.upload_track(audio, FIELDS, sha256=SHA)
    assert api.calls("POST", "/oauth/token") == []
    assert len(api.calls("POST", "/tracks")) == 1


def test_exhausted_quota_stops_before_uploading(
    client: SoundCloudClient, api: FakeAPI, audio: Path
) -> None:
    api.quota = {"unlimited_upload_quota": False, "upload_seconds_left": 120}
    with pytest.raises(QuotaExhausted, match="minutes of upload time left"):
        client.upload_track(audio, FIELDS, sha256=SHA, duration_seconds=600)
    assert api.calls("POST", "/tracks") == []


def test_token_expiring_mid_session_is_renewed_before_the_next_call(
    client: SoundCloudClient, api: FakeAPI, clock: Clock
) -> None:
    client.me()
    clock.now = T0 + 3590
    api.access = "access-1"
    api.refreshes = 0
    client.me()
    assert [r.headers["Authorization"] for r, _ in api.calls("GET", "/me")] == [
        "OAuth access-0",
        "OAuth access-1",
    ]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            httpx.Response(503, text="<html>503</html>", headers={"Content-Type": "text/html"}),
            Retryable,
        ),
        (httpx.Response(422, json={"message": "unable to process provided asset_data"}), Permanent),
        (httpx.Response(201, text="not json"), Retryable),
        (httpx.Response(201, json={"title": "no urn"}), Retryable),
    ],
)
def test_upload_failures(
    client: SoundCloudClient,
    api: FakeAPI,
    audio: Path,
    answer: httpx.Response,
    error: type[Exception],
) -> None:
    api.overrides.append(lambda r: answer if r.url.path == "/tracks" else None)
    with pytest.raises(error):
        client.upload_track(audio, FIELDS, sha256=SHA)


def test_network_failure_is_retryable(client: SoundCloudClient, api: FakeAPI) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api.overrides.append(refuse)
    with pytest.raises(Retryable, match="cannot reach SoundCloud"):
        client.me()


def test_missing_audio_file_names_it(client: SoundCloudClient, tmp_path: Path) -> None:
    with pytest.raises(Permanent, match=r"gone\.wav"):
        client.upload_track(tmp_path / "gone.wav", FIELDS, sha256=SHA)


def test_copies_of_follows_every_page(client: SoundCloudClient, api: FakeAPI) -> None:
    tag = machine_tag(SHA)
    api.tracks = [{"urn": f"soundcloud:tracks:{i}", "tag_list": tag} for i in range(450)]
    tracks = client.copies_of([SHA])
    assert [t["urn"] for t in tracks] == [t["urn"] for t in api.tracks]
    pages = api.calls("GET", "/me/tracks")
    assert len(pages) == 3
    assert all(r.url.params["limit"] == "200" for r, _ in pages)


def test_next_page_on_another_host_is_refused(client: SoundCloudClient, api: FakeAPI) -> None:
    api.overrides.append(
        lambda r: (
            httpx.Response(
                200, json={"collection": [], "next_href": "https://evil.example/me/tracks?page=2"}
            )
            if r.url.path == "/me/tracks"
            else None
        )
    )
    with pytest.raises(Permanent, match="another host"):
        client.copies_of([SHA])


def test_copies_of_finds_by_machine_tag(client: SoundCloudClient, api: FakeAPI) -> None:
    api.tracks = [
        {"urn": f"soundcloud:tracks:{i}", "tag_list": f"techno releaseosd:sha256={i:016x}"}
        for i in range(300)
    ]
    [found] = client.copies_of([f"{250:016x}" + "0" * 48])
    assert found["urn"] == "soundcloud:tracks:250"
    assert client.copies_of(["f" * 64]) == []


def test_update_track_sends_track_metadata_json(client: SoundCloudClient, api: FakeAPI) -> None:
    api.tracks = [{"urn": "soundcloud:tracks:7", "sharing": "private"}]
    result = client.update_track("soundcloud:tracks:7", {"sharing": "public"})
    assert result["sharing"] == "public"
    [(request, body)] = api.calls("PUT", "/tracks/soundcloud:tracks:7")
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"track": {"sharing": "public"}}
    with pytest.raises(ValueError, match="bpm"):
        client.update_track("soundcloud:tracks:7", {"bpm": 124})


def test_get_and_delete_track(client: SoundCloudClient, api: FakeAPI) -> None:
    api.tracks = [{"urn": "soundcloud:tracks:7"}]
    assert client.get_track("soundcloud:tracks:7")["urn"] == "soundcloud:tracks:7"
    assert client.delete_track("soundcloud:tracks:7") is True
    assert client.delete_track("soundcloud:tracks:7") is False


def test_playlists(client: SoundCloudClient, api: FakeAPI) -> None:
    created = client.create_playlist(
        "Night EP", "private", ["soundcloud:tracks:1"], set_type="album"
    )
    [(_, body)] = api.calls("POST", "/playlists")
    assert json.loads(body) == {
        "playlist": {
            "title": "Night EP",
            "sharing": "private",
            "set_type": "album",
            "tracks": [{"urn": "soundcloud:tracks:1"}],
        }
    }
    urn = created["urn"]
    client.add_to_playlist(urn, "soundcloud:tracks:2")
    client.add_to_playlist(urn, "soundcloud:tracks:1")  # already there: no write
    [(_, put)] = api.calls("PUT", f"/playlists/{urn}")
    assert json.loads(put) == {
        "playlist": {"tracks": [{"urn": "soundcloud:tracks:1"}, {"urn": "soundcloud:tracks:2"}]}
    }
    assert [p["urn"] for p in client.my_playlists()] == [urn]
    assert api.calls("GET", "/me/playlists")[0][0].url.params["show_tracks"] == "false"


def test_truncated_playlist_is_read_in_full_before_writing(
    client: SoundCloudClient, api: FakeAPI
) -> None:
    full = [{"urn": f"soundcloud:tracks:{i}"} for i in range(250)]
    api.playlists["soundcloud:playlists:9"] = {
        "urn": "soundcloud:playlists:9",
        "tracks": full[:50],
        "track_count": 250,
    }
    api.overrides.append(
        lambda r: (
            api._page(r, full)
            if r.url.path.endswith("/tracks") and "playlists" in r.url.path
            else None
        )
    )
    client.add_to_playlist("soundcloud:playlists:9", "soundcloud:tracks:999")
    written = api.playlists["soundcloud:playlists:9"]["tracks"]
    assert [t["urn"] for t in written] == [t["urn"] for t in full] + ["soundcloud:tracks:999"]


def test_sign_out_is_best_effort(client: SoundCloudClient, api: FakeAPI) -> None:
    api.overrides.append(
        lambda r: httpx.Response(200, json={}) if r.url.path == "/sign-out" else None
    )
    assert client.sign_out("access-0") is True
    [(request, body)] = api.calls("POST", "/sign-out")
    assert request.url.host == "secure.example.test"
    assert json.loads(body) == {"access_token": "access-0"}
    api.overrides.insert(0, lambda r: (_ for _ in ()).throw(httpx.ConnectError("down", request=r)))
    assert client.sign_out("access-0") is False


def test_token_refresh_posts_form_to_the_auth_host(
    client: SoundCloudClient, api: FakeAPI, clock: Clock
) -> None:
    clock.now = T0 + 4000
    client.me()
    [(request, body)] = api.calls("POST", "/oauth/token")
    assert request.url.host == "secure.example.test"
    assert parse_qs(body.decode())["grant_type"] == ["refresh_token"]
    assert request.url.query == b""


def test_retry_after_holds_every_request_until_it_has_passed(api: FakeAPI, clock: Clock) -> None:
    store = TokenStore(MemoryKeyring())
    store.set_tokens("cid", TokenSet("access-0", "refresh-0", T0 + 3600))
    http = httpx.Client(transport=httpx.MockTransport(api))
    now = [100.0]
    client = SoundCloudClient(
        CONFIG, TokenManager(store, CONFIG, http, clock=clock), http, clock=lambda: now[0]
    )
    api.overrides.append(
        lambda r: (
            httpx.Response(429, headers={"Retry-After": "30"}, json={"message": "slow"})
            if r.url.path == "/me" and len(api.requests) == 1
            else None
        )
    )
    with pytest.raises(RateLimited) as first:
        client.me()
    assert first.value.retry_after == 30 and first.value.status == 429
    now[0] += 29
    with pytest.raises(RateLimited, match="not sent") as held:
        client.get_track("soundcloud:tracks:1")
    assert held.value.retry_after == pytest.approx(1) and held.value.status is None
    assert len(api.requests) == 1
    now[0] += 1
    assert client.me()["username"] == "producer"


def test_429_without_retry_after_does_not_hold(client: SoundCloudClient, api: FakeAPI) -> None:
    api.overrides.append(
        lambda r: httpx.Response(429, json={"message": "slow"}) if len(api.requests) == 1 else None
    )
    with pytest.raises(RateLimited):
        client.me()
    assert client.me()["username"] == "producer"


def test_a_held_client_does_not_refresh_either(api: FakeAPI, clock: Clock) -> None:
    store = TokenStore(MemoryKeyring())
    store.set_client_secret("cid", "secret")
    store.set_tokens("cid", TokenSet("access-0", "refresh-0", T0 + 3600))
    http = httpx.Client(transport=httpx.MockTransport(api))
    now = [100.0]
    tokens = TokenManager(store, CONFIG, http, clock=clock)
    client = SoundCloudClient(CONFIG, tokens, http, clock=lambda: now[0])
    api.overrides.append(
        lambda r: (
            httpx.Response(429, headers={"Retry-After": "60"}, json={})
            if len(api.requests) == 1
            else None
        )
    )
    with pytest.raises(RateLimited):
        client.me()
    clock.now = T0 + 4000  # the token expired meanwhile: a refresh is due, but must wait too
    with pytest.raises(RateLimited, match="renewing the SoundCloud login"):
        tokens.access_token()
    assert api.calls("POST", "/oauth/token") == []
    now[0] += 60
    assert client.me()["username"] == "producer"
    assert len(api.calls("POST", "/oauth/token")) == 1
