"""TestSandbox: the product's SoundCloud sandbox (releaseosd/rehearsal/sandbox.py) as the test
suite uses it, with what only tests need, built on the product's seams: fault injection
(faults.py), a log of every request, accessors that read its state without a request, and an
admin API.

Under `/_sandbox/` the admin API (unauthenticated; loopback Host only, never logged, never
faulted) lets a test drive a sandbox in another process (see `serve_forever`):
    GET  /_sandbox/faults            current fault settings (Faults.to_json())
    POST /_sandbox/faults            {"error_rate": 0.5, ...}: Faults.update(**body)
    POST /_sandbox/faults/clear      back to no faults
    POST /_sandbox/faults/push       {"status": 503, "html": true, "match": "POST /tracks"}
    POST /_sandbox/expire-tokens     every access token expires now
    POST /_sandbox/tokens            mint a token pair without the login flow
    GET|DELETE /_sandbox/requests    the request log (RecordedRequest.to_json()), or clear it
    GET  /_sandbox/tracks            every track as the API shows it
    GET  /_sandbox/stats             refresh_count, rate_limited, retry_after_violations
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

from releaseosd.rehearsal.sandbox import (
    Quota,
    Sandbox,
    _HttpError,
    _json_response,
    error_body,
    pkce_challenge,
    serve,
)
from releaseosd.rehearsal.wire import Answer, Body, Dropped, MultipartSink, Request

from .faults import AUTH_TEMPLATES, Faults

# --- Records a test can inspect -------------------------------------------------------------


@dataclass(frozen=True)
class RecordedFile:
    field: str
    filename: str
    content_type: str | None
    size: int


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the sandbox saw it, for tests and for tests/soundcloud/spec_check.py.

    `at` is when its headers arrived and `answered_at` when the answer went out (both from the
    sandbox's clock). `status` 0 means no answer: the connection dropped or was dropped.
    Authorization is masked to its scheme ("OAuth ****"), as is a `client_secret` form value.
    `seq` numbers requests in order of arrival.
    """

    seq: int
    at: float
    answered_at: float
    method: str
    path: str
    template: str | None
    query: dict[str, list[str]]
    headers: dict[str, str]
    content_type: str | None
    form: list[tuple[str, str]]
    files: list[RecordedFile]
    json_body: Any
    body_bytes: int
    status: int

    def form_values(self, name: str) -> list[str]:
        return [value for key, value in self.form if key == name]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RateLimitEvent:
    """A 429 answered at `at` to the request numbered `seq`."""

    seq: int
    at: float
    retry_after: int | None
    method: str
    path: str


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str | None
    expires_in: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self.access_token}"}


