"""A SoundCloud stand-in on 127.0.0.1 for rehearsals and tests.

One server answers the API paths (/me, /tracks, /playlists, /sign-out) and the auth paths
(/authorize, /oauth/token), so `soundcloud.api_url` and `soundcloud.auth_url` both point at it.
It behaves the way SoundCloud's spec and its users' bug reports say SoundCloud behaves: OAuth 2.1
with PKCE (S256) and single-use refresh tokens, `Authorization: OAuth <token>` only, uploads as
multipart/form-data checked field by field against `TrackDataRequest`, and SoundCloud-shaped
errors. Uploads stream to disk as they arrive (wire.py).

The accepted field names and enum values are embedded below (the product never reads the spec at
run time); tests/soundcloud/test_sandbox.py checks them against the spec itself.

This is what `releaseosd run --sandbox` and `releaseosd sandbox` serve. The test suite's
SoundCloud is a subclass of it (tests/sandbox_tools): fault injection, a request log and an admin
API for a sandbox in another process live there, on the seams marked below.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.routing import Route, Router

from releaseosd.rehearsal.wire import Answer as _Response
from releaseosd.rehearsal.wire import BodyRefused, Endpoint, Workers
from releaseosd.rehearsal.wire import ClientGone as _ClientGone
from releaseosd.rehearsal.wire import Dropped as _Dropped
from releaseosd.rehearsal.wire import MultipartSink as _MultipartSink
from releaseosd.rehearsal.wire import Request as _Request
from releaseosd.rehearsal.wire import Upload as _Upload
from releaseosd.web.served import ServedApp, ServeFailed, tcp_listener

log = logging.getLogger(__name__)

MAX_ASSET_BYTES = 4 << 30  # the upload guide's limit
MAX_FILENAME_CHARS = 255
CODE_TTL_SECONDS = 600.0
STATE_FILE = "state.json"
STATE_FORMAT = "releaseosd-sandbox/1"
API_LINK = "https://developers.soundcloud.com/docs/api/explorer/open-api"
AUTH_LINK = "https://developers.soundcloud.com/docs/api/guide#authentication"
# The upload guide's formats: AIFF, WAVE, FLAC, OGG, MP2, MP3, AAC, AMR, WMA.
AUDIO_EXTENSIONS = frozenset(
    {".aif", ".aiff", ".wav", ".wave", ".flac", ".ogg", ".oga", ".mp2", ".mp3", ".aac", ".m4a"}
    | {".amr", ".wma"}
)
_PKCE_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STORED_SUFFIX_RE = re.compile(r"\.[a-z0-9]{1,16}")
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reason(status: int) -> str:
    """The reason phrase SoundCloud's `status` field carries ("404 - Not Found")."""
    return _REASONS.get(status, "Error")


# --- What SoundCloud's spec accepts (openapi.yaml, components/schemas) -------------------------


@dataclass(frozen=True)
class FieldRule:
    """What one request field may hold: a string, a boolean, a file, one of `choices`, or
    (playlist JSON only) a list of `{"urn": ...}` objects."""

    kind: Literal["string", "boolean", "binary", "enum", "urn_list"]
    choices: tuple[str, ...] = ()


_STR = FieldRule("string")
_BOOL = FieldRule("boolean")
_FILE = FieldRule("binary")
SHARING = FieldRule("enum", ("public", "private"))
EMBEDDABLE_BY = FieldRule("enum", ("all", "me", "none"))
LICENSES = FieldRule(
    "enum",
    (
        "no-rights-reserved",
        "all-rights-reserved",
        "cc-by",
        "cc-by-nc",
        "cc-by-nd",
        "cc-by-sa",
        "cc-by-nc-nd",
        "cc-by-nc-sa",
    ),
)
SET_TYPE = FieldRule("enum", ("album", "playlist"))

# TrackMetadataRequest.track: the JSON keys of PUT /tracks/{track_urn}.
TRACK_METADATA: Mapping[str, FieldRule] = {
    "title": _STR,
    "permalink": _STR,
    "sharing": SHARING,
    "embeddable_by": EMBEDDABLE_BY,
    "purchase_url": _STR,
    "description": _STR,
    "genre": _STR,
    "tag_list": _STR,
    "label_name": _STR,
    "release": _STR,
    "release_date": _STR,
    "streamable": _BOOL,
    "downloadable": _BOOL,
    "license": LICENSES,
    "commentable": _BOOL,
    "reveal_stats": _BOOL,
    "reveal_comments": _BOOL,
    "isrc": _STR,
}
# TrackDataRequest (POST /tracks) and TrackUpdateFormRequest (PUT as a form) are the same fields
# as form names, plus the files each may carry.
TRACK_DATA_REQUEST: Mapping[str, FieldRule] = {
    **{f"track[{name}]": rule for name, rule in TRACK_METADATA.items()},
    "track[asset_data]": _FILE,
    "track[artwork_data]": _FILE,
}
TRACK_DATA_REQUIRED = ("track[title]", "track[asset_data]")
TRACK_UPDATE_FORM_REQUEST: Mapping[str, FieldRule] = {
    **{f"track[{name}]": rule for name, rule in TRACK_METADATA.items()},
    "track[artwork_data]": _FILE,
}
# CreateUpdatePlaylistRequest.playlist (JSON) and CreateUpdatePlaylistFormRequest.
PLAYLIST_METADATA: Mapping[str, FieldRule] = {
    "title": _STR,
    "description": _STR,
    "sharing": SHARING,
    "tracks": FieldRule("urn_list"),
    "artwork_data": _FILE,
    "ean": _STR,
    "genre": _STR,
    "label_name": _STR,
    "license": _STR,
    "permalink": _STR,
    "permalink_url": _STR,
    "purchase_title": _STR,
    "purchase_url": _STR,
    "release": _STR,
    "release_date": _STR,
    "set_type": SET_TYPE,
    "tag_list": _STR,
}
PLAYLIST_FORM_REQUEST: Mapping[str, FieldRule] = {
    **{
        f"playlist[{name}]": rule
        for name, rule in PLAYLIST_METADATA.items()
        if name not in ("tracks", "artwork_data")
    },
    "playlist[tracks][][urn]": _STR,
    "playlist[artwork_data]": _FILE,
}
PLAYLIST_FORM_REQUIRED = ("playlist[title]",)


# --- Persistent state ------------------------------------------------------------------------


@dataclass
class Quota:
    unlimited_upload_quota: bool = False
    upload_seconds_used: int = 0
    upload_seconds_left: int | None = 10800


class SandboxError(Exception):
    """A problem starting the sandbox, phrased for whoever started it."""


