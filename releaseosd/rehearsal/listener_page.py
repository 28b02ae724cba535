"""The sandbox's track pages: what a listener would see at a rehearsed track's permalink (its
title, artwork, a player, description, tags and sharing), so that a new user who clicks "On
SoundCloud" in the dashboard or a notification sees their track, not a JSON 404.

A private track's page opens only under its secret link (`<permalink>/s-<token>`), as on
SoundCloud; its artwork and audio are served with the same token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)

# The request log's name for what a browser asks of these pages (no API route matches them).
LISTENER_TEMPLATE = "listener page"

PAGE_CSP = (
    "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class ListenerTrack:
    id: int
    title: str
    artist: str
    description: str
    genre: str | None
    tags: list[str]
    sharing: str
    state: str
    has_artwork: bool
    secret: str  # "s-…": the private link's token
    url: str


def _tags(tag_list: str) -> list[str]:
    """SoundCloud's tag_list as listeners see it: quoted tags with spaces, no machine tags."""
    found = [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', tag_list or "")]
    return [t for t in found if t and ":" not in t and "=" not in t]


def page(track: ListenerTrack) -> bytes:
    query = f"?s={track.secret}" if track.sharing == "private" else ""
    return (
        _ENV.get_template("listener.html")
        .render(
            t=track,
            artwork=f"/_listen/{track.id}/artwork{query}",
            audio=f"/_listen/{track.id}/audio{query}",
        )
        .encode("utf-8")
    )


def not_found(what: str) -> bytes:
    return _ENV.get_template("missing.html").render(what=what).encode("utf-8")


def listener_track(rendered: dict[str, Any], secret: str, has_artwork: bool) -> ListenerTrack:
    """From the track as the sandbox's API shows it."""
    user = rendered.get("user") or {}
    return ListenerTrack(
        id=int(rendered["id"]),
        title=str(rendered.get("title") or ""),
        artist=str(user.get("username") or ""),
        description=str(rendered.get("description") or ""),
        genre=rendered.get("genre"),
        tags=_tags(str(rendered.get("tag_list") or "")),
        sharing=str(rendered.get("sharing") or "public"),
        state=str(rendered.get("state") or ""),
        has_artwork=has_artwork,
        secret=f"s-{secret}",
        url=str(rendered.get("permalink_url") or ""),
    )
