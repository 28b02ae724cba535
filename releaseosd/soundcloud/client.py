"""SoundCloud's API as releaseosd uses it: upload, inspect, update and delete tracks; playlists.

Every request carries `Authorization: OAuth <token>` (never a query parameter). A 401 gets one
refresh and one retry. Failures are raised as the values in `errors.py`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from releaseosd import __version__ as _version
from releaseosd.model.config import SoundCloudConfig
from releaseosd.model.track import RemoteTrack
from releaseosd.soundcloud.errors import (
    AssetChanged,
    NotFound,
    Permanent,
    QuotaExhausted,
    RateLimited,
    Retryable,
    SoundCloudError,
    classify,
    quota_problem,
)
from releaseosd.soundcloud.tags import format_tag_list, has_machine_tag, machine_tag
from releaseosd.soundcloud.tokens import TokenManager, TokenStore, sign_out

log = logging.getLogger(__name__)

USER_AGENT = f"releaseosd/{_version}"
API_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=30.0)
# One socket write of a multi-GB body can stall while the far side catches up; the answer to an
# upload can take long too (SoundCloud reads the whole asset first).
UPLOAD_TIMEOUT = httpx.Timeout(connect=15.0, read=600.0, write=300.0, pool=60.0)
UPLOAD_CHUNK = 1024 * 1024
PAGE_LIMIT = 200
MAX_PAGES = 1000

Sharing = Literal["public", "private"]
Progress = Callable[[int, int], None]

# TrackMetadataRequest's properties (openapi.yaml): the only keys PUT /tracks/{urn} may carry.
TRACK_UPDATE_FIELDS = frozenset(
    {
        "title",
        "permalink",
        "sharing",
        "embeddable_by",
        "purchase_url",
        "description",
        "genre",
        "tag_list",
        "label_name",
        "release",
        "release_date",
        "streamable",
        "downloadable",
        "license",
        "commentable",
        "reveal_stats",
        "reveal_comments",
        "isrc",
    }
)

_AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".mp2": "audio/mpeg",
    ".mp3": "audio/mpeg",
    ".aac": "audio/aac",
    ".m4a": "audio/mp4",
    ".amr": "audio/amr",
    ".wma": "audio/x-ms-wma",
}
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}


@dataclass(frozen=True)
class TrackFields:
    """Everything a sidecar can say about an upload, in SoundCloud's terms.

    bpm and key are deliberately absent: no SoundCloud request schema has them (they reach
    listeners through the description and the file's own tags).
    """

    title: str
    description: str | None = None
    genre: str | None = None
    tags: tuple[str, ...] = ()
    sharing: Sharing = "private"
    release_date: dt.date | None = None
    label_name: str | None = None
    release: str | None = None
    isrc: str | None = None
    license: str | None = None
    downloadable: bool | None = None
    streamable: bool | None = None
    commentable: bool | None = None
    quiet: bool | None = None
    permalink: str | None = None

    def metadata(self, sha256: str | None = None) -> dict[str, str | bool]:
        """The fields as TrackMetadataRequest's `track` object; the machine tag joins the tags."""
        out: dict[str, str | bool] = {"title": self.title, "sharing": self.sharing}
        text: dict[str, str | None] = {
            "description": self.description,
            "genre": self.genre,
            "label_name": self.label_name,
            "release": self.release,
            "isrc": self.isrc,
            "license": self.license,
            "permalink": self.permalink,
            "release_date": self.release_date.isoformat() if self.release_date else None,
        }
        out.update({key: value for key, value in text.items() if value})
        tag_list = format_tag_list(self.tags, machine_tag(sha256) if sha256 else None)
        if tag_list:
            out["tag_list"] = tag_list
        flags: dict[str, bool | None] = {
            "downloadable": self.downloadable,
            "streamable": self.streamable,
            "commentable": self.commentable,
        }
        if self.quiet is not None:
            flags["reveal_stats"] = flags["reveal_comments"] = not self.quiet
        out.update({key: value for key, value in flags.items() if value is not None})
        return out

    def to_form(self, sha256: str | None = None) -> list[tuple[str, str]]:
        """The multipart text fields of POST /tracks (`track[...]`), booleans as true/false."""
        return [
            (f"track[{key}]", ("true" if value else "false") if isinstance(value, bool) else value)
            for key, value in self.metadata(sha256).items()
        ]


# Text fields of a Track response that a request sets under the same name.
_ECHOED_TEXT = ("title", "description", "genre", "tag_list", "label_name", "release", "isrc")
_ECHOED_FLAGS = ("downloadable", "streamable", "commentable", "reveal_stats", "reveal_comments")


def fields_of_track(track: dict[str, Any]) -> dict[str, str | bool]:
    """A Track as SoundCloud returns it, in the shape of `TrackFields.metadata()`: what an
    adopted upload already says, so that only what differs is sent."""
    out: dict[str, str | bool] = {}
    for key in (*_ECHOED_TEXT, "license", "sharing"):
        value = track.get(key)
        if isinstance(value, str) and value:
            out[key] = value
    for key in _ECHOED_FLAGS:
        if isinstance(track.get(key), bool):
            out[key] = track[key]
    parts = [track.get(f"release_{unit}") for unit in ("year", "month", "day")]
    if all(isinstance(p, int) and p > 0 for p in parts):
        with contextlib.suppress(ValueError):
            out["release_date"] = dt.date(*parts).isoformat()  # type: ignore[arg-type]
    url = track.get("permalink_url")
    if isinstance(url, str) and url.rstrip("/"):
        out["permalink"] = url.rstrip("/").rsplit("/", 1)[-1]
    return out


def secret_token_of(track: Mapping[str, Any]) -> str | None:
    """The secret token of a private track's `secret_uri` (`…?secret_token=s-AbC`), if any."""
    uri = track.get("secret_uri")
    if not isinstance(uri, str):
        return None
    token = parse_qs(urlsplit(uri).query).get("secret_token", [""])[0]
    return token or None


def share_url(remote: RemoteTrack) -> str | None:
    """Where a listener can hear the track: its permalink, and for a private track the secret
    link (the permalink followed by the token), which works for whoever has it."""
    url = remote.permalink_url
    if url and remote.sharing == "private" and remote.secret_token:
        return f"{url.rstrip('/')}/{remote.secret_token}"
    return url


def asset_filename(path: Path, fallback: str = "track") -> str:
    """A short ASCII multipart filename with the file's extension.

    SoundCloud answers 422 to names over 255 characters and has answered 500 to some non-ASCII
    ones (issue #392); the title is sent separately, so nothing is lost.
    """
    suffix = re.sub(r"[^a-z0-9]", "", path.suffix.lower())[:8]
    stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:80] or fallback
    return f"{stem}.{suffix}" if suffix else stem