@dataclass
class _Track:
    id: int
    created_at: float
    meta: dict[str, Any]
    asset_file: str
    asset_filename: str
    asset_bytes: int
    artwork_file: str | None
    processing_outcome: str
    secret: str
    duration_ms: int = 0
    gets: int = 0

    @property
    def urn(self) -> str:
        return f"soundcloud:tracks:{self.id}"


@dataclass
class _Playlist:
    id: int
    created_at: float
    last_modified: float
    meta: dict[str, Any]
    track_ids: list[int]

    @property
    def urn(self) -> str:
        return f"soundcloud:playlists:{self.id}"


@dataclass
class _State:
    next_id: int = 308946001
    tracks: dict[int, _Track] = field(default_factory=dict)
    playlists: dict[int, _Playlist] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    quota: Quota = field(default_factory=Quota)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "next_id": self.next_id,
            "tracks": [asdict(t) for t in self.tracks.values()],
            "playlists": [asdict(p) for p in self.playlists.values()],
            "codes": self.codes,
            "access_tokens": self.access_tokens,
            "refresh_tokens": self.refresh_tokens,
            "quota": asdict(self.quota),
        }

    @classmethod
    def from_json(cls, data: Any) -> _State:
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise ValueError(f"expected an object with format {STATE_FORMAT!r}")
        tracks = [_Track(**t) for t in data["tracks"]]
        playlists = [_Playlist(**p) for p in data["playlists"]]
        return cls(
            next_id=int(data["next_id"]),
            tracks={t.id: t for t in tracks},
            playlists={p.id: p for p in playlists},
            codes=dict(data["codes"]),
            access_tokens=dict(data["access_tokens"]),
            refresh_tokens=dict(data["refresh_tokens"]),
            quota=Quota(**data["quota"]),
        )


def _write_atomically(path: Path, text: str) -> None:
    """Temp file, fsync, rename, fsync the folder: a crash leaves the old state or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- HTTP plumbing (how requests arrive and answers leave: wire.py) --------------------------


def _json_response(status: int, obj: Any, headers: Sequence[tuple[str, str]] = ()) -> _Response:
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return _Response(status, body, "application/json; charset=utf-8", list(headers))


def error_body(
    status: int, message: str, *, link: str = API_LINK, error: str | None = None
) -> dict[str, Any]:
    """SoundCloud's error shape: {code, message, link, status, errors: [{error_message}], error}."""
    return {
        "code": status,
        "message": message,
        "link": link,
        "status": f"{status} - {reason(status)}",
        "errors": [{"error_message": message}],
        "error": error,
    }


class _HttpError(Exception):
    def __init__(self, response: _Response) -> None:
        super().__init__(response.status)
        self.response = response

    @classmethod
    def api(
        cls,
        status: int,
        message: str,
        *,
        problems: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
        link: str = API_LINK,
        error: str | None = None,
    ) -> _HttpError:
        body = error_body(status, message, link=link, error=error)
        if problems:
            body["errors"] = [{"error_message": p} for p in problems]
        return cls(_json_response(status, body, headers))

    @classmethod
    def oauth(cls, status: int, error: str, description: str) -> _HttpError:
        body = error_body(status, error, link=AUTH_LINK, error=error)
        body["error_description"] = description
        body["errors"] = [{"error_message": description}]
        return cls(_json_response(status, body, [("Cache-Control", "no-store")]))


# Each path template with its methods' handlers; Starlette's router matches the path.
_ROUTES: dict[str, dict[str, str]] = {
    "/authorize": {"GET": "_authorize"},
    "/oauth/token": {"POST": "_token"},
    "/sign-out": {"POST": "_sign_out"},
    "/me": {"GET": "_me"},
    "/me/tracks": {"GET": "_me_tracks"},
    "/me/playlists": {"GET": "_me_playlists"},
    "/tracks": {"POST": "_upload"},
    "/tracks/{track_urn}": {"GET": "_get_track", "PUT": "_put_track", "DELETE": "_delete_track"},
    "/playlists": {"POST": "_create_playlist"},
    "/playlists/{playlist_urn}": {
        "GET": "_get_playlist",
        "PUT": "_put_playlist",
        "DELETE": "_delete_playlist",
    },
}


# --- The sandbox -------------------------------------------------------------------------------


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _stored_suffix(filename: str) -> str:
    """The extension an upload is kept under (its type for the listener's page): the client's,
    lowercased, when it is a plain short one; none otherwise. A filename is the client's to
    choose, NULs and 300-character extensions included, and the disk must take the name."""
    suffix = Path(filename).suffix.lower()
    return suffix if _STORED_SUFFIX_RE.fullmatch(suffix) else ""


def _timestamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y/%m/%d %H:%M:%S +0000")


def _slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "untitled"


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(name: str, value: Any, rule: FieldRule, *, form: bool) -> str | None:
    """The problem with one value, or None. Form values are strings; JSON values are typed."""
    if rule.kind == "boolean":
        ok = value in ("true", "false") if form else isinstance(value, bool)
        return None if ok else f"{name} must be true or false, got {value!r}"
    if rule.kind == "enum":
        if value in rule.choices:
            return None
        return f"{name} must be one of {', '.join(rule.choices)}; got {value!r}"
    if rule.kind == "binary":
        if form:
            return f"{name} must be a file part (with a filename), not a plain field"
        return None if isinstance(value, str) else f"{name} must be a string"
    if rule.kind == "urn_list":
        if not isinstance(value, list):
            return f'{name} must be a list of {{"urn": ...}} objects'
        for i, item in enumerate(value):
            if (
                not isinstance(item, dict)
                or set(item) != {"urn"}
                or not isinstance(item["urn"], str)
            ):
                return f'{name}[{i}] must be {{"urn": "soundcloud:tracks:…"}}, got {item!r}'
        return None
    if not isinstance(value, str):
        return f"{name} must be a string, got {value!r}"
    if name.endswith(("release_date", "release_date]")) and not _valid_date(value):
        return f"{name} must be a date written yyyy-mm-dd, got {value!r}"
    return None


def _valid_date(value: str) -> bool:
    if not _DATE_RE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def check_form(
    fields: Sequence[tuple[str, str]],
    files: Sequence[tuple[str, str]],
    rules: Mapping[str, FieldRule],
    required: Sequence[str] = (),
) -> list[str]:
    """Problems with form `fields` (name, value) and `files` (name, filename) under `rules`."""
    problems: list[str] = []
    names = [n for n, _ in fields] + [n for n, _ in files]
    for name, count in Counter(names).items():
        if count > 1:
            problems.append(f"{name} is given {count} times")
    for name, value in fields:
        rule = rules.get(name)
        if rule is None:
            problems.append(f"unknown field {name}{_did_you_mean(name, list(rules))}")
        elif (problem := _check_value(name, value, rule, form=True)) is not None:
            problems.append(problem)
    for name, _filename in files:
        rule = rules.get(name)
        if rule is None:
            problems.append(f"unknown field {name}{_did_you_mean(name, list(rules))}")
        elif rule.kind != "binary":
            problems.append(f"{name} must be a plain field, not a file part")
    problems.extend(f"{name} is required" for name in required if name not in names)
    return problems


