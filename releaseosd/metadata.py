"""A track's effective metadata: sidecar over folder defaults over config defaults over the audio's
own tags, and the description with its template (how bpm and key reach listeners, since
SoundCloud's API has no fields for them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from releaseosd.config import DefaultsConfig
from releaseosd.sidecar import Sidecar, SidecarDefaults

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_TEMPLATE_FIELDS = ("title", "artist", "bpm", "key", "genre", "release", "label", "isrc")


def effective(
    defaults: DefaultsConfig,
    sidecar: Sidecar,
    audio: Path,
    audio_tags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain JSON-able metadata, every field resolved; None where nobody said anything."""
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
    meta["description"] = describe(meta, defaults.description_template)
    return meta


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