@dataclass(frozen=True)
class _FilePart:
    name: str
    path: Path
    filename: str
    content_type: str
    size: int
    # The SHA-256 these bytes must have: a file that reads otherwise is never sent whole.
    sha256: str | None = None
    # (device, inode) of the file that was checked: another file at that path by now (an export
    # replaced, a link pointed elsewhere) is refused before its first byte is sent.
    identity: tuple[int, int] | None = None


@dataclass
class MultipartBody:
    """A multipart/form-data body streamed from disk in 1 MiB chunks.

    Memory stays flat whatever the file size, the length is known up front (no chunked
    encoding), and the body can be sent again (the retry after a 401 re-reads the file).
    """

    fields: list[tuple[str, str]]
    files: list[_FilePart]
    progress: Progress | None = None
    # Called before the body's last bytes; raising there cuts the request off, so SoundCloud
    # creates nothing (the request is withdrawn).
    before_end: Callable[[], None] | None = None
    boundary: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        self._text_parts = [self._text_part(name, value) for name, value in self.fields]
        self._file_heads = [self._file_head(part) for part in self.files]
        self._tail = f"--{self.boundary}--\r\n".encode()
        self.length = (
            sum(map(len, self._text_parts))
            + sum(
                len(head) + part.size + 2
                for head, part in zip(self._file_heads, self.files, strict=True)
            )
            + len(self._tail)
        )

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _text_part(self, name: str, value: str) -> bytes:
        return (
            (
                f"--{self.boundary}\r\nContent-Disposition: form-data; "
                f'name="{_quote_param(name)}"\r\n\r\n'
            ).encode()
            + value.encode("utf-8")
            + b"\r\n"
        )

    def _file_head(self, part: _FilePart) -> bytes:
        return (
            f"--{self.boundary}\r\nContent-Disposition: form-data; "
            f'name="{_quote_param(part.name)}"; filename="{_quote_param(part.filename)}"\r\n'
            f"Content-Type: {part.content_type}\r\n\r\n"
        ).encode()

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        report = self.progress or (lambda done, total: None)
        for chunk in self._text_parts:
            sent += len(chunk)
            yield chunk
        report(sent, self.length)
        for head, part in zip(self._file_heads, self.files, strict=True):
            yield head
            sent += len(head)
            for chunk in _verified_chunks(part):
                sent += len(chunk)
                yield chunk
                report(sent, self.length)
            yield b"\r\n"
            sent += 2
        if self.before_end is not None:
            self.before_end()
        yield self._tail
        report(sent + len(self._tail), self.length)


