"""A track's effective metadata: sidecar over folder defaults over config defaults over the audio's
own tags, and the description with its template (how bpm and key reach listeners, since
SoundCloud's API has no fields for them)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from releaseosd.model.config import Config, DefaultsConfig
from releaseosd.model.localtime import local_date
from releaseosd.model.sidecar import Sidecar, SidecarDefaults
from releaseosd.model.track import Track

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_TEMPLATE_FIELDS = ("title", "artist", "bpm", "key", "genre", "release", "label", "isrc")


def effective(
    defaults: DefaultsConfig,
    sidecar: Sidecar,
    audio: Path,
    audio_tags: dict[str, Any] | None = None,
    user_release: dt.datetime | None = None,
) -> dict[str, Any]:
    """Plain JSON-able metadata, every field resolved; None where nobody said anything.

    `user_release` is a `releaseosd release --now/--at` time: it wins over the sidecar's
    release_at, so it sets the display date too, unless the sidecar gave one of its own.
    """
    tags = {k: v for k, v in (audio_tags or {}).items() if v not in (None, "")}
    meta: dict[str, Any] = {name: None for name in Sidecar.model_fields}
    for name in SidecarDefaults.model_fields:
        meta[name] = getattr(defaults, name)
    # The file's own tags are more specific than config defaults; the sidecar beats both.
    for name in ("artist", "genre", "bpm", "key"):
        if name in tags:
            meta[name] = tags[name]
    meta.update(sidecar.model_dump(mode="json", exclude_none=True))
    if not meta.get("title"):
        meta["title"] = tags.get("title") or audio.stem
    if meta.get("sharing") is None:
        meta["sharing"] = defaults.sharing
    if user_release is not None:
        meta["release_date"] = release_date(sidecar, user_release)
    meta["description"] = describe(meta, defaults.description_template)
    return meta


def release_date(sidecar: Sidecar | None, user_release: dt.datetime) -> str:
    """The display date of a track the producer set a release time for: the sidecar's own
    release_date if it wrote one, else the producer's local date of that time."""
    if sidecar is not None and "release_date" in sidecar.model_fields_set and sidecar.release_date:
        return sidecar.release_date.isoformat()
    return local_date(user_release).isoformat()


def _display(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fill(line: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: _display(values[m.group(1)]), line)


def describe(meta: dict[str, Any], template: str) -> str:
    """The sidecar's description, then the template; template lines missing a value are dropped."""
    lines: list[str] = []
    for line in template.splitlines():
        names = _PLACEHOLDER.findall(line)
        values = {n: meta.get(n) for n in names if n in _TEMPLATE_FIELDS}
        if any(values.get(n) in (None, "") for n in names):
            continue
        lines.append(_fill(line, values))
    own = (meta.get("description") or "").strip()
    rendered = "\n".join(lines).strip()
    if own and rendered:
        return f"{own}\n\n{rendered}"
    return own or rendered


def stored_sidecar(track: Track) -> Sidecar | None:
    """The sidecar a record was last given (as the producer wrote it: the fields they left out
    stay unset)."""
    return Sidecar.model_validate(track.sidecar) if track.sidecar is not None else None


def defaults_for(track: Track, config: Config) -> DefaultsConfig:
    """The config defaults a track's metadata is made with: those it went up with, once on
    SoundCloud (changing `defaults:` later must not rewrite released tracks), else today's."""
    if track.soundcloud.defaults is not None:
        return DefaultsConfig.model_validate(track.soundcloud.defaults)
    return config.defaults


def metadata_for(track: Track, config: Config, sidecar: Sidecar, audio: Path) -> dict[str, Any]:
    """A track's effective metadata: the one place its sidecar, the defaults, the audio's own
    tags and a `releaseosd release` time meet."""
    tags = (track.probe or {}).get("tags") or {}
    return effective(defaults_for(track, config), sidecar, audio, tags, track.user_release)
