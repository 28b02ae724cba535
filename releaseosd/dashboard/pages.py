"""The dashboard's routes: pages and fragments (GET, never changing anything), the live
stream, and the actions (POST, through the same command layer as the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from releaseosd.dashboard.access import Access, Guard
from releaseosd.dashboard.account import Account
from releaseosd.dashboard.cards import (
    FILTERS,
    card_of,
    checklist,
    history_of,
    newest_first,
)
from releaseosd.dashboard.live import LiveFeed
from releaseosd.media.build import read_peaks
from releaseosd.model.store import Store
from releaseosd.model.track import Track, built_dir, utcnow
from releaseosd.soundcloud.errors import SoundCloudError

HERE = Path(__file__).parent
# An action is a track id and a time: nothing a page sends needs more.
MAX_BODY_BYTES = 16 * 1024
# The SSE stream says it is alive this often: quiet enough for an idle daemon's CPU budget.
PING_SECONDS = 20


class ActionRefused(Exception):
    """The command cannot be done as asked; the message says why (the CLI's own words)."""


# A producer's command by name with its JSON body, as the CLI sends it (the daemon passes the
# command layer's dispatch): its answer, or ActionRefused.
Act = Callable[[str, dict[str, Any]], str]


@dataclass
class Site:
    """What the pages need of the running daemon."""

    store: Store
    act: Act
    live: LiveFeed
    account: Account
    access: Access
    state_dir: Path
    rehearsal: bool = False


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_attr"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def dashboard_app(site: Site) -> ASGIApp:
    env = _environment()

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        page = env.get_template(name).render(
            csrf=site.access.csrf_token, rehearsal=site.rehearsal, **values
        )
        return HTMLResponse(page, status, headers={"Cache-Control": "no-store"})

    def track_or_404(request: Request) -> Track | None:
        return site.store.get(str(request.path_params["track_id"]))

    def login(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if not token or not site.access.token_ok(token):
            return PlainTextResponse(
                "That dashboard link is not (or no longer) valid: run 'releaseosd ui' again.", 401
            )
        # 303 to a URL without the token: it leaves the address bar and the history.
        answer = RedirectResponse("/", 303)
        answer.headers["set-cookie"] = site.access.session_cookie()
        answer.headers["cache-control"] = "no-store"
        return answer

    def index(request: Request) -> HTMLResponse:
        shown = request.query_params.get("show", "")
        tracks = newest_first(site.store.all())
        cards = [card_of(t, site.live.progress(t.id)) for t in tracks]
        if shown in FILTERS:
            cards = [c for c in cards if c.group == shown]
        return render(
            "index.html",
            cards=cards,
            filters=list(FILTERS),
            shown=shown,
            paused=site.store.flag("paused"),
            counts={name: sum(1 for t in tracks if t.state in s) for name, s in FILTERS.items()},
        )

    def card(request: Request) -> Response:
        track = track_or_404(request)
        if track is None:
            return PlainTextResponse("", 404)
        return render("card.html", card=card_of(track, site.live.progress(track.id)))

    def track_page(request: Request) -> Response:
        track = track_or_404(request)
        if track is None:
            return render("missing.html", 404)
        return render(
            "track.html",
            card=card_of(track, site.live.progress(track.id)),
            history=history_of(track),
            checklist=checklist(track, utcnow()),
            peaks=read_peaks(built_dir(site.state_dir, track.id)),
            audio_path=track.audio_path,
            sidecar_path=track.sidecar_path,
        )

    def built_file(kind: str) -> Any:
        def serve(request: Request) -> Response:
            track = track_or_404(request)
            path = getattr(track, f"{kind}_path", None) if track else None
            if not path:
                return PlainTextResponse("", 404)
            file = Path(path)
            # Only the track's own built files: a record naming a path elsewhere (an old
            # store, a hand edit) never makes this a way to read other files.
            if track is None or not file.resolve().is_relative_to(
                built_dir(site.state_dir, track.id).resolve()
            ):
                return PlainTextResponse("", 404)
            if not file.is_file():
                return PlainTextResponse("", 404)
            return FileResponse(file, headers={"Cache-Control": "no-cache"})

        return serve

    async def account(_request: Request) -> HTMLResponse:
        info = await run_in_threadpool(site.account.status)
        return render("account.html", account=info)

    async def events(_request: Request) -> EventSourceResponse:
        return EventSourceResponse(site.live.stream(), ping=PING_SECONDS)

    async def command(request: Request) -> JSONResponse:
        name = str(request.path_params["name"])
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                return JSONResponse({"error": "the request is too large"}, 413)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return JSONResponse({"error": "the request is not JSON"}, 400)
        if not isinstance(body, dict) or name not in _ACTIONS:
            return JSONResponse({"error": f"unknown action {name}"}, 404)
        if name == "release" and body.get("at"):
            body = {**body, "at": str(body["at"])}
        try:
            said = await run_in_threadpool(site.act, name, body)
        except ActionRefused as exc:
            return JSONResponse({"error": str(exc)}, 409)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, 400)
        return JSONResponse({"message": said})

    async def connect(_request: Request) -> JSONResponse:
        try:
            url = await run_in_threadpool(site.account.connect)
        except SoundCloudError as exc:
            return JSONResponse({"error": str(exc)}, 409)
        return JSONResponse({"url": url})

    async def disconnect(_request: Request) -> JSONResponse:
        try:
            signed_out = await run_in_threadpool(site.account.disconnect)
        except SoundCloudError as exc:
            return JSONResponse({"error": str(exc)}, 409)
        return JSONResponse({"message": "signed out" if signed_out else "forgotten locally"})

    app = Starlette(
        routes=[
            Route("/login", login),
            Route("/", index),
            Route("/tracks/{track_id}", track_page),
            Route("/tracks/{track_id}/card", card),
            Route("/tracks/{track_id}/artwork", built_file("artwork")),
            Route("/tracks/{track_id}/preview", built_file("preview")),
            Route("/account", account),
            Route("/events", events),
            Route("/actions/connect", connect, methods=["POST"]),
            Route("/actions/disconnect", disconnect, methods=["POST"]),
            Route("/actions/{name}", command, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
    )
    return Guard(app, site.access)


# The commands a page may run; `show` and `reload` are the CLI's alone.
_ACTIONS = frozenset({"retry", "release", "remove", "pause", "resume"})