def _verified_chunks(part: _FilePart) -> Iterator[bytes]:
    """The part's bytes, hashed as they are read; the last chunk is held back until the whole
    file is known to match `part.sha256`. A file rewritten meanwhile (a re-export in place, a
    symlink pointed elsewhere) raises AssetChanged before the body is complete, so the server
    never sees a whole request and creates nothing."""
    digest = hashlib.sha256() if part.sha256 else None
    remaining = part.size
    held: bytes | None = None
    with part.path.open("rb") as handle:
        opened = os.fstat(handle.fileno())
        if part.identity is not None and (opened.st_dev, opened.st_ino) != part.identity:
            raise AssetChanged(
                f"{part.path} is another file than the one that was checked; nothing was sent"
            )
        if opened.st_size != part.size:
            raise AssetChanged(f"{part.path} changed size before it was sent; not uploaded")
        while remaining > 0:
            chunk = handle.read(min(UPLOAD_CHUNK, remaining))
            if not chunk:
                raise AssetChanged(
                    f"{part.path} shrank while it was being uploaded (is something still "
                    "writing it?); not uploaded"
                )
            remaining -= len(chunk)
            if digest is not None:
                digest.update(chunk)
            if held is not None:
                yield held
            held = chunk
        if digest is not None and digest.hexdigest() != part.sha256:
            raise AssetChanged(
                f"{part.path} is not the file that was checked (it changed on disk); not uploaded"
            )
    if held is not None:
        yield held