def check_json_object(obj: Any, where: str, rules: Mapping[str, FieldRule]) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where} must be a JSON object"]
    problems: list[str] = []
    for key, value in obj.items():
        rule = rules.get(key)
        if rule is None:
            problems.append(f"unknown field {where}.{key}{_did_you_mean(key, list(rules))}")
        elif (problem := _check_value(f"{where}.{key}", value, rule, form=False)) is not None:
            problems.append(problem)
    return problems


def _form_to_meta(
    fields: Sequence[tuple[str, str]], rules: Mapping[str, FieldRule]
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for name, value in fields:
        key = name.split("[", 1)[1].rstrip("]")
        meta[key] = value == "true" if rules[name].kind == "boolean" else value
    return meta


def _audio_duration_ms(path: Path) -> int:
    """The audio's length as SoundCloud would report it after processing; 0 when unknown."""
    try:
        import mutagen

        audio = mutagen.File(path)  # reads headers only, even for multi-GB files
    except Exception:  # any file the sandbox cannot read is just "unknown"
        return 0
    length = getattr(getattr(audio, "info", None), "length", 0) or 0
    return int(float(length) * 1000)


class Sandbox:
    """A SoundCloud API stand-in; see the module docstring.

    `client_id`/`client_secret` register one app: other ids are refused at /authorize and
    /oauth/token. Left None, any client id is accepted (the secret is then not checked).
    `redirect_uris` restricts /authorize's redirect_uri when given. Tracks finish processing
    `processing_seconds` after upload, or on their `processing_gets`-th GET when that is set.

    The methods under "seams" do nothing here; a subclass overrides them to watch every request
    and to answer some differently (tests/sandbox_tools.TestSandbox: faults, a request log).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        token_ttl: float = 3600,
        processing_seconds: float = 0.5,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        redirect_uris: Sequence[str] | None = None,
        processing_gets: int | None = None,
        clock: Callable[[], float] = time.time,
        username: str = "sandbox-artist",
        quota: Quota | None = None,
        max_asset_bytes: int = MAX_ASSET_BYTES,
    ) -> None:
        self.data_dir = data_dir
        self.token_ttl = token_ttl
        self.processing_seconds = processing_seconds
        self.processing_gets = processing_gets
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris) if redirect_uris is not None else None
        self.username = username
        self.max_asset_bytes = max_asset_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._served: ServedApp | None = None
        self._temp_dir: Path | None = None
        self._base_url = ""
        self._state = self._load()
        if quota is not None:
            self._state.quota = quota

    # -- lifecycle --

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the base URL (http://127.0.0.1:PORT)."""
        if host not in ("127.0.0.1", "localhost") and not host.startswith("127."):
            raise SandboxError(f"the sandbox serves on loopback only; {host!r} is not 127.x.x.x")
        if self._served is not None:
            raise SandboxError(f"this sandbox already serves at {self._base_url}")
        if self.data_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="releaseosd-sandbox-"))
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.incoming_dir.glob("*.part"):
            stale.unlink()  # left by an upload cut off when the sandbox last stopped
        try:
            sock = tcp_listener("127.0.0.1" if host == "localhost" else host, port)
        except OSError as exc:
            raise SandboxError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound_port = sock.getsockname()[1]
        self._base_url = f"http://{host}:{bound_port}"
        # Longer than httpx keeps an idle connection (5 s), so a server closing one never races
        # a request on it; short enough that idle connections do not hold the 64 slots long.
        self._served = ServedApp(
            self.app(), [sock], f"soundcloud-sandbox-{bound_port}", keep_alive_seconds=60
        )
        try:
            self._served.start()
        except ServeFailed as exc:
            self._served = None
            raise SandboxError(str(exc)) from None
        return self._base_url

    def stop(self) -> None:
        served, self._served = self._served, None
        if served is not None:
            served.stop(cut_connections=True)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> Sandbox:
        if self._served is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise SandboxError("the sandbox has not been started; call start() first")
        return self._base_url

    @property
    def uploads_dir(self) -> Path:
        root = self.data_dir if self.data_dir is not None else self._temp_dir
        if root is None:
            raise SandboxError("the sandbox has no upload folder until start()")
        return root / "uploads"

    @property
    def incoming_dir(self) -> Path:
        """Where upload bodies are written while they arrive (`*.part` files)."""
        return self.uploads_dir / ".incoming"

    # -- seams --

    def _intercept(self, _req: _Request) -> _Response | None:
        """An answer to give instead of the route's, before the route sees the request."""
        return None

    def _observe(self, _req: _Request, _answer: _Response | None) -> None:
        """Every request once answered, just before the answer leaves (None: no answer, the
        connection dropped). It must not raise."""

    def _user_approves(self) -> bool:
        """Whether the user clicks "Allow" on /authorize's consent page."""
        return True

    def _processing_outcome(self, _req: _Request) -> str:
        """How processing of an upload that passed every check will end ("finished" or
        "failed"); asked just before its track is made. Raising _HttpError answers instead."""
        return "finished"

    # -- persistence --

    def _state_path(self) -> Path | None:
        return self.data_dir / STATE_FILE if self.data_dir is not None else None

    def _load(self) -> _State:
        path = self._state_path()
        if path is None or not path.exists():
            return _State()
        try:
            return _State.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SandboxError(
                f"{path}: not a readable sandbox state file ({exc}); move it away or choose "
                "another --data folder"
            ) from None

    def _save(self) -> None:
        path = self._state_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, json.dumps(self._state.to_json(), indent=1))

    # -- the request cycle --

    def app(self) -> Router:
        """The sandbox as an ASGI app: Starlette's router finds the path template; what none
        matches (a listener's page, or 404) goes through the same cycle."""
        workers = Workers()
        routes = [
            Route(template, Endpoint(self._cycle, template, handlers, workers))
            for template, handlers in _ROUTES.items()
        ]
        default = Endpoint(self._cycle, None, {}, workers)
        return Router(routes, default=default, redirect_slashes=False)

    def _cycle(self, req: _Request, handlers: Mapping[str, str]) -> _Response | None:
        """One request answered (in a worker thread): its answer, None when the client left
        before sending all of it; raises _Dropped to have the connection cut."""
        answered: _Response | None = None
        observed = False
        try:
            try:
                resp = self._answer(req, handlers)
            except _HttpError as exc:
                resp = exc.response
            except BodyRefused as exc:
                resp = _HttpError.api(exc.status, str(exc)).response
            # Reading the rest keeps the connection usable and lets the client see the answer
            # instead of a reset while it is still sending.
            req.body.drain()
            # Observed before the answer leaves: a client that has its answer can count on the
            # observer having seen the request.
            self._observe(req, resp)
            observed = True
            return resp
        except _Dropped:
            raise
        except _ClientGone:
            return None
        except Exception:
            log.exception("sandbox: %s %s failed", req.method, req.path)
            req.body.broken = True  # the connection closes after this answer
            answered = _json_response(
                500, error_body(500, "sandbox bug; see the log for a traceback")
            )
            return answered
        finally:
            if not observed:
                self._observe(req, answered)

    def _answer(self, req: _Request, handlers: Mapping[str, str]) -> _Response:
        instead = self._intercept(req)
        if instead is not None:
            return instead
        if req.template is None and req.method in ("GET", "HEAD"):
            page = self._listener(req)
            if page is not None:
                return page
        name = handlers.get(req.method)
        if name is None:
            if handlers:
                raise _HttpError.api(
                    405,
                    f"{req.method} is not allowed on {req.path}",
                    headers=[("Allow", ", ".join(handlers))],
                )
            raise _HttpError.api(404, f"the sandbox has nothing at {req.method} {req.path}")
        handler: Callable[[_Request], _Response] = getattr(self, name)
        return handler(req)

    # -- reading bodies --

    def _read_json(self, req: _Request) -> Any:
        if req.content_type != "application/json":
            raise _HttpError.api(
                415 if req.content_type else 400,
                f"expected a JSON body (Content-Type: application/json), got {req.content_type}",
            )
        raw = req.body.read_all()
        try:
            req.json_body = json.loads(raw)
        except ValueError as exc:
            raise _HttpError.api(400, f"the body is not valid JSON: {exc}") from None
        return req.json_body

    def _read_urlencoded(self, req: _Request) -> list[tuple[str, str]]:
        raw = req.body.read_all()
        try:
            req.form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _HttpError.api(400, "the form body is not UTF-8") from None
        return req.form

    def _read_multipart(self, req: _Request) -> _MultipartSink:
        boundary = req.boundary
        if not boundary:
            raise _HttpError.api(400, "multipart/form-data without a boundary parameter")
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        sink = _MultipartSink(boundary, self.incoming_dir)
        try:
            for data in req.body.chunks():
                sink.write(data)
            sink.finish()
        except BaseException:
            sink.discard()
            raise
        finally:
            req.form = list(sink.fields)
            req.files = list(sink.files)
        return sink

    # -- auth --

    def _authorize(self, req: _Request) -> _Response:
        client_id = req.q("client_id")
        redirect_uri = req.q("redirect_uri")
        if not client_id or (self.client_id is not None and client_id != self.client_id):
            return self._auth_page(400, f"Unknown client_id {client_id!r}.")
        if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
            return self._auth_page(400, f"redirect_uri {redirect_uri!r} is not an absolute URL.")
        if self.redirect_uris is not None and redirect_uri not in self.redirect_uris:
            return self._auth_page(
                400, f"redirect_uri {redirect_uri!r} is not registered for this app."
            )
        state = req.q("state")
        challenge = req.q("code_challenge")
        method = req.q("code_challenge_method")
        error: tuple[str, str] | None = None
        if req.q("response_type") != "code":
            error = ("unsupported_response_type", "response_type must be code")
        elif not challenge:
            error = ("invalid_request", "code_challenge is required (PKCE)")
        elif method != "S256":
            error = ("invalid_request", f"code_challenge_method must be S256, got {method!r}")
        elif not _CHALLENGE_RE.match(challenge):
            error = ("invalid_request", "code_challenge must be BASE64URL(SHA256(verifier))")
        elif not self._user_approves():
            error = ("access_denied", "the user denied access")
        if error is not None:
            params = {"error": error[0], "error_description": error[1]}
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._state.codes[code] = {
                    "client_id": client_id,
                    "redirect_uri": redirect_uri,
                    "challenge": challenge,
                    "expires_at": self._clock() + CODE_TTL_SECONDS,
                }
                self._save()
            params = {"code": code}
        if state is not None:
            params["state"] = state
        parts = urlsplit(redirect_uri)
        query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
        location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        return _Response(302, b"", None, [("Location", location)])

    def _auth_page(self, status: int, message: str) -> _Response:
        page = f"<!DOCTYPE html><html><body><h1>SoundCloud</h1><p>{message}</p></body></html>"
        return _Response(status, page.encode("utf-8"), "text/html; charset=utf-8")

    def _token(self, req: _Request) -> _Response:
        if req.content_type != "application/x-www-form-urlencoded":
            raise _HttpError.oauth(
                400,
                "invalid_request",
                "send the token request as application/x-www-form-urlencoded, "
                f"not {req.content_type}",
            )
        pairs = self._read_urlencoded(req)
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:
                raise _HttpError.oauth(400, "invalid_request", f"{name} is given twice")
            form[name] = value
        grant = form.get("grant_type")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id or secret is None:
            raise _HttpError.oauth(
                401, "invalid_client", "client_id and client_secret are required"
            )
        if self.client_id is not None and (
            client_id != self.client_id or secret != self.client_secret
        ):
            raise _HttpError.oauth(
                401, "invalid_client", "unknown client_id or wrong client_secret"
            )
        with self._lock:
            try:
                if grant == "authorization_code":
                    answer = self._grant_code(form, client_id)
                elif grant == "refresh_token":
                    answer = self._grant_refresh(form, client_id)
                elif grant == "client_credentials":
                    answer = self._issue(client_id, "client")
                else:
                    raise _HttpError.oauth(
                        400, "unsupported_grant_type", f"grant_type {grant!r} is not supported"
                    )
            finally:
                self._save()  # a refused code or refresh token is spent too
        return _json_response(200, answer, [("Cache-Control", "no-store")])

    def _grant_code(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        for name in ("code", "redirect_uri", "code_verifier"):
            if not form.get(name):
                raise _HttpError.oauth(400, "invalid_request", f"{name} is required")
        # Used or not, a presented code is gone: nobody gets a second guess at its verifier.
        info = self._state.codes.pop(form["code"], None)
        if info is None:
            raise _HttpError.oauth(
                400, "invalid_grant", "unknown or already used authorization code"
            )
        if info["expires_at"] <= self._clock():
            raise _HttpError.oauth(400, "invalid_grant", "the authorization code expired")
        if info["client_id"] != client_id:
            raise _HttpError.oauth(400, "invalid_grant", "the code was issued to another client")
        if info["redirect_uri"] != form["redirect_uri"]:
            raise _HttpError.oauth(
                400, "invalid_grant", "redirect_uri differs from the one sent to /authorize"
            )
        verifier = form["code_verifier"]
        if not _PKCE_RE.match(verifier) or pkce_challenge(verifier) != info["challenge"]:
            raise _HttpError.oauth(400, "invalid_grant", "code_verifier does not match")
        return self._issue(client_id, "user")

    def _grant_refresh(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise _HttpError.oauth(400, "invalid_request", "refresh_token is required")
        info = self._state.refresh_tokens.get(token)
        if info is None or info.get("revoked"):
            raise _HttpError.oauth(400, "invalid_grant", "unknown or revoked refresh token")
        if info.get("used_at") is not None:
            raise _HttpError.oauth(
                400, "invalid_grant", "refresh token already used (refresh tokens are single-use)"
            )
        if info["client_id"] != client_id:
            raise _HttpError.oauth(400, "invalid_grant", "refresh token of another client")
        info["used_at"] = self._clock()
        return self._issue(client_id, "user")

    def _issue(self, client_id: str, kind: str) -> dict[str, Any]:
        access = secrets.token_urlsafe(24)
        expires_in = max(0, math.ceil(self.token_ttl))
        answer: dict[str, Any] = {"access_token": access, "expires_in": expires_in}
        refresh = None
        if kind == "user":
            refresh = secrets.token_urlsafe(24)
            self._state.refresh_tokens[refresh] = {"client_id": client_id, "used_at": None}
        self._state.access_tokens[access] = {
            "client_id": client_id,
            "kind": kind,
            "expires_at": self._clock() + self.token_ttl,
            "refresh_token": refresh,
        }
        answer["refresh_token"] = refresh
        answer["scope"] = ""
        answer["token_type"] = "bearer"
        return answer

    def _authenticate(self, req: _Request, *, user: bool = True) -> dict[str, Any]:
        def refuse(message: str, error: str = "invalid_token") -> _HttpError:
            challenge = f'OAuth realm="SoundCloud", error="{error}"'
            return _HttpError.api(
                401, message, headers=[("WWW-Authenticate", challenge)], error=error
            )

        if any(name in ("oauth_token", "access_token") for name, _ in req.query):
            raise refuse(
                "tokens in the query string are refused; send Authorization: OAuth <token>",
                "invalid_request",
            )
        header = req.headers.get("Authorization")
        if not header:
            raise refuse("missing Authorization: OAuth <token> header", "invalid_request")
        scheme, _, token = header.partition(" ")
        if scheme != "OAuth" or not token.strip():
            raise refuse(f"use Authorization: OAuth <token>, not {scheme!r}", "invalid_request")
        with self._lock:
            info = self._state.access_tokens.get(token.strip())
            if info is None:
                raise refuse("unknown or revoked access token")
            if info["expires_at"] <= self._clock():
                raise refuse("the access token expired")
            if user and info["kind"] != "user":
                raise refuse("this needs a user's token (authorization_code flow)")
            return dict(info)

    def _sign_out(self, req: _Request) -> _Response:
        token: str | None = None
        if req.content_type == "application/json":
            obj = self._read_json(req)
            if isinstance(obj, dict) and isinstance(obj.get("access_token"), str):
                token = obj["access_token"]
        if token is None:
            scheme, _, value = (req.headers.get("Authorization") or "").partition(" ")
            token = value.strip() if scheme == "OAuth" and value.strip() else None
        if token is None:
            raise _HttpError.api(401, 'send {"access_token": "…"} or an Authorization header')
        with self._lock:
            info = self._state.access_tokens.pop(token, None)
            if info is not None and info.get("refresh_token"):
                refresh = self._state.refresh_tokens.get(info["refresh_token"])
                if refresh is not None:
                    refresh["revoked"] = True
            self._save()
        return _json_response(200, {"status": "200 - OK"})

    # -- /me --

    def _user(self) -> dict[str, Any]:
        return {
            "kind": "user",
            "id": 100001,
            "urn": "soundcloud:users:100001",
            "username": self.username,
            "permalink": _slug(self.username),
            "permalink_url": f"{self.base_url}/{_slug(self.username)}",
            "uri": f"{self.base_url}/users/soundcloud:users:100001",
            "avatar_url": None,
            "full_name": "",
            "first_name": "",
            "last_name": "",
            "city": None,
            "country": None,
            "description": None,
            "plan": "Pro Unlimited" if self._state.quota.unlimited_upload_quota else "Free",
            "followers_count": 0,
            "followings_count": 0,
            "created_at": _timestamp(1_600_000_000),
            "last_modified": _timestamp(1_600_000_000),
        }

    def _me(self, req: _Request) -> _Response:
        self._authenticate(req)
        with self._lock:
            quota = asdict(self._state.quota)
            tracks = list(self._state.tracks.values())
            me = self._user() | {
                "quota": quota,
                "upload_seconds_left": quota["upload_seconds_left"],
                "track_count": sum(1 for t in tracks if t.meta.get("sharing") == "public"),
                "private_tracks_count": sum(
                    1 for t in tracks if t.meta.get("sharing") == "private"
                ),
                "playlist_count": len(self._state.playlists),
                "private_playlists_count": 0,
                "primary_email_confirmed": True,
                "locale": None,
                "online": False,
                "likes_count": 0,
                "comments_count": 0,
                "public_favorites_count": 0,
                "reposts_count": 0,
                "subscriptions": [],
            }
        return _json_response(200, me)

    def _page(self, req: _Request, items: list[Any], path: str) -> _Response:
        raw_limit = req.q("limit") or "50"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
            raise _HttpError.api(
                400, f"limit must be a whole number from 1 to 200, got {raw_limit!r}"
            )
        limit = int(raw_limit)
        if req.q("linked_partitioning") not in ("true", "1"):
            return _json_response(200, items[:limit])  # the deprecated plain-list answer
        raw_cursor = req.q("cursor") or "0"
        if not raw_cursor.isdigit():
            raise _HttpError.api(400, f"cursor {raw_cursor!r} did not come from a next_href")
        start = int(raw_cursor)
        page = items[start : start + limit]
        next_href = None
        if start + limit < len(items):
            params = {"limit": limit, "linked_partitioning": "true", "cursor": start + limit}
            next_href = f"{self.base_url}{path}?{urlencode(params)}"
        return _json_response(200, {"collection": page, "next_href": next_href})

    def _me_tracks(self, req: _Request) -> _Response:
        self._authenticate(req)
        order = req.q("sort") or req.q("direction") or req.q("order") or "desc"
        if order not in ("asc", "desc"):
            raise _HttpError.api(400, f"sort must be asc or desc, got {order!r}")
        with self._lock:
            tracks = sorted(
                self._state.tracks.values(),
                key=lambda t: (t.created_at, t.id),
                reverse=order == "desc",
            )
            items = [self._render_track(t) for t in tracks]
        return self._page(req, items, "/me/tracks")

    def _me_playlists(self, req: _Request) -> _Response:
        self._authenticate(req)
        show = req.q("show_tracks") != "false"
        with self._lock:
            playlists = sorted(self._state.playlists.values(), key=lambda p: -p.created_at)
            items = [self._render_playlist(p, show) for p in playlists]
        return self._page(req, items, "/me/playlists")

    # -- tracks --

    # -- what a listener sees (listener_page.py) --

    def _listener(self, req: _Request) -> _Response | None:
        """A track's page at its permalink (private: only under its secret link), and its
        artwork and audio; None for paths that are neither (the API's 404 then)."""
        from releaseosd.rehearsal import listener_page

        parts = [p for p in req.path.split("/") if p]
        html = "text/html; charset=utf-8"
        page = len(parts) in (2, 3) and parts[0] == _slug(self.username)
        asset = len(parts) == 3 and parts[0] == "_listen"
        if not (page or asset or parts == ["favicon.ico"]):
            return None
        if parts != ["favicon.ico"] and not self._own_host(req):
            # A page elsewhere whose name was rebound to 127.0.0.1 must not read rehearsed
            # (unreleased) audio.
            req.template = listener_page.LISTENER_TEMPLATE
            return _Response(403, b"", None)
        if parts == ["favicon.ico"]:
            req.template = listener_page.LISTENER_TEMPLATE
            return _Response(404, b"", None)
        headers = [
            ("Content-Security-Policy", listener_page.PAGE_CSP),
            ("Cache-Control", "no-store"),
        ]
        if len(parts) == 3 and parts[0] == "_listen" and parts[2] in ("artwork", "audio"):
            req.template = listener_page.LISTENER_TEMPLATE
            with self._lock:
                number = parts[1]
                ok = number.isascii() and number.isdigit() and len(number) <= 18
                track = self._state.tracks.get(int(number)) if ok else None
                if track is None:
                    return _Response(404, b"", None, headers)
                private = track.meta.get("sharing") == "private"
                if private and req.q("s") != f"s-{track.secret}":
                    return _Response(404, b"", None, headers)
                name = track.artwork_file if parts[2] == "artwork" else track.asset_file
            if name is None:
                return _Response(404, b"", None, headers)
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return _Response(200, (self.uploads_dir / name).read_bytes(), kind, headers)
        if not page:
            return None
        req.template = listener_page.LISTENER_TEMPLATE
        with self._lock:
            track = next(
                (t for t in self._state.tracks.values() if t.meta.get("permalink") == parts[1]),
                None,
            )
            if track is None:
                return _Response(404, listener_page.not_found("no such track."), html, headers)
            private = track.meta.get("sharing") == "private"
            secret_given = parts[2] if len(parts) == 3 else None
            if (private and secret_given != f"s-{track.secret}") or (
                secret_given is not None and not private
            ):
                what = "this track is private: only its secret link opens it."
                return _Response(404, listener_page.not_found(what), html, headers)
            shown = listener_page.listener_track(
                self._render_track(track), track.secret, track.artwork_file is not None
            )
        return _Response(200, listener_page.page(shown), html, headers)

    def _own_host(self, req: _Request) -> bool:
        port = urlsplit(self.base_url).port
        host = (req.headers.get("Host") or "").lower()
        return host in {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}

    def _find_track(self, ref: str) -> _Track:
        track_id = self._parse_ref(ref, "tracks")
        track = self._state.tracks.get(track_id) if track_id is not None else None
        if track is None:
            raise _HttpError.api(404, f"no track {ref}")
        return track

    @staticmethod
    def _parse_ref(ref: str, kind: str) -> int | None:
        m = re.fullmatch(rf"(?:soundcloud:{kind}:)?(\d+)", ref)
        return int(m.group(1)) if m else None

    def _render_track(self, t: _Track) -> dict[str, Any]:
        m = t.meta
        if self.processing_gets is not None:
            done = t.gets >= self.processing_gets
        else:
            done = self._clock() - t.created_at >= self.processing_seconds
        state = t.processing_outcome if done else "processing"
        release: dict[str, int | None] = {"release_year": None, "release_month": None}
        release["release_day"] = None
        if m.get("release_date"):
            y, mo, d = (int(x) for x in str(m["release_date"]).split("-"))
            release = {"release_year": y, "release_month": mo, "release_day": d}
        uri = f"{self.base_url}/tracks/{t.urn}"
        user_permalink = _slug(self.username)
        private = m.get("sharing") == "private"
        return {
            "kind": "track",
            "id": t.id,
            "urn": t.urn,
            "title": m["title"],
            "permalink": m["permalink"],
            "permalink_url": f"{self.base_url}/{user_permalink}/{m['permalink']}",
            "uri": uri,
            "secret_uri": f"{uri}?secret_token=s-{t.secret}" if private else None,
            "sharing": m.get("sharing", "public"),
            "state": state,
            "description": m.get("description"),
            "genre": m.get("genre"),
            "tag_list": m.get("tag_list", ""),
            "label_name": m.get("label_name"),
            "release": m.get("release"),
            **release,
            "isrc": m.get("isrc"),
            "license": m.get("license", "all-rights-reserved"),
            "embeddable_by": m.get("embeddable_by", "all"),
            "purchase_url": m.get("purchase_url"),
            "purchase_title": None,
            "streamable": m.get("streamable", True),
            "downloadable": m.get("downloadable", True),
            "commentable": m.get("commentable", True),
            "reveal_stats": m.get("reveal_stats", True),
            "reveal_comments": m.get("reveal_comments", True),
            "bpm": None,
            "key_signature": None,
            "duration": t.duration_ms if state == "finished" else 0,
            "created_at": _timestamp(t.created_at),
            "artwork_url": f"{uri}/artwork.jpg" if t.artwork_file else None,
            "waveform_url": f"{uri}/waveform.png" if state == "finished" else None,
            "stream_url": f"{uri}/stream",
            "download_url": f"{uri}/download" if m.get("downloadable", True) else None,
            "access": "playable",
            "playback_count": 0,
            "download_count": 0,
            "favoritings_count": 0,
            "comment_count": 0,
            "reposts_count": 0,
            "user_favorite": False,
            "user_playback_count": 0,
            "available_country_codes": None,
            "metadata_artist": None,
            "user": self._user(),
        }

    def _unique_permalink(self, wanted: str, own_id: int | None = None) -> str:
        taken = {t.meta.get("permalink") for t in self._state.tracks.values() if t.id != own_id}
        candidate, n = wanted, 0
        while candidate in taken:
            n += 1
            candidate = f"{wanted}-{n}"
        return candidate

    def _upload(self, req: _Request) -> _Response:
        token = self._authenticate(req, user=False)
        if token["kind"] != "user":
            # What uploads with a client-credentials token (or a revoked upload permission) get.
            raise _HttpError(_Response(401))
        if req.content_type != "multipart/form-data":
            raise _HttpError.api(
                400, f"upload a track as multipart/form-data, not {req.content_type}"
            )
        sink = self._read_multipart(req)
        try:
            return self._create_track(req, sink)
        finally:
            sink.discard()  # whatever was not moved into place

    def _create_track(self, req: _Request, sink: _MultipartSink) -> _Response:
        files = [(u.field, u.filename) for u in sink.files]
        problems = sink.problems + check_form(
            sink.fields, files, TRACK_DATA_REQUEST, TRACK_DATA_REQUIRED
        )
        uploads = {u.field: u for u in sink.files}
        asset = uploads.get("track[asset_data]")
        artwork = uploads.get("track[artwork_data]")
        if asset is not None and not problems:
            suffix = Path(asset.filename).suffix.lower()
            if len(asset.filename) > MAX_FILENAME_CHARS:
                problems.append(
                    f"track[asset_data] filename is {len(asset.filename)} characters long; "
                    f"at most {MAX_FILENAME_CHARS} are accepted"
                )
            elif asset.size == 0 or suffix not in AUDIO_EXTENSIONS:
                why = (
                    "empty file" if asset.size == 0 else f"{suffix or 'no extension'} is not audio"
                )
                problems.append(
                    f"unable to process provided asset_data ({asset.filename!r}: {why})"
                )
            elif asset.size > self.max_asset_bytes:
                problems.append(
                    f"track[asset_data] is {asset.size} bytes; at most {self.max_asset_bytes}"
                )
        if problems:
            raise _HttpError.api(422, "; ".join(problems), problems=problems)
        assert asset is not None
        outcome = self._processing_outcome(req)
        meta = _form_to_meta(sink.fields, TRACK_DATA_REQUEST)
        duration_ms = _audio_duration_ms(asset.path)
        with self._lock:
            track_id = self._state.new_id()
            meta["permalink"] = self._unique_permalink(
                meta.get("permalink") or _slug(meta["title"])
            )
            meta.setdefault("sharing", "public")
            asset_name = f"{track_id}-asset{Path(asset.filename).suffix.lower()}"
            os.replace(asset.path, self.uploads_dir / asset_name)
            artwork_name = None
            if artwork is not None:
                artwork_name = f"{track_id}-artwork{_stored_suffix(artwork.filename)}"
                os.replace(artwork.path, self.uploads_dir / artwork_name)
            track = _Track(
                id=track_id,
                created_at=self._clock(),
                meta=meta,
                asset_file=asset_name,
                asset_filename=asset.filename,
                asset_bytes=asset.size,
                artwork_file=artwork_name,
                processing_outcome=outcome,
                secret=secrets.token_urlsafe(8),
                duration_ms=duration_ms,
            )
            self._state.tracks[track_id] = track
            quota = self._state.quota
            seconds = math.ceil(duration_ms / 1000)
            quota.upload_seconds_used += seconds
            if not quota.unlimited_upload_quota and quota.upload_seconds_left is not None:
                quota.upload_seconds_left = max(0, quota.upload_seconds_left - seconds)
            self._save()
            rendered = self._render_track(track)
        return _json_response(201, rendered, [("Location", rendered["uri"])])

    def _get_track(self, req: _Request) -> _Response:
        self._authenticate(req, user=False)
        with self._lock:
            track = self._find_track(req.params["track_urn"])
            track.gets += 1
            return _json_response(200, self._render_track(track))

    def _put_track(self, req: _Request) -> _Response:
        self._authenticate(req)
        with self._lock:
            self._find_track(req.params["track_urn"])  # 404 before reading a body for nothing
        artwork: _Upload | None = None
        sink: _MultipartSink | None = None
        try:
            if req.content_type == "application/json":
                obj = self._read_json(req)
                if not isinstance(obj, dict) or set(obj) != {"track"}:
                    raise _HttpError.api(422, 'the body must be {"track": {...}}')
                problems = check_json_object(obj["track"], "track", TRACK_METADATA)
                changes = dict(obj["track"]) if not problems else {}
            elif req.content_type in (
                "multipart/form-data",
                "application/x-www-form-urlencoded",
                "multipart/x-www-form-urlencoded",
            ):
                if req.content_type == "multipart/form-data":
                    sink = self._read_multipart(req)
                    fields, uploads = sink.fields, sink.files
                    problems = list(sink.problems)
                else:
                    fields, uploads, problems = self._read_urlencoded(req), [], []
                files = [(u.field, u.filename) for u in uploads]
                problems += check_form(fields, files, TRACK_UPDATE_FORM_REQUEST)
                changes = _form_to_meta(fields, TRACK_UPDATE_FORM_REQUEST) if not problems else {}
                artwork = next(iter(uploads), None)
            else:
                raise _HttpError.api(
                    400, f"update a track with JSON or form fields, not {req.content_type}"
                )
            if problems:
                raise _HttpError.api(422, "; ".join(problems), problems=problems)
            with self._lock:
                track = self._find_track(req.params["track_urn"])
                if "permalink" in changes:
                    changes["permalink"] = self._unique_permalink(changes["permalink"], track.id)
                track.meta.update(changes)
                if artwork is not None:
                    name = f"{track.id}-artwork{_stored_suffix(artwork.filename)}"
                    os.replace(artwork.path, self.uploads_dir / name)
                    track.artwork_file = name
                self._save()
                return _json_response(200, self._render_track(track))
        finally:
            if sink is not None:
                sink.discard()

    def _delete_track(self, req: _Request) -> _Response:
        self._authenticate(req)
        with self._lock:
            track = self._find_track(req.params["track_urn"])
            del self._state.tracks[track.id]
            for playlist in self._state.playlists.values():
                playlist.track_ids = [i for i in playlist.track_ids if i != track.id]
            for name in (track.asset_file, track.artwork_file):
                if name:
                    (self.uploads_dir / name).unlink(missing_ok=True)
            self._save()
        return _json_response(200, {"status": "200 - OK"})

    # -- playlists --

    def _render_playlist(self, p: _Playlist, show_tracks: bool) -> dict[str, Any]:
        m = p.meta
        tracks = [self._state.tracks[i] for i in p.track_ids if i in self._state.tracks]
        uri = f"{self.base_url}/playlists/{p.urn}"
        permalink = m.get("permalink") or _slug(m["title"])
        return {
            "kind": "playlist",
            "id": p.id,
            "urn": p.urn,
            "title": m["title"],
            "description": m.get("description"),
            "sharing": m.get("sharing", "public"),
            "playlist_type": m.get("set_type", "playlist"),
            "type": m.get("set_type", "playlist"),
            "permalink": permalink,
            "permalink_url": f"{self.base_url}/{_slug(self.username)}/sets/{permalink}",
            "uri": uri,
            "tracks_uri": f"{uri}/tracks",
            "track_count": len(tracks),
            "duration": sum(t.duration_ms for t in tracks),
            "tracks": [self._render_track(t) for t in tracks] if show_tracks else [],
            "created_at": _timestamp(p.created_at),
            "last_modified": _timestamp(p.last_modified),
            "genre": m.get("genre"),
            "tag_list": m.get("tag_list", ""),
            "label_name": m.get("label_name"),
            "release": m.get("release"),
            "ean": m.get("ean"),
            "license": m.get("license"),
            "purchase_url": m.get("purchase_url"),
            "purchase_title": m.get("purchase_title"),
            "artwork_url": None,
            "embeddable_by": "all",
            "downloadable": True,
            "streamable": True,
            "likes_count": 0,
            "user": self._user(),
            "user_urn": "soundcloud:users:100001",
        }

    def _playlist_changes(self, req: _Request, *, creating: bool) -> dict[str, Any]:
        """Validated playlist fields from a JSON or (on create) form body; tracks as ids."""
        if req.content_type == "multipart/form-data" and creating:
            sink = self._read_multipart(req)
            sink.discard()  # the sandbox does not keep playlist artwork
            files = [(u.field, u.filename) for u in sink.files]
            problems = sink.problems + check_form(
                sink.fields, files, PLAYLIST_FORM_REQUEST, PLAYLIST_FORM_REQUIRED
            )
            if problems:
                raise _HttpError.api(422, "; ".join(problems), problems=problems)
            changes: dict[str, Any] = {}
            for name, value in sink.fields:
                key = name.split("[", 1)[1].split("]", 1)[0]
                if key == "tracks":
                    changes["tracks"] = [{"urn": u.strip()} for u in value.split(",") if u.strip()]
                else:
                    changes[key] = value
        else:
            obj = self._read_json(req)
            if not isinstance(obj, dict) or set(obj) != {"playlist"}:
                raise _HttpError.api(422, 'the body must be {"playlist": {...}}')
            problems = check_json_object(obj["playlist"], "playlist", PLAYLIST_METADATA)
            if not problems and creating and not obj["playlist"].get("title"):
                problems.append("playlist.title is required")
            if problems:
                raise _HttpError.api(422, "; ".join(problems), problems=problems)
            changes = dict(obj["playlist"])
        changes.pop("artwork_data", None)
        if "tracks" in changes:
            ids = []
            with self._lock:
                for item in changes["tracks"]:
                    track_id = self._parse_ref(item["urn"], "tracks")
                    if track_id is None or track_id not in self._state.tracks:
                        raise _HttpError.api(422, f"playlist.tracks: no track {item['urn']}")
                    ids.append(track_id)
            changes["tracks"] = ids
        return changes

    def _create_playlist(self, req: _Request) -> _Response:
        self._authenticate(req)
        changes = self._playlist_changes(req, creating=True)
        with self._lock:
            now = self._clock()
            track_ids = changes.pop("tracks", [])
            playlist = _Playlist(self._state.new_id(), now, now, changes, track_ids)
            self._state.playlists[playlist.id] = playlist
            self._save()
            return _json_response(201, self._render_playlist(playlist, True))

    def _find_playlist(self, ref: str) -> _Playlist:
        playlist_id = self._parse_ref(ref, "playlists")
        playlist = self._state.playlists.get(playlist_id) if playlist_id is not None else None
        if playlist is None:
            raise _HttpError.api(404, f"no playlist {ref}")
        return playlist

    def _get_playlist(self, req: _Request) -> _Response:
        self._authenticate(req, user=False)
        with self._lock:
            playlist = self._find_playlist(req.params["playlist_urn"])
            return _json_response(
                200, self._render_playlist(playlist, req.q("show_tracks") != "false")
            )

    def _put_playlist(self, req: _Request) -> _Response:
        self._authenticate(req)
        with self._lock:
            self._find_playlist(req.params["playlist_urn"])
        changes = self._playlist_changes(req, creating=False)
        with self._lock:
            playlist = self._find_playlist(req.params["playlist_urn"])
            if "tracks" in changes:
                playlist.track_ids = changes.pop("tracks")  # replaces the whole list
            playlist.meta.update(changes)
            playlist.last_modified = self._clock()
            self._save()
            return _json_response(200, self._render_playlist(playlist, True))

    def _delete_playlist(self, req: _Request) -> _Response:
        self._authenticate(req)
        with self._lock:
            playlist = self._find_playlist(req.params["playlist_urn"])
            del self._state.playlists[playlist.id]
            self._save()
        return _json_response(200, {"status": "200 - OK"})


def serve_forever(
    port: int,
    data_dir: Path | None,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """`releaseosd sandbox`: serve on 127.0.0.1:port until SIGINT/SIGTERM."""
    serve(Sandbox(data_dir, client_id=client_id, client_secret=client_secret), port, out=out)


def serve(sandbox: Sandbox, port: int, *, out: TextIO = sys.stdout) -> None:
    """Serve `sandbox` on 127.0.0.1:port until SIGINT/SIGTERM.

    The first line printed is `SoundCloud sandbox at http://127.0.0.1:PORT`, so a parent
    process started with port 0 can read the port.
    """
    url = sandbox.start(port=port)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    data_dir = sandbox.data_dir
    where = f"state in {data_dir}" if data_dir is not None else "state in memory only"
    print(f"SoundCloud sandbox at {url}", file=out)
    print(f"  {where}; point releaseosd at it with:", file=out)
    print(f"    soundcloud:\n      api_url: {url}\n      auth_url: {url}", file=out)
    print("  Ctrl-C stops it.", file=out, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


__all__ = [
    "AUDIO_EXTENSIONS",
    "PLAYLIST_FORM_REQUEST",
    "PLAYLIST_METADATA",
    "TRACK_DATA_REQUEST",
    "TRACK_METADATA",
    "TRACK_UPDATE_FORM_REQUEST",
    "FieldRule",
    "Quota",
    "Sandbox",
    "SandboxError",
    "check_form",
    "check_json_object",
    "error_body",
    "pkce_challenge",
    "reason",
    "serve",
    "serve_forever",
]
