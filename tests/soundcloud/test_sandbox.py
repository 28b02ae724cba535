"""The SoundCloud sandbox over real loopback HTTP (httpx and curl), and the spec checker."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sandbox_tools import RecordedFile, RecordedRequest, TestSandbox, TokenPair, pkce_pair
from spec_check import SPEC_PATH, Spec, check_request, load_spec

from releaseosd.rehearsal.sandbox import (
    PLAYLIST_FORM_REQUEST,
    PLAYLIST_METADATA,
    TRACK_DATA_REQUEST,
    TRACK_DATA_REQUIRED,
    TRACK_METADATA,
    TRACK_UPDATE_FORM_REQUEST,
    FieldRule,
    SandboxError,
)

Checker = Callable[[RecordedRequest], list[str]]
SandboxFactory = Callable[..., TestSandbox]
# The app conftest.py registers with the `sandbox` fixture.
CLIENT_ID = "sandbox-test-client"
CLIENT_SECRET = "sandbox-test-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def http(sandbox: TestSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as client:
        yield client


def upload(
    http: httpx.Client,
    tokens: TokenPair,
    data: bytes = b"RIFF" + b"\0" * 1000,
    filename: str = "take.wav",
    **fields: str,
) -> httpx.Response:
    form = {"track[title]": "Take One"} | {f"track[{k}]": v for k, v in fields.items()}
    files = {"track[asset_data]": (filename, data, "audio/wav")}
    return http.post("/tracks", data=form, files=files, headers=tokens.headers)


def login(sandbox: TestSandbox, http: httpx.Client) -> dict[str, Any]:
    """The authorization-code flow with PKCE, by hand: authorize → code → token."""
    verifier, challenge = pkce_pair()
    answer = http.get(sandbox.authorize_url(REDIRECT_URI, challenge, state="st-1"))
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["st-1"]
    token = http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT_URI,
            "code": query["code"][0],
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    body["_code"] = query["code"][0]
    body["_verifier"] = verifier
    return body


def assert_soundcloud_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert {"code", "message", "link", "status", "errors", "error"} <= set(body)
    assert body["code"] == status
    assert all("error_message" in e for e in body["errors"])
    return body


# --- the embedded tables are the spec's -------------------------------------------------------


def _rule(spec: Spec, prop: Any) -> FieldRule:
    prop = spec.resolve(prop)
    if prop.get("format") == "binary":
        return FieldRule("binary")
    if "enum" in prop:
        return FieldRule("enum", tuple(prop["enum"]))
    if prop.get("type") == "boolean":
        return FieldRule("boolean")
    if prop.get("type") == "array":
        assert spec.resolve(prop["items"])["required"] == ["urn"]
        return FieldRule("urn_list")
    assert prop.get("type") == "string", prop
    return FieldRule("string")


def _rules(spec: Spec, schema: Any) -> dict[str, FieldRule]:
    return {name: _rule(spec, p) for name, p in spec.flatten(schema).properties.items()}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


@pytest.fixture
def spec() -> Spec:
    if not SPEC_PATH.is_file():
        pytest.skip(f"SoundCloud's spec is not at {SPEC_PATH}")
    return load_spec()


def test_embedded_field_tables_equal_the_spec(spec: Spec) -> None:
    assert dict(TRACK_DATA_REQUEST) == _rules(spec, _ref("TrackDataRequest"))
    assert dict(TRACK_UPDATE_FORM_REQUEST) == _rules(spec, _ref("TrackUpdateFormRequest"))
    track = spec.flatten(_ref("TrackMetadataRequest")).properties["track"]
    assert dict(TRACK_METADATA) == _rules(spec, track)
    playlist = spec.flatten(_ref("CreateUpdatePlaylistRequest")).properties["playlist"]
    assert dict(PLAYLIST_METADATA) == _rules(spec, playlist)
    assert dict(PLAYLIST_FORM_REQUEST) == _rules(spec, _ref("CreateUpdatePlaylistFormRequest"))
    upload_body = spec.paths["/tracks"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(TRACK_DATA_REQUIRED) == spec.flatten(upload_body["schema"]).required
    example = spec.component("#/components/examples/ExpiringToken")["value"]
    assert set(example) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}


# --- OAuth 2.1 with PKCE -------------------------------------------------------------------


def test_pkce_login_by_hand_then_me(
    sandbox: TestSandbox, http: httpx.Client, spec_checker: Checker
) -> None:
    answer = login(sandbox, http)
    assert set(answer) - {"_code", "_verifier"} == {
        "access_token",
        "expires_in",
        "refresh_token",
        "scope",
        "token_type",
    }
    assert answer["token_type"] == "bearer" and answer["scope"] == ""
    assert answer["expires_in"] == 3600
    me = http.get("/me", headers={"Authorization": f"OAuth {answer['access_token']}"})
    assert me.status_code == 200
    body = me.json()
    assert body["username"] == "sandbox-artist"
    assert body["urn"].startswith("soundcloud:users:")
    assert set(body["quota"]) == {
        "unlimited_upload_quota",
        "upload_seconds_used",
        "upload_seconds_left",
    }
    # The replayed code is refused, like any second use.
    replay = http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT_URI,
            "code": answer["_code"],
            "code_verifier": answer["_verifier"],
        },
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    for rec in sandbox.requests:
        assert spec_checker(rec) == []
    token_rec = next(r for r in sandbox.requests if r.path == "/oauth/token")
    assert token_rec.form_values("client_secret") == ["****"]
    assert [r.headers["authorization"] for r in sandbox.requests if r.path == "/me"] == [
        "OAuth ****"
    ]


def test_wrong_verifier_wrong_client_and_wrong_redirect_are_refused(
    sandbox: TestSandbox, http: httpx.Client
) -> None:
    def fresh_code() -> str:
        _, challenge = pkce_pair()
        location = http.get(sandbox.authorize_url(REDIRECT_URI, challenge)).headers["location"]
        return parse_qs(urlsplit(location).query)["code"][0]

    base = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce_pair()[0],
    }
    wrong_verifier = http.post("/oauth/token", data=base | {"code": fresh_code()})
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"
    assert "code_verifier" in wrong_verifier.json()["error_description"]

    wrong_secret = http.post(
        "/oauth/token", data=base | {"code": fresh_code(), "client_secret": "nope"}
    )
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"

    other_redirect = http.post(
        "/oauth/token", data=base | {"code": fresh_code(), "redirect_uri": "http://127.0.0.1:1/x"}
    )
    assert other_redirect.json()["error"] == "invalid_grant"

    as_json = http.post("/oauth/token", json=base | {"code": fresh_code()})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


def test_authorize_validates_pkce_client_and_user_choice(
    sandbox: TestSandbox, http: httpx.Client
) -> None:
    def error_of(url: str) -> dict[str, list[str]]:
        answer = http.get(url)
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"].startswith(REDIRECT_URI)
        return parse_qs(urlsplit(answer.headers["location"]).query)

    _, challenge = pkce_pair()
    good = sandbox.authorize_url(REDIRECT_URI, challenge, state="s")
    no_pkce = good.replace(f"code_challenge={challenge}&", "")
    assert error_of(no_pkce)["error"] == ["invalid_request"]
    assert error_of(no_pkce)["state"] == ["s"]
    plain = good.replace("code_challenge_method=S256", "code_challenge_method=plain")
    assert "S256" in error_of(plain)["error_description"][0]
    token_flow = good.replace("response_type=code", "response_type=token")
    assert error_of(token_flow)["error"] == ["unsupported_response_type"]

    # An unknown client is never redirected anywhere: the page says what is wrong.
    stranger = http.get(good.replace(CLIENT_ID, "someone-else"))
    assert stranger.status_code == 400 and "location" not in stranger.headers
    assert "someone-else" in stranger.text

    sandbox.faults.deny_authorization = True
    assert error_of(good)["error"] == ["access_denied"]


def test_refresh_tokens_rotate_and_die_after_one_use(
    sandbox: TestSandbox, http: httpx.Client, spec_checker: Checker
) -> None:
    first = login(sandbox, http)

    def refresh(token: str) -> httpx.Response:
        return http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": token,
                "redirect_uri": REDIRECT_URI,
            },
        )

    second = refresh(first["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    reused = refresh(first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert "single-use" in reused.json()["error_description"]
    third = refresh(second.json()["refresh_token"])
    assert third.status_code == 200
    assert sandbox.refresh_count == 3
    new_token = {"Authorization": f"OAuth {third.json()['access_token']}"}
    assert http.get("/me", headers=new_token).status_code == 200
    assert all(spec_checker(r) == [] for r in sandbox.requests)


def test_tokens_only_in_the_oauth_header_and_they_expire(
    sandbox_factory: SandboxFactory,
) -> None:
    clock = FakeClock()
    box = sandbox_factory(token_ttl=60, clock=clock)
    tokens = box.issue_tokens()
    assert tokens.expires_in == 60
    with httpx.Client(base_url=box.base_url) as http:
        assert http.get("/me", headers=tokens.headers).status_code == 200
        in_query = http.get("/me", params={"oauth_token": tokens.access_token})
        assert "query string" in assert_soundcloud_error(in_query, 401)["message"]
        bearer = http.get("/me", headers={"Authorization": f"Bearer {tokens.access_token}"})
        assert_soundcloud_error(bearer, 401)
        assert_soundcloud_error(http.get("/me"), 401)

        clock.advance(61)
        expired = http.get("/me", headers=tokens.headers)
        assert "expired" in assert_soundcloud_error(expired, 401)["message"]
        assert "invalid_token" in expired.headers["www-authenticate"]


def test_early_expiry_and_sign_out_revoke(sandbox: TestSandbox, http: httpx.Client) -> None:
    tokens = sandbox.issue_tokens()
    assert sandbox.expire_access_tokens() >= 1
    assert_soundcloud_error(http.get("/me", headers=tokens.headers), 401)

    fresh = sandbox.issue_tokens()
    out = http.post("/sign-out", json={"access_token": fresh.access_token})
    assert out.status_code == 200
    assert_soundcloud_error(http.get("/me", headers=fresh.headers), 401)
    dead_refresh = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": fresh.refresh_token,
        },
    )
    assert dead_refresh.json()["error"] == "invalid_grant"


# --- tracks ----------------------------------------------------------------------------------


def test_curl_upload_answers_201_with_a_track_that_finishes_processing(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, tmp_path: Path, spec_checker: Checker
) -> None:
    audio = tmp_path / "take.wav"
    audio.write_bytes(os.urandom(3 * MiB))
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-D",
            str(tmp_path / "headers"),
            "-o",
            str(tmp_path / "body"),
            "-w",
            "%{http_code}",
            "-H",
            f"Authorization: OAuth {sandbox_tokens.access_token}",
            "-F",
            "track[title]=Night Drive",
            "-F",
            "track[sharing]=private",
            "-F",
            'track[tag_list]=house "deep house" releaseosd:id=abc',
            "-F",
            "track[release_date]=2026-07-01",
            "-F",
            f"track[asset_data]=@{audio}",
            f"{sandbox.base_url}/tracks",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert out.stdout == "201", (tmp_path / "body").read_text()
    head = (tmp_path / "headers").read_text()
    body = (tmp_path / "body").read_text()
    track = json.loads(body)
    assert track["urn"] == f"soundcloud:tracks:{track['id']}"
    assert f"location: {track['uri']}" in head.lower()
    assert track["title"] == "Night Drive" and track["sharing"] == "private"
    assert track["tag_list"] == 'house "deep house" releaseosd:id=abc'
    assert (track["release_year"], track["release_month"], track["release_day"]) == (2026, 7, 1)
    assert track["permalink_url"].startswith(sandbox.base_url)
    assert track["state"] == "processing"

    stored = sandbox.upload_of(track["urn"])
    assert stored.size == 3 * MiB and stored.filename == "take.wav"
    assert (
        hashlib.sha256(stored.path.read_bytes()).digest()
        == hashlib.sha256(audio.read_bytes()).digest()
    )
    assert spec_checker(sandbox.requests[-1]) == []

    with httpx.Client(base_url=sandbox.base_url) as http:

        def state() -> str:
            answer = http.get(f"/tracks/{track['urn']}", headers=sandbox_tokens.headers)
            return str(answer.json()["state"])

        wait_for(lambda: state() == "finished", "processing to finish")
        # URNs also work percent-encoded.
        encoded = track["urn"].replace(":", "%3A")
        assert http.get(f"/tracks/{encoded}", headers=sandbox_tokens.headers).status_code == 200


def test_upload_body_is_streamed_to_disk_as_it_arrives(
    sandbox: TestSandbox, sandbox_tokens: TokenPair
) -> None:
    boundary = "sandbox-stream-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="track[title]"\r\n\r\n'
        f"Streamed\r\n--{boundary}\r\nContent-Disposition: form-data; "
        f'name="track[asset_data]"; filename="long.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    piece = os.urandom(MiB)
    halfway = threading.Event()
    resume = threading.Event()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(8):
            yield piece
        halfway.set()
        # The rest waits until the test has seen the first 8 MiB on the sandbox's disk.
        if not resume.wait(20):
            raise AssertionError("the test never saw the upload on disk")
        for _ in range(8):
            yield piece
        yield tail

    result: dict[str, httpx.Response] = {}

    def send() -> None:
        headers = sandbox_tokens.headers | {
            "Content-Type": f"multipart/form-data; boundary={boundary}"
        }
        with httpx.Client(base_url=sandbox.base_url, timeout=30) as http:
            result["answer"] = http.post("/tracks", content=body(), headers=headers)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert halfway.wait(10)

        def spooled() -> int:
            return sum(p.stat().st_size for p in sandbox.incoming_dir.glob("*.part"))

        wait_for(lambda: spooled() >= 7 * MiB, "the first 8 MiB to reach the disk")
    finally:
        resume.set()
        sender.join(30)
    answer = result["answer"]
    assert answer.status_code == 201, answer.text
    stored = sandbox.upload_of(answer.json()["urn"])
    assert stored.size == 16 * MiB
    assert stored.path.read_bytes()[:MiB] == piece
    assert list(sandbox.incoming_dir.glob("*.part")) == []
    rec = sandbox.requests[-1]
    assert rec.headers.get("transfer-encoding") == "chunked"
    assert rec.files == [RecordedFile("track[asset_data]", "long.wav", "audio/wav", 16 * MiB)]


def test_multipart_reads_the_same_however_the_body_is_cut(
    sandbox: TestSandbox, sandbox_tokens: TokenPair
) -> None:
    boundary = "b0undary"
    # Near-delimiters in the audio, an epilogue, quotes escaped in a filename and a UTF-8 one:
    # each split into pieces of 1 to 7 bytes, so that every delimiter and header block straddles
    # pieces somewhere.
    audio = b"RIFF" + b"\r\n--b0und\r\n-\r" * 40 + bytes(range(256)) + b"\r\n--b0undar"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="track[title]"\r\n\r\n'
            f'Caf\u00e9 "Cuts"\r\n--{boundary}\r\n'
            'content-disposition: form-data; name="track[asset_data]"; filename="a \\"b\\" \u00e9.wav"'
            "\r\nContent-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\nignored epilogue".encode()
    )

    def pieces(data: bytes) -> Iterator[bytes]:
        at = 0
        for n in itertools.cycle((1, 2, 3, 5, 7)):
            if at >= len(data):
                return
            yield data[at : at + n]
            at += n

    headers = sandbox_tokens.headers | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as http:
        answer = http.post("/tracks", content=pieces(body), headers=headers)
        assert answer.status_code == 201, answer.text
        assert answer.json()["title"] == 'Caf\u00e9 "Cuts"'
        stored = sandbox.upload_of(answer.json()["urn"])
        assert stored.path.read_bytes() == audio and stored.filename == 'a "b" \u00e9.wav'
        rec = sandbox.requests[-1]
        assert rec.form == [("track[title]", 'Caf\u00e9 "Cuts"')]
        assert rec.files == [
            RecordedFile("track[asset_data]", 'a "b" \u00e9.wav', "audio/wav", len(audio))
        ]

        unclosed = http.post("/tracks", content=body[: body.index(b"--", -30)], headers=headers)
        assert "closing boundary" in assert_soundcloud_error(unclosed, 400)["message"]
        garbled = http.post(
            "/tracks",
            content=body.replace(b"Content-Type: audio", b"Content-Type audio"),
            headers=headers,
        )
        assert "malformed multipart body" in assert_soundcloud_error(garbled, 400)["message"]
        # python-multipart reads what clients send (httpx, curl, browsers): no preamble.
        preamble = http.post("/tracks", content=b"a preamble\r\n" + body, headers=headers)
        assert "malformed multipart body" in assert_soundcloud_error(preamble, 400)["message"]
    assert list(sandbox.incoming_dir.glob("*.part")) == []


def test_upload_fields_are_checked_against_track_data_request(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client
) -> None:
    bpm = assert_soundcloud_error(upload(http, sandbox_tokens, bpm="120"), 422)
    assert "track[bpm]" in bpm["message"]
    sharing = assert_soundcloud_error(upload(http, sandbox_tokens, sharing="unlisted"), 422)
    assert "track[sharing]" in sharing["message"] and "unlisted" in sharing["message"]
    flag = assert_soundcloud_error(upload(http, sandbox_tokens, downloadable="yes"), 422)
    assert "true or false" in flag["message"]
    day = assert_soundcloud_error(upload(http, sandbox_tokens, release_date="01/07/2026"), 422)
    assert "yyyy-mm-dd" in day["message"]

    untitled = http.post(
        "/tracks",
        files={"track[asset_data]": ("a.wav", b"RIFF", "audio/wav")},
        headers=sandbox_tokens.headers,
    )
    assert "track[title] is required" in assert_soundcloud_error(untitled, 422)["message"]
    no_file = http.post(
        "/tracks", files={"track[title]": (None, "x")}, headers=sandbox_tokens.headers
    )
    assert "track[asset_data] is required" in assert_soundcloud_error(no_file, 422)["message"]

    long_name = "a" * 251 + ".wav"
    too_long = upload(http, sandbox_tokens, filename="b" + long_name)
    assert "256 characters" in assert_soundcloud_error(too_long, 422)["message"]
    assert upload(http, sandbox_tokens, filename=long_name).status_code == 201

    not_audio = upload(http, sandbox_tokens, filename="notes.txt")
    assert "unable to process" in assert_soundcloud_error(not_audio, 422)["message"]
    empty = upload(http, sandbox_tokens, data=b"")
    assert "empty" in assert_soundcloud_error(empty, 422)["message"]
    as_json = http.post("/tracks", json={"track": {"title": "x"}}, headers=sandbox_tokens.headers)
    assert_soundcloud_error(as_json, 400)

    assert len(sandbox.tracks()) == 1
    assert list(sandbox.incoming_dir.glob("*.part")) == []


def test_processing_can_end_failed_and_count_gets(
    sandbox_factory: SandboxFactory,
) -> None:
    box = sandbox_factory(processing_gets=2)
    box.faults.processing_outcome = "failed"
    tokens = box.issue_tokens()
    with httpx.Client(base_url=box.base_url) as http:
        created = upload(http, tokens)
        assert created.json()["state"] == "processing"
        urn = created.json()["urn"]
        states = [http.get(f"/tracks/{urn}", headers=tokens.headers).json()["state"] for _ in "ab"]
    assert states == ["processing", "failed"]


def test_update_track_by_json_and_form_then_delete(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client, spec_checker: Checker
) -> None:
    urn = upload(http, sandbox_tokens, sharing="private").json()["urn"]
    public = http.put(
        f"/tracks/{urn}",
        json={"track": {"sharing": "public", "description": "out now"}},
        headers=sandbox_tokens.headers,
    )
    assert public.status_code == 200
    assert public.json()["sharing"] == "public" and public.json()["secret_uri"] is None
    renamed = http.put(
        f"/tracks/{urn}", data={"track[title]": "Renamed"}, headers=sandbox_tokens.headers
    )
    assert renamed.json()["title"] == "Renamed" and renamed.json()["description"] == "out now"
    bad = http.put(
        f"/tracks/{urn}",
        json={"track": {"bpm": 120, "sharing": "unlisted"}},
        headers=sandbox_tokens.headers,
    )
    message = assert_soundcloud_error(bad, 422)["message"]
    assert "track.bpm" in message and "unlisted" in message
    assert all(spec_checker(r) == [] for r in sandbox.requests if r.status < 400)

    stored = sandbox.upload_of(urn).path
    assert http.delete(f"/tracks/{urn}", headers=sandbox_tokens.headers).status_code == 200
    assert not stored.exists()
    gone = http.get(f"/tracks/{urn}", headers=sandbox_tokens.headers)
    assert_soundcloud_error(gone, 404)


def test_me_tracks_pages_with_next_href(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client, spec_checker: Checker
) -> None:
    made = {upload(http, sandbox_tokens, title=f"T{i}").json()["urn"] for i in range(5)}
    seen: list[str] = []
    sizes = []
    url: str | None = "/me/tracks?limit=2&linked_partitioning=true"
    while url is not None:
        page = http.get(url, headers=sandbox_tokens.headers).json()
        sizes.append(len(page["collection"]))
        seen += [t["urn"] for t in page["collection"]]
        url = page["next_href"]
        assert url is None or url.startswith(f"{sandbox.base_url}/me/tracks?")
    assert sizes == [2, 2, 1]
    assert set(seen) == made and len(seen) == 5
    assert all(spec_checker(r) == [] for r in sandbox.requests)
    too_many = http.get("/me/tracks?limit=500", headers=sandbox_tokens.headers)
    assert_soundcloud_error(too_many, 400)


def test_playlists_put_replaces_the_track_list(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client, spec_checker: Checker
) -> None:
    a, b, c = (upload(http, sandbox_tokens).json()["urn"] for _ in range(3))
    created = http.post(
        "/playlists",
        json={
            "playlist": {
                "title": "EP",
                "sharing": "private",
                "set_type": "album",
                "tracks": [{"urn": a}, {"urn": b}],
            }
        },
        headers=sandbox_tokens.headers,
    )
    assert created.status_code == 201
    urn = created.json()["urn"]
    assert urn.startswith("soundcloud:playlists:")
    assert [t["urn"] for t in created.json()["tracks"]] == [a, b]

    replaced = http.put(
        f"/playlists/{urn}",
        json={"playlist": {"tracks": [{"urn": c}]}},
        headers=sandbox_tokens.headers,
    )
    assert [t["urn"] for t in replaced.json()["tracks"]] == [c]
    fetched = http.get(f"/playlists/{urn}", headers=sandbox_tokens.headers).json()
    assert fetched["track_count"] == 1 and fetched["title"] == "EP"
    mine = http.get(
        "/me/playlists?linked_partitioning=true&limit=10", headers=sandbox_tokens.headers
    ).json()
    assert [p["urn"] for p in mine["collection"]] == [urn]

    unknown = http.put(
        f"/playlists/{urn}",
        json={"playlist": {"tracks": [{"urn": "soundcloud:tracks:1"}]}},
        headers=sandbox_tokens.headers,
    )
    assert "soundcloud:tracks:1" in assert_soundcloud_error(unknown, 422)["message"]
    form = http.post(
        "/playlists",
        files={"playlist[title]": (None, "Form"), "playlist[tracks][][urn]": (None, f"{a},{b}")},
        headers=sandbox_tokens.headers,
    )
    assert form.status_code == 201 and form.json()["track_count"] == 2
    assert all(spec_checker(r) == [] for r in sandbox.requests if r.status < 400)


# --- faults ----------------------------------------------------------------------------------


def test_error_rate_answers_5xx_half_as_html(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client
) -> None:
    sandbox.faults.update(error_rate=1.0)
    answers = [http.get("/me", headers=sandbox_tokens.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 500, 500, 503]
    kinds = [a.headers["content-type"].split(";")[0] for a in answers]
    assert kinds == ["text/html", "application/json", "text/html", "application/json"]
    assert "<html" in answers[0].text
    assert_soundcloud_error(answers[1], 500)
    # Auth endpoints are spared unless asked for.
    assert http.get(sandbox.authorize_url(REDIRECT_URI, pkce_pair()[1])).status_code == 302
    sandbox.faults.clear()
    assert http.get("/me", headers=sandbox_tokens.headers).status_code == 200


def test_rate_and_auth_faults_and_setting_checks(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client
) -> None:
    sandbox.faults.update(rate_limit_rate=1.0, retry_after=7)
    limited = http.get("/me", headers=sandbox_tokens.headers)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    sandbox.faults.update(rate_limit_rate=0.0, error_rate=1.0, apply_to_auth=True)
    token = http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert token.status_code in (500, 503)
    assert sandbox.refresh_count == 0
    with pytest.raises(ValueError, match="error_rate"):
        sandbox.faults.update(error_rate=2)
    with pytest.raises(ValueError, match="retry_after"):
        sandbox.faults.update(retry_after=0.5)
    assert sandbox.faults.error_rate == 1.0  # a refused update changes nothing


def test_rate_limits_are_recorded_with_retry_after(
    sandbox_factory: SandboxFactory,
) -> None:
    clock = FakeClock()
    box = sandbox_factory(clock=clock)
    box.faults.update(rate_limit_every=2, retry_after=5)
    tokens = box.issue_tokens()
    with httpx.Client(base_url=box.base_url) as http:
        assert http.get("/me", headers=tokens.headers).status_code == 200
        limited = http.get("/me", headers=tokens.headers)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "5"
        assert_soundcloud_error(limited, 429)
        [event] = box.rate_limited
        assert (event.at, event.retry_after, event.path) == (clock.now, 5, "/me")
        assert box.retry_after_violations() == []

        clock.advance(5)  # a patient client
        assert http.get("/me", headers=tokens.headers).status_code == 200
        assert box.retry_after_violations() == []
        assert http.get("/me", headers=tokens.headers).status_code == 429
        clock.advance(1)  # an impatient one
        http.get("/me", headers=tokens.headers)
        [violation] = box.retry_after_violations()
        assert "Retry-After: 5" in violation

        box.faults.update(rate_limit_every=1, retry_after=None)
        assert "retry-after" not in http.get("/me", headers=tokens.headers).headers


def test_dropped_upload_then_a_clean_retry(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client
) -> None:
    sandbox.faults.drop_upload(after_bytes=MiB)
    with pytest.raises(httpx.TransportError):
        upload(http, sandbox_tokens, data=os.urandom(4 * MiB))
    wait_for(lambda: len(sandbox.requests) == 1, "the dropped request to be logged")
    dropped = sandbox.requests[0]
    assert dropped.status == 0 and dropped.body_bytes == MiB
    assert sandbox.tracks() == []
    assert list(sandbox.incoming_dir.glob("*.part")) == []
    with httpx.Client(base_url=sandbox.base_url) as fresh:
        assert upload(fresh, sandbox_tokens, data=os.urandom(4 * MiB)).status_code == 201


def test_scripted_answers_artwork_500_and_client_tokens(
    sandbox: TestSandbox, sandbox_tokens: TokenPair, http: httpx.Client
) -> None:
    sandbox.faults.push(401, body="", match="POST /tracks")
    sandbox.faults.push(503, html=True, retry_after=2, match="GET /me")
    assert http.get("/me/tracks", headers=sandbox_tokens.headers).status_code == 200
    revoked = upload(http, sandbox_tokens)
    assert revoked.status_code == 401 and revoked.content == b""
    down = http.get("/me", headers=sandbox_tokens.headers)
    assert down.status_code == 503 and down.headers["retry-after"] == "2"
    assert upload(http, sandbox_tokens).status_code == 201

    sandbox.faults.artwork_fails = True
    with_art = http.post(
        "/tracks",
        data={"track[title]": "Art"},
        files={
            "track[asset_data]": ("a.wav", b"RIFF0000", "audio/wav"),
            "track[artwork_data]": ("cover.png", b"\x89PNG", "image/png"),
        },
        headers=sandbox_tokens.headers,
    )
    assert with_art.status_code == 500
    assert upload(http, sandbox_tokens).status_code == 201

    app = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    ).json()
    app_upload = upload(http, TokenPair(app["access_token"], None, 0))
    assert app_upload.status_code == 401 and app_upload.content == b""


def test_admin_endpoint_drives_faults_and_tokens(sandbox: TestSandbox, http: httpx.Client) -> None:
    tokens = http.post("/_sandbox/tokens").json()
    headers = {"Authorization": f"OAuth {tokens['access_token']}"}
    assert http.post("/_sandbox/faults", json={"error_rate": 1}).status_code == 200
    assert http.get("/me", headers=headers).status_code >= 500
    unknown = http.post("/_sandbox/faults", json={"eror_rate": 1})
    assert unknown.status_code == 400 and "eror_rate" in unknown.json()["message"]
    http.post("/_sandbox/faults/clear")
    http.post("/_sandbox/faults/push", json={"status": 429, "retry_after": 3})
    assert http.get("/me", headers=headers).status_code == 429
    assert http.post("/_sandbox/expire-tokens").json()["expired"] >= 1
    assert http.get("/me", headers=headers).status_code == 401
    log = http.get("/_sandbox/requests").json()
    assert [r["status"] for r in log] == [503, 429, 401]
    stats = http.get("/_sandbox/stats").json()
    assert stats["rate_limited"][0]["retry_after"] == 3
    rebound = http.get("/_sandbox/faults", headers={"Host": "evil.example:80"})
    assert rebound.status_code == 403


# --- persistence and the CLI entry point -----------------------------------------------------


def test_state_survives_a_restart(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    data = tmp_path / "kept"
    first = sandbox_factory(data_dir=data)
    tokens = first.issue_tokens()
    with httpx.Client(base_url=first.base_url) as http:
        urn = upload(http, tokens, title="Kept").json()["urn"]
    first.stop()

    second = sandbox_factory(data_dir=data)
    with httpx.Client(base_url=second.base_url) as http:
        track = http.get(f"/tracks/{urn}", headers=tokens.headers)
        assert track.status_code == 200 and track.json()["title"] == "Kept"
    assert second.upload_of(urn).path.is_file()
    second.stop()

    (data / "state.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SandboxError, match=r"state\.json"):
        TestSandbox(data)


def test_serve_forever_as_a_process_keeps_its_data(tmp_path: Path) -> None:
    data = tmp_path / "cli-data"
    code = (
        "import sys; from pathlib import Path; "
        "from sandbox_tools import serve_forever; "
        "serve_forever(0, Path(sys.argv[1]))"
    )
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}

    def run() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(data)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("SoundCloud sandbox at http://127.0.0.1:"), first
        return proc, first.rsplit(" ", 1)[1].strip()

    proc, url = run()
    try:
        with httpx.Client(base_url=url) as http:
            tokens = http.post("/_sandbox/tokens").json()
            headers = {"Authorization": f"OAuth {tokens['access_token']}"}
            created = http.post(
                "/tracks",
                data={"track[title]": "From the CLI"},
                files={"track[asset_data]": ("a.mp3", b"ID3" + b"\0" * 100, "audio/mpeg")},
                headers=headers,
            )
            assert created.status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    proc, url = run()
    try:
        with httpx.Client(base_url=url) as http:
            listed = http.get("/me/tracks", headers=headers).json()
            assert [t["title"] for t in listed] == ["From the CLI"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_serves_loopback_only() -> None:
    with pytest.raises(SandboxError, match="loopback"):
        TestSandbox().start(host="0.0.0.0")


# --- the spec checker ------------------------------------------------------------------------


def record(
    method: str = "POST",
    path: str = "/tracks",
    *,
    content_type: str | None = "multipart/form-data",
    form: list[tuple[str, str]] | None = None,
    files: list[RecordedFile] | None = None,
    json_body: Any = None,
    query: dict[str, list[str]] | None = None,
) -> RecordedRequest:
    return RecordedRequest(
        seq=1,
        at=0.0,
        answered_at=0.0,
        method=method,
        path=path,
        template=None,
        query=query or {},
        headers={},
        content_type=content_type,
        form=form if form is not None else [("track[title]", "T")],
        files=files
        if files is not None
        else [RecordedFile("track[asset_data]", "a.wav", "audio/wav", 10)],
        json_body=json_body,
        body_bytes=100,
        status=201,
    )


def test_checker_passes_a_documented_upload(spec: Spec) -> None:
    rec = record(form=[("track[title]", "T"), ("track[sharing]", "private")])
    assert check_request(rec, spec) == []


@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        (record(form=[("track[title]", "T"), ("track[bpm]", "120")]), "track[bpm]"),
        (record(form=[("track[title]", "T"), ("track[sharing]", "unlisted")]), "unlisted"),
        (record(content_type="application/json"), "Content-Type application/json"),
        (record(form=[]), "requires 'track[title]'"),
        (record(files=[RecordedFile("track[title]", "t.txt", None, 1)]), "not a file"),
        (record("PATCH", "/tracks/soundcloud:tracks:1"), "method not in the spec"),
        (record("GET", "/tracks/123", content_type=None, form=[], files=[]), "soundcloud:tracks"),
        (record("GET", "/me/uploads", content_type=None, form=[], files=[]), "no such path"),
        (
            record(
                "GET",
                "/me/tracks",
                content_type=None,
                form=[],
                files=[],
                query={"limit": ["500"], "oauth_token": ["x"]},
            ),
            "≤ 200",
        ),
        (
            record(
                "PUT",
                "/tracks/soundcloud:tracks:1",
                content_type="application/json",
                form=[],
                files=[],
                json_body={"track": {"key_signature": "Am"}},
            ),
            "body.track.key_signature",
        ),
        (
            record(
                "POST",
                "/oauth/token",
                content_type="application/x-www-form-urlencoded",
                form=[("grant_type", "refresh_token"), ("client_id", "a"), ("client_secret", "b")],
                files=[],
            ),
            "requires 'refresh_token'",
        ),
        (
            record(
                "GET",
                "/authorize",
                content_type=None,
                form=[],
                files=[],
                query={"client_id": ["a"], "redirect_uri": ["b"], "response_type": ["code"]},
            ),
            "code_challenge",
        ),
    ],
)
def test_checker_catches(spec: Spec, rec: RecordedRequest, expected: str) -> None:
    problems = check_request(rec, spec)
    assert any(expected in p for p in problems), problems


def test_checker_only_needs_the_spec_file(tmp_path: Path) -> None:
    if not SPEC_PATH.is_file():
        pytest.skip(f"SoundCloud's spec is not at {SPEC_PATH}")
    copy = tmp_path / "openapi.yaml"
    shutil.copy(SPEC_PATH, copy)
    spec = load_spec(copy)
    assert (
        check_request(record(form=[("track[title]", "T"), ("track[genre]", "House")]), spec) == []
    )