def _quote_param(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


class SoundCloudClient:
    """One user's SoundCloud, through `config.api_url`; thread-safe (httpx.Client is)."""

    def __init__(
        self,
        config: SoundCloudConfig,
        tokens: TokenManager,
        http: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        progress: Progress | None = None,
        owns_http: bool = False,
    ) -> None:
        self._config = config
        self._clock = clock
        self._progress = progress  # told of every upload's bytes, unless a call brings its own
        # Retry-After is SoundCloud's word for the whole account, not for one request: until it
        # has passed, no worker thread sends anything.
        self._hold_lock = threading.Lock()
        self._hold_until = 0.0
        if tokens.before_refresh is None:
            tokens.before_refresh = lambda: self._check_hold("renewing the SoundCloud login")
        self._tokens = tokens
        self._http = http or httpx.Client(timeout=API_TIMEOUT, headers={"User-Agent": USER_AGENT})
        self._owns_http = http is None or owns_http
        self._playlist_lock = threading.Lock()
        self._api = urlsplit(config.api_url)

    @property
    def tokens(self) -> TokenManager:
        """The login this client works with (`auth status` reads it after asking /me)."""
        return self._tokens

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> SoundCloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport -------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self._config.api_url}{path}"

    def _send(
        self,
        method: str,
        url: str,
        *,
        action: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        body: MultipartBody | None = None,
        timeout: httpx.Timeout = API_TIMEOUT,
        upload: bool = False,
    ) -> httpx.Response:
        self._check_hold(action)
        token = self._tokens.access_token()
        self._check_hold(action)  # another thread may have met a 429 while this one refreshed
        response = self._attempt(method, url, token, params, json, body, timeout, action, upload)
        if response.status_code == 401 and not (upload and not response.content.strip()):
            # A bare 401 on an upload means "not allowed to upload"; a refresh cannot fix that.
            response.close()
            token = self._tokens.force_refresh(token)
            self._check_hold(action)
            response = self._attempt(
                method, url, token, params, json, body, timeout, action, upload
            )
        if not response.is_success:
            error = classify(response, upload=upload, action=action)
            if error.retry_after:
                with self._hold_lock:
                    self._hold_until = max(self._hold_until, self._clock() + error.retry_after)
            raise error
        return response

    def _check_hold(self, action: str) -> None:
        with self._hold_lock:
            left = self._hold_until - self._clock()
        if left > 0:
            raise RateLimited(
                f"{action}: not sent, SoundCloud asked to wait {left:.1f} s more after a "
                "rate limit; will try again",
                retry_after=left,
            )

    def _attempt(
        self,
        method: str,
        url: str,
        token: str,
        params: dict[str, Any] | None,
        json: Any,
        body: MultipartBody | None,
        timeout: httpx.Timeout,
        action: str,
        upload: bool,
    ) -> httpx.Response:
        headers = {"Authorization": f"OAuth {token}", "Accept": "application/json"}
        if body is not None:
            headers.update({"Content-Type": body.content_type, "Content-Length": str(body.length)})
        # The body is iterated afresh for each send, so the retry after a 401 re-reads the file.
        request = self._http.build_request(
            method, url, params=params, json=json, content=body, headers=headers, timeout=timeout
        )
        try:
            return self._http.send(request)
        except SoundCloudError:
            raise
        except (httpx.HTTPError, OSError) as exc:
            raise classify(exc, upload=upload, action=action) from None

    def _json(self, response: httpx.Response, action: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise Retryable(
                f"{action}: SoundCloud answered {response.status_code} with something that is "
                "not JSON; will try again",
                status=response.status_code,
            ) from None

    def _get(self, path: str, action: str, params: dict[str, Any] | None = None) -> Any:
        response = self._send("GET", self._url(path), action=action, params=params)
        return self._json(response, action)

    def _paged(self, path: str, action: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a collection, following next_href (only on the API's own host)."""
        url: str | None = self._url(path)
        query: dict[str, Any] | None = {
            **params,
            "limit": PAGE_LIMIT,
            "linked_partitioning": "true",
        }
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self._send("GET", url, action=action, params=query)
            page = self._json(response, action)
            if isinstance(page, list):  # the deprecated unpaginated shape
                yield from (item for item in page if isinstance(item, dict))
                return
            yield from (item for item in page.get("collection") or [] if isinstance(item, dict))
            next_href = page.get("next_href")
            if not next_href or next_href in seen:
                return
            seen.add(next_href)
            if not self._same_origin(next_href):
                # The token must not travel to another host, whatever a response says.
                raise Permanent(
                    f"{action}: SoundCloud's next page is on another host ({next_href})"
                )
            url, query = next_href, None
        raise Permanent(f"{action}: more than {MAX_PAGES} pages; giving up")

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == (self._api.scheme, self._api.netloc)

    # ---- account ---------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        data = self._get("/me", "reading your SoundCloud account")
        return data if isinstance(data, dict) else {}

    def check_quota(self, duration_seconds: float | None = None) -> dict[str, Any]:
        """GET /me and raise QuotaExhausted when the plan's upload time cannot take the track."""
        me = self.me()
        problem = quota_problem(me, duration_seconds)
        if problem:
            raise QuotaExhausted(problem.capitalize())
        return me

    def sign_out(self, access_token: str) -> bool:
        """Best effort: ask SoundCloud to end the session of this token; True if it agreed."""
        return sign_out(self._http, self._config, access_token)

    # ---- tracks ----------------------------------------------------------------------------

    def upload_track(
        self,
        audio: Path,
        fields: TrackFields,
        artwork: Path | None = None,
        progress: Progress | None = None,
        *,
        sha256: str | None = None,
        duration_seconds: float | None = None,
        check_quota: bool = True,
        identity: tuple[int, int] | None = None,
        before_end: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """POST /tracks, streaming the audio from disk; returns SoundCloud's Track (with `urn`).

        The machine tag names `sha256`, the digest of the bytes the caller checked (when None,
        the file's digest as read now), and only bytes with that digest are ever sent whole:
        a file that reads otherwise raises AssetChanged with the request cut off before its end.
        With `identity` (device, inode), a path that now names another file sends nothing.
        Pass `artwork=None` to upload without artwork (see `should_drop_artwork`).
        """
        action = f"uploading {audio.name}"
        try:
            digest = sha256 or _sha256(audio)
            parts = [
                _file_part(
                    "track[asset_data]",
                    audio,
                    _AUDIO_TYPES,
                    "application/octet-stream",
                    digest,
                    identity,
                )
            ]
            if artwork is not None:
                parts.append(_file_part("track[artwork_data]", artwork, _IMAGE_TYPES, "image/jpeg"))
        except OSError as exc:
            raise classify(exc, action=action) from None
        if check_quota:
            self.check_quota(duration_seconds)
        body = MultipartBody(
            fields.to_form(digest), parts, progress or self._progress, before_end=before_end
        )
        response = self._send(
            "POST",
            self._url("/tracks"),
            action=action,
            body=body,
            timeout=UPLOAD_TIMEOUT,
            upload=True,
        )
        track = self._json(response, action)
        if not isinstance(track, dict) or not track.get("urn"):
            # SoundCloud took the file; finding it again by machine tag beats uploading twice.
            raise Retryable(
                f"{action}: SoundCloud accepted the upload but its answer names no track; "
                "releaseosd will look it up by its machine tag",
                status=response.status_code,
            )
        log.info("uploaded %s as %s", audio.name, track.get("urn"))
        return track

    def get_track(self, urn: str) -> dict[str, Any]:
        data = self._get(f"/tracks/{_urn(urn)}", f"reading track {urn}")
        if not isinstance(data, dict):
            raise Retryable(f"reading track {urn}: SoundCloud's answer is not a track")
        return data

    def update_track(self, urn: str, changes: dict[str, Any]) -> dict[str, Any]:
        """PUT /tracks/{urn} with JSON {"track": changes} (TrackMetadataRequest's fields only)."""
        unknown = sorted(set(changes) - TRACK_UPDATE_FIELDS)
        if unknown:
            raise ValueError(f"SoundCloud cannot update these track fields: {', '.join(unknown)}")
        action = f"updating track {urn}"
        response = self._send(
            "PUT", self._url(f"/tracks/{_urn(urn)}"), action=action, json={"track": changes}
        )
        data = self._json(response, action)
        return data if isinstance(data, dict) else {}

    def delete_track(self, urn: str) -> bool:
        """Delete a track; False if it was already gone."""
        try:
            self._send("DELETE", self._url(f"/tracks/{_urn(urn)}"), action=f"deleting track {urn}")
        except NotFound:
            return False
        return True

    def copies_of(self, digests: list[str]) -> list[dict[str, Any]]:
        """The user's tracks whose machine tag names any of these digests (an upload that reached
        SoundCloud though its answer was lost is found this way), in SoundCloud's order."""
        for digest in digests:
            machine_tag(digest)  # reject a bad digest before any request
        return [
            track
            for track in self._paged("/me/tracks", "looking for earlier uploads", {})
            if any(has_machine_tag(track.get("tag_list"), d) for d in digests)
        ]

    # ---- playlists -------------------------------------------------------------------------

    def my_playlists(self) -> list[dict[str, Any]]:
        return list(
            self._paged("/me/playlists", "listing your playlists", {"show_tracks": "false"})
        )

    def get_playlist(self, urn: str) -> dict[str, Any]:
        data = self._get(f"/playlists/{_urn(urn)}", f"reading playlist {urn}")
        if not isinstance(data, dict):
            raise Retryable(f"reading playlist {urn}: SoundCloud's answer is not a playlist")
        return data

    def create_playlist(
        self,
        title: str,
        sharing: Sharing,
        track_urns: list[str],
        set_type: Literal["playlist", "album"] = "playlist",
    ) -> dict[str, Any]:
        action = f"creating playlist '{title}'"
        payload = {
            "playlist": {
                "title": title,
                "sharing": sharing,
                "set_type": set_type,
                "tracks": [{"urn": urn} for urn in track_urns],
            }
        }
        response = self._send("POST", self._url("/playlists"), action=action, json=payload)
        data = self._json(response, action)
        return data if isinstance(data, dict) else {}

    def playlist_track_urns(self, urn: str) -> list[str]:
        """The playlist's tracks in order (PUT replaces the list, so it must be complete)."""
        playlist = self.get_playlist(urn)
        tracks = [t for t in playlist.get("tracks") or [] if isinstance(t, dict)]
        count = playlist.get("track_count")
        if isinstance(count, int) and count > len(tracks):
            tracks = list(
                self._paged(f"/playlists/{_urn(urn)}/tracks", f"reading playlist {urn}", {})
            )
        return [str(t["urn"]) for t in tracks if t.get("urn")]

    def add_to_playlist(self, playlist_urn: str, track_urn: str) -> dict[str, Any]:
        """Append a track (if absent) by reading the whole list and writing it back in order."""
        with self._playlist_lock:  # two uploads finishing together must not drop each other
            urns = self.playlist_track_urns(playlist_urn)
            if track_urn in urns:
                return {"urn": playlist_urn, "tracks": [{"urn": u} for u in urns]}
            urns.append(track_urn)
            action = f"adding {track_urn} to playlist {playlist_urn}"
            response = self._send(
                "PUT",
                self._url(f"/playlists/{_urn(playlist_urn)}"),
                action=action,
                json={"playlist": {"tracks": [{"urn": u} for u in urns]}},
            )
            data = self._json(response, action)
            return data if isinstance(data, dict) else {}

    def find_playlist(self, title: str) -> dict[str, Any] | None:
        """The user's playlist with this title (first of several), or None."""
        wanted = title.strip()
        return next(
            (
                p
                for p in self.my_playlists()
                if str(p.get("title", "")).strip() == wanted and p.get("urn")
            ),
            None,
        )


def connect(
    config: SoundCloudConfig,
    tokens: TokenStore | None = None,
    *,
    state_dir: Path | None = None,
    http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> SoundCloudClient:
    """The one way releaseosd reaches SoundCloud (the daemon, `releaseosd upload`, `auth
    status`): the keyring's token store (or `tokens`), a TokenManager renewing the login under
    the refresh lock of `state_dir` (None: no cross-process lock, for tests) on the wall clock
    `clock`, and the client over both.

    Token requests and API calls share one HTTP client: `http`, which the caller closes, or a
    new one that `close()` closes. `progress` is told of each upload's bytes."""
    own = http is None
    shared = http or httpx.Client(timeout=API_TIMEOUT, headers={"User-Agent": USER_AGENT})
    manager = TokenManager(tokens or TokenStore(), config, shared, clock=clock, state_dir=state_dir)
    return SoundCloudClient(config, manager, shared, progress=progress, owns_http=own)


def _urn(urn: str) -> str:
    return quote(urn, safe=":")


def _file_part(
    name: str,
    path: Path,
    types: dict[str, str],
    default_type: str,
    sha256: str | None = None,
    identity: tuple[int, int] | None = None,
) -> _FilePart:
    size = os.stat(path).st_size
    return _FilePart(
        name=name,
        path=path,
        filename=asset_filename(path),
        content_type=types.get(path.suffix.lower(), default_type),
        size=size,
        sha256=sha256,
        identity=identity,
    )


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