@dataclass(frozen=True)
class StoredUpload:
    """What the sandbox kept of a track's upload."""

    path: Path
    filename: str
    size: int
    artwork: Path | None


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for S256, as a client makes them (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce_challenge(verifier)


def _is_admin(path: str) -> bool:
    return path == "/_sandbox" or path.startswith("/_sandbox/")


class _CutAfter:
    """An upload's body that drops the connection once `limit` bytes of it have arrived."""

    def __init__(self, limit: int) -> None:
        self._left = limit
        self._cut = False

    def __call__(self, data: bytes) -> bytes:
        if self._cut:
            raise Dropped
        if len(data) > self._left:
            # These bytes still arrive; the connection drops at the next piece or the body's end.
            self._cut = True
            data = data[: self._left]
        self._left -= len(data)
        return data


class _Throttled:
    """An upload's body arriving at a set rate (a slow uplink): the client's progress shows, as
    the server's socket buffers fill and the client's sends block."""

    def __init__(self, per_second: int) -> None:
        self._per_second = per_second
        self._started = time.monotonic()
        self._arrived = 0

    def __call__(self, data: bytes) -> bytes:
        self._arrived += len(data)
        ahead = self._arrived / self._per_second - (time.monotonic() - self._started)
        if ahead > 0:
            time.sleep(ahead)  # the network's pace, not a wait for something to happen
        return data


class UploadGate:
    """Holds every upload's body once `after_bytes` of it have arrived, until `open()`: a test
    can look at an upload in progress for as long as it needs, on any machine."""

    def __init__(self, after_bytes: int, *, give_up_after: float = 60.0) -> None:
        self.after_bytes = after_bytes
        self.reached = threading.Event()
        self._open = threading.Event()
        self._give_up_after = give_up_after

    def open(self) -> None:
        self._open.set()

    def step(self) -> Callable[[bytes], bytes]:
        arrived = 0

        def hold(data: bytes) -> bytes:
            nonlocal arrived
            arrived += len(data)
            if arrived >= self.after_bytes and not self._open.is_set():
                self.reached.set()
                # Bounded, so a test that forgets to open it fails instead of hanging.
                if not self._open.wait(self._give_up_after):
                    raise Dropped
            return data

        return hold


class TestSandbox(Sandbox):
    """The product's Sandbox, plus `faults`, the request log and the accessors below; takes the
    same arguments, and `faults` (a Faults to start with)."""

    __test__ = False  # not a test class, whatever pytest makes of its name

    def __init__(self, *args: Any, faults: Faults | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.faults = faults if faults is not None else Faults()
        self._requests: list[RecordedRequest] = []
        self._rate_limited: list[RateLimitEvent] = []
        self._refresh_count = 0
        self._seq = 0
        # id(request) -> (seq, arrival time), from _intercept until _observe.
        self._arrivals: dict[int, tuple[int, float]] = {}
        self._gate: UploadGate | None = None

    # -- what tests look at --

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._rate_limited.clear()

    @property
    def refresh_count(self) -> int:
        """grant_type=refresh_token requests received, accepted or not."""
        with self._lock:
            return self._refresh_count

    @property
    def rate_limited(self) -> list[RateLimitEvent]:
        """Every 429 answered: when, with which Retry-After, to which request."""
        with self._lock:
            return list(self._rate_limited)

    def retry_after_violations(self) -> list[str]:
        """Requests that arrived after a 429 but before its Retry-After had passed."""
        with self._lock:
            events, requests = list(self._rate_limited), list(self._requests)
        problems = []
        for event in events:
            if event.retry_after is None:
                continue
            for rec in requests:
                if rec.seq > event.seq and event.at <= rec.at < event.at + event.retry_after:
                    problems.append(
                        f"{rec.method} {rec.path} came {rec.at - event.at:.3f} s after a 429 "
                        f"(to {event.method} {event.path}) that said Retry-After: {event.retry_after}"
                    )
        return problems

    @property
    def quota(self) -> Quota:
        return self._state.quota

    def tracks(self) -> list[dict[str, Any]]:
        """Every track as GET /tracks/{urn} would show it (without counting as a GET)."""
        with self._lock:
            return [self._render_track(t) for t in self._state.tracks.values()]

    def playlists(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_playlist(p, True) for p in self._state.playlists.values()]

    def upload_of(self, track_urn: str) -> StoredUpload:
        with self._lock:
            track = self._find_track(track_urn)
            artwork = self.uploads_dir / track.artwork_file if track.artwork_file else None
            return StoredUpload(
                self.uploads_dir / track.asset_file,
                track.asset_filename,
                track.asset_bytes,
                artwork,
            )

    def hold_uploads(self, after_bytes: int) -> UploadGate:
        """Uploads from now on stop after `after_bytes` until the gate returned is opened."""
        self._gate = UploadGate(after_bytes)
        return self._gate

    # -- tokens, for tests that are not about logging in --

    def issue_tokens(self, client_id: str | None = None) -> TokenPair:
        with self._lock:
            answer = self._issue(client_id or self.client_id or "sandbox-client", "user")
            self._save()
        return TokenPair(answer["access_token"], answer["refresh_token"], answer["expires_in"])

    def expire_access_tokens(self) -> int:
        """Early expiry: every access token issued so far stops working now."""
        with self._lock:
            now = self._clock()
            for info in self._state.access_tokens.values():
                info["expires_at"] = min(info["expires_at"], now - 1)
            self._save()
            return len(self._state.access_tokens)

    def authorize_url(
        self,
        redirect_uri: str,
        code_challenge: str,
        state: str | None = None,
        client_id: str | None = None,
    ) -> str:
        params = {
            "client_id": client_id or self.client_id or "sandbox-client",
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        if state is not None:
            params["state"] = state
        return f"{self.base_url}/authorize?{urlencode(params)}"

    # -- the product's seams --

    def _intercept(self, req: Request) -> Answer | None:
        if _is_admin(req.path):
            return self._admin(req)
        arrived = self._clock()
        with self._lock:
            self._seq += 1
            self._arrivals[id(req)] = (self._seq, arrived)
        decision = self.faults.decide(
            req.method, req.template or req.path, is_auth=req.template in AUTH_TEMPLATES
        )
        return decision.response() if decision is not None else None

    def _observe(self, req: Request, answer: Answer | None) -> None:
        if _is_admin(req.path):
            return
        now = self._clock()
        with self._lock:
            arrival = self._arrivals.pop(id(req), None)
            if arrival is None:  # answered before _intercept saw it
                self._seq += 1
                arrival = (self._seq, now)
        seq, at = arrival
        status = answer.status if answer is not None else 0
        if answer is not None and status == 429:
            retry = dict(answer.headers).get("Retry-After")
            event = RateLimitEvent(seq, now, int(retry) if retry else None, req.method, req.path)
            with self._lock:
                self._rate_limited.append(event)
        # Recorded before the answer leaves: a test that has its answer can count on seeing the
        # request (and its 429) in the log.
        self._record(req, seq, at, now, status)

    def _user_approves(self) -> bool:
        return not self.faults.deny_authorization

    def _processing_outcome(self, req: Request) -> str:
        if self.faults.artwork_fails and any(f.field == "track[artwork_data]" for f in req.files):
            raise _HttpError.api(500, "Internal Server Error")
        return self.faults.processing_outcome

    # -- faults inside the routes --

    def _token(self, req: Request) -> Answer:
        try:
            answer = super()._token(req)
        except _HttpError:
            self._count_refresh(req)
            self._slow_token_answer()
            raise
        self._count_refresh(req)
        if self.faults.token_answer_dropped():
            # Granted and saved (a refresh token has rotated), but the answer never arrives.
            raise Dropped
        self._slow_token_answer()
        return answer

    def _count_refresh(self, req: Request) -> None:
        names = [name for name, _ in req.form]
        # A form the grant read (no name given twice) that asked for a refresh.
        if len(set(names)) == len(names) and dict(req.form).get("grant_type") == "refresh_token":
            with self._lock:
                self._refresh_count += 1

    def _slow_token_answer(self) -> None:
        delay = self.faults.token_answer_delay
        if delay > 0:
            time.sleep(delay)  # outside self._lock: other requests go on meanwhile

    def _upload(self, req: Request) -> Answer:
        created = super()._upload(req)
        if self.faults.upload_answer_dropped():
            raise Dropped  # the track exists; its answer never arrives
        return created

    def _read_multipart(self, req: Request) -> MultipartSink:
        # Called once the upload is authorized and is multipart: the body is what gets cut.
        after = None
        if (req.method, req.template) == ("POST", "/tracks"):
            after = self.faults.upload_drop_point()
        rate = self.faults.upload_bytes_per_second
        if rate and (req.method, req.template) == ("POST", "/tracks"):
            req.body.through(_Throttled(rate))
        if self._gate is not None and (req.method, req.template) == ("POST", "/tracks"):
            req.body.through(self._gate.step())
        if after is None:
            return super()._read_multipart(req)
        req.body.through(_CutAfter(after))
        try:
            return super()._read_multipart(req)
        except Dropped:
            self.faults.upload_dropped()
            raise

    # -- the request log --

    def _record(self, req: Request, seq: int, started: float, answered: float, status: int) -> None:
        headers: dict[str, str] = {}
        for name, value in req.headers.items():
            key = name.lower()
            if key == "authorization":
                value = f"{value.partition(' ')[0]} ****"
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        query: dict[str, list[str]] = {}
        for key, value in req.query:
            query.setdefault(key, []).append(value)
        form = [(k, "****" if k == "client_secret" else v) for k, v in req.form]
        rec = RecordedRequest(
            seq=seq,
            at=started,
            answered_at=answered,
            method=req.method,
            path=req.path,
            template=req.template,
            query=query,
            headers=headers,
            content_type=req.content_type,
            form=form,
            files=[RecordedFile(u.field, u.filename, u.content_type, u.size) for u in req.files],
            json_body=req.json_body,
            body_bytes=req.body.read_bytes,
            status=status,
        )
        with self._lock:
            self._requests.append(rec)

    # -- /_sandbox admin --

    def _admin(self, req: Request) -> Answer:
        host = (req.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            # A web page that rebinds a name to 127.0.0.1 must not drive the sandbox.
            raise _HttpError.api(403, f"admin requests must use a loopback Host, not {host!r}")
        try:
            return self._admin_answer(req.method, req.path, req.body)
        except ValueError as exc:
            return _json_response(400, error_body(400, str(exc)))

    def _admin_answer(self, method: str, path: str, body: Body) -> Answer:
        def payload() -> Any:
            raw = body.read_all()
            return json.loads(raw) if raw.strip() else {}

        key = (method, path.removeprefix("/_sandbox"))
        if key == ("GET", "/faults"):
            return _json_response(200, self.faults.to_json())
        if key == ("POST", "/faults"):
            changes = payload()
            if not isinstance(changes, dict):
                raise ValueError("POST /_sandbox/faults takes a JSON object of settings")
            self.faults.update(**changes)
            return _json_response(200, self.faults.to_json())
        if key == ("POST", "/faults/clear"):
            self.faults.clear()
            return _json_response(200, self.faults.to_json())
        if key == ("POST", "/faults/push"):
            item = payload()
            if not isinstance(item, dict):
                raise ValueError("POST /_sandbox/faults/push takes a JSON scripted fault")
            self.faults.push(**item)
            return _json_response(200, self.faults.to_json())
        if key == ("POST", "/expire-tokens"):
            return _json_response(200, {"expired": self.expire_access_tokens()})
        if key == ("POST", "/tokens"):
            args = payload()
            pair = self.issue_tokens(args.get("client_id") if isinstance(args, dict) else None)
            return _json_response(200, asdict(pair))
        if key == ("GET", "/requests"):
            return _json_response(200, [r.to_json() for r in self.requests])
        if key == ("DELETE", "/requests"):
            self.clear_requests()
            return _json_response(200, {"status": "200 - OK"})
        if key == ("GET", "/tracks"):
            return _json_response(200, self.tracks())
        if key == ("GET", "/stats"):
            return _json_response(
                200,
                {
                    "refresh_count": self.refresh_count,
                    "rate_limited": [asdict(e) for e in self.rate_limited],
                    "retry_after_violations": self.retry_after_violations(),
                },
            )
        raise _HttpError.api(404, f"no admin endpoint {method} {path}")


def serve_forever(port: int, data_dir: Path | None, *, out: TextIO = sys.stdout) -> None:
    """What `releaseosd sandbox` does, with a TestSandbox (admin API and all), for tests that
    drive a sandbox in another process."""
    serve(TestSandbox(data_dir), port, out=out)
