"""SoundCloud's tag_list: space-separated tags, multi-word tags in double quotes, machine tags.

releaseosd appends one machine tag (`releaseosd:sha256=<16 hex>`) to every upload. SoundCloud does
not show machine tags on track pages, and it lets an interrupted upload be found again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MACHINE_NAMESPACE = "releaseosd"
_MACHINE_PREFIX = f"{MACHINE_NAMESPACE}:sha256="
_HEX_RE = re.compile(r"^[0-9a-fA-F]{16,}$")
# Straight quotes are the syntax; the spec's own example also shows typographic ones.
_TOKEN_RE = re.compile(r'"([^"]*)"|“([^”]*)”|(\S+)')


def machine_tag(sha256: str) -> str:
    """The machine tag that marks an upload of the file with this SHA-256."""
    if not _HEX_RE.match(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"{_MACHINE_PREFIX}{sha256[:16].lower()}"


def format_tag_list(tags: Iterable[str], machine: str | None = None) -> str:
    """SoundCloud's tag_list text: duplicates (ignoring case) dropped, multi-word tags quoted."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in [*tags, *([machine] if machine else [])]:
        tag = " ".join(raw.replace('"', "").replace("“", "").replace("”", "").split())
        if not tag or tag.casefold() in seen:
            continue
        seen.add(tag.casefold())
        out.append(f'"{tag}"' if " " in tag else tag)
    return " ".join(out)


def parse_tag_list(text: str | None) -> list[str]:
    """The tags in a tag_list, quotes removed."""
    if not text:
        return []
    tags: list[str] = []
    for match in _TOKEN_RE.finditer(text):
        tag = next(group for group in match.groups() if group is not None).strip()
        if tag:
            tags.append(tag)
    return tags


def has_machine_tag(tag_list: str | None, sha256: str) -> bool:
    wanted = machine_tag(sha256)
    return any(tag.lower() == wanted for tag in parse_tag_list(tag_list))
