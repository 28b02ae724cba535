"""Sidecars: the YAML a producer writes beside an export, folder defaults, and the JSON Schema.

A track is `Night Drive.wav` plus `Night Drive.yaml` (or `.yml`); `release.yaml` in the same folder
gives defaults for every track there, and the track's own sidecar wins.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from releaseosd.model.localtime import check_year, explicit, local_date
from releaseosd.model.yamlfile import (
    FileProblems,
    LineMap,
    Problem,
    parse_yaml,
    read_text,
    validate,
)

MAX_SIDECAR_BYTES = 64 * 1024
SIDECAR_SUFFIXES = (".yaml", ".yml")
FOLDER_DEFAULTS_NAMES = ("release.yaml", "release.yml")

# SoundCloud's own enum (openapi.yaml, TrackDataRequest 'track[license]').
License = Literal[
    "no-rights-reserved",
    "all-rights-reserved",
    "cc-by",
    "cc-by-nc",
    "cc-by-nd",
    "cc-by-sa",
    "cc-by-nc-nd",
    "cc-by-nc-sa",
]

_KEY_RE = re.compile(
    r"^([A-Ga-g])([#b♯♭]?)\s*(m|min|minor|maj|major|dorian|phrygian|lydian|mixolydian|locrian)?$"
)
_CAMELOT_RE = re.compile(r"^(1[0-2]|[1-9])[ABab]$")
_ISRC_RE = re.compile(r"^[A-Z]{2}-?[A-Z0-9]{3}-?[0-9]{2}-?[0-9]{5}$")
_PERMALINK_RE = r"^[a-z0-9][a-z0-9_-]*$"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")
_PLAYLIST_NAME: dict[str, str | int] = {"type": "string", "minLength": 1, "maxLength": 100}
# JSON Schema's "date-time" format is RFC 3339, which needs seconds and an offset: editors that
# check formats would flag `release_at: 2026-12-04T18:00`, local time, which releaseosd accepts.
_RELEASE_AT_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt _]([01][0-9]|2[0-3]):[0-5][0-9]"
    r"(:[0-5][0-9]([.,][0-9]+)?)?([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?$"
)


class PreviewSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Annotated[float, Field(ge=0)] | Literal["auto"] | None = Field(
        None, description="Where the preview starts, in seconds, or 'auto' for the loudest part."
    )
    length: float | None = Field(None, gt=0, le=600, description="Preview length in seconds.")


class SidecarDefaults(BaseModel):
    """Fields that may also come from the config's `defaults:` or a folder's release.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    artist: str | None = Field(
        None, max_length=200, description="Artist name (ID3 tag of the preview)."
    )
    genre: str | None = Field(None, max_length=100, description="SoundCloud genre, e.g. 'Techno'.")
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=30, description="Tags; multi-word tags are fine."
    )
    label: str | None = Field(None, max_length=200, description="Record label name.")
    release: str | None = Field(None, max_length=200, description="Release (EP/album) name.")
    sharing: Literal["public", "private"] | None = Field(
        None, description="'public' or 'private' once released."
    )
    license: License | None = Field(None, description="SoundCloud license.")
    downloadable: bool | None = Field(None, description="Allow downloads.")
    streamable: bool | None = Field(None, description="Allow streaming.")
    commentable: bool | None = Field(None, description="Allow comments.")
    quiet: bool | None = Field(None, description="Quiet mode: hide play counts and comments.")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_are_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError('must be a list, e.g. [techno, "late night"], not one string')
        return value

    @field_validator("tags")
    @classmethod
    def _no_quotes(cls, tags: list[str] | None) -> list[str] | None:
        for tag in tags or []:
            if '"' in tag:
                raise ValueError(f"tag {tag!r} must not contain double quotes")
        return tags


class Sidecar(SidecarDefaults):
    title: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Track title (default: the audio's title tag, else the file name).",
    )
    description: str | None = Field(None, max_length=4000, description="Track description.")
    bpm: float | None = Field(
        None, gt=0, le=999, description="Tempo; shown in the description and ID3 tags."
    )
    key: str | None = Field(
        None, max_length=20, description="Musical key, e.g. 'F# minor', 'Am' or '8A'."
    )
    isrc: str | None = Field(None, description="ISRC code, e.g. GB-ABC-26-00001.")
    release_at: dt.datetime | None = Field(
        None,
        description="When the track goes public (ISO 8601; without an offset it is local time). "
        "It is uploaded privately before then.",
    )
    release_date: dt.date | None = Field(
        None, description="Display release date (default: the date of release_at)."
    )
    upload: Literal["full", "preview"] | None = Field(
        None, description="Upload the full track (default) or only the preview."
    )
    preview: PreviewSpec | None = Field(None, description="Preview start and length.")
    artwork: Path | None = Field(
        None, description="Artwork image (PNG/JPEG), relative to the sidecar; default: a waveform."
    )
    playlist: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None,
        description="Playlist name, or a list of names, to add the track to.",
        # The model stores a list, but a sidecar may give one name (see _one_or_many).
        json_schema_extra={
            "anyOf": [
                dict(_PLAYLIST_NAME),
                {"type": "array", "items": dict(_PLAYLIST_NAME)},
                {"type": "null"},
            ]
        },
    )
    permalink: str | None = Field(
        None, pattern=_PERMALINK_RE, max_length=255, description="URL slug, e.g. night-drive."
    )

    @field_validator("bpm", mode="before")
    @classmethod
    def _bpm_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, e.g. 124")
        return value

    @field_validator("key")
    @classmethod
    def _musical_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not (_KEY_RE.match(value) or _CAMELOT_RE.match(value)):
            raise ValueError(f"{value!r} is not a musical key; write e.g. 'F# minor', 'Am' or '8A'")
        return value

    @field_validator("isrc")
    @classmethod
    def _isrc(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        if not _ISRC_RE.match(value):
            raise ValueError(f"{value!r} is not an ISRC; it looks like GB-ABC-26-00001")
        return value.replace("-", "")

    @field_validator("release_at", mode="before")
    @classmethod
    def _datetime_with_time(cls, value: Any) -> Any:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            raise ValueError(
                f"needs a time as well as a date, e.g. {value.isoformat()}T18:00 (local time)"
            )
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            raise ValueError(
                f"needs a time as well as a date, e.g. {value.strip()}T18:00 (local time)"
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("must be a date and time such as 2026-12-01T18:00, not a number")
        return value

    @field_validator("release_at")
    @classmethod
    def _local_if_naive(cls, value: dt.datetime | None) -> dt.datetime | None:
        # Producers write the time on their wall clock; store it with that offset made explicit.
        if value is None:
            return None
        check_year(value)
        return explicit(value)

    @field_validator("playlist", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("artwork", mode="before")
    @classmethod
    def _artwork_inside(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a path to an image file, relative to the sidecar")
        context = info.context or {}
        base: Path | None = context.get("sidecar_dir")
        root: Path | None = context.get("watch_root")
        path = Path(value).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if path.suffix.lower() not in _IMAGE_SUFFIXES:
            raise ValueError(f"{value!r} must be a PNG or JPEG image")
        if base is None:
            return path
        if not path.is_file():
            raise ValueError(f"{value!r} not found (looked for {path})")
        resolved = path.resolve()
        if root is not None and not resolved.is_relative_to(root.resolve()):
            raise ValueError(
                f"{value!r} resolves to {resolved}, outside the watched folder {root}; "
                "copy the image next to the sidecar"
            )
        return resolved

    @model_validator(mode="after")
    def _release_date_default(self) -> Sidecar:
        if self.release_date is None and self.release_at is not None:
            object.__setattr__(self, "release_date", local_date(self.release_at))
        return self


def sidecar_for(audio: Path) -> Path | None:
    """The sidecar that belongs to an audio file, if one exists."""
    for suffix in SIDECAR_SUFFIXES:
        candidate = audio.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def folder_defaults_for(folder: Path) -> Path | None:
    for name in FOLDER_DEFAULTS_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


class SidecarFiles(NamedTuple):
    """The files an export's metadata comes from: its own sidecar and its folder's defaults."""

    own: Path | None
    defaults: Path | None


def sidecar_files(audio: Path, explicit: Path | None = None) -> SidecarFiles:
    """An export's sidecar (`explicit`, else the one of its name) and its folder's release.yaml."""
    return SidecarFiles(explicit or sidecar_for(audio), folder_defaults_for(audio.parent))


def load_track_sidecar(
    audio: Path,
    watch_root: Path,
    explicit: Path | None = None,
    files: SidecarFiles | None = None,
) -> Sidecar | None:
    """An export's sidecar merged over its folder's release.yaml, links and artwork held inside
    `watch_root` (Config.root_for); None when it has neither. `files` are the ones already found
    by `sidecar_files`. Raises FileProblems naming every problem in either file."""
    own, defaults = files or sidecar_files(audio, explicit)
    if own is None and defaults is None:
        return None
    return load_sidecar(own, watch_root=watch_root, folder_defaults=defaults)


def _load_one(path: Path, watch_root: Path | None) -> tuple[dict[str, Any], LineMap]:
    if watch_root is not None:
        real = path.resolve()
        if not real.is_relative_to(watch_root.resolve()):
            # Its text would go to SoundCloud: a link from a shared folder to a private file
            # must not publish what it says.
            raise FileProblems(
                [
                    Problem(
                        path,
                        None,
                        "",
                        f"is a link to {real}, outside the watched folder {watch_root}; copy the "
                        "sidecar here instead of linking it",
                    )
                ]
            )
    data, lines = parse_yaml(read_text(path, MAX_SIDECAR_BYTES), path)
    context = {"sidecar_dir": path.parent, "watch_root": watch_root}
    model = validate(Sidecar, data, path, lines, context)
    return model.model_dump(exclude_unset=True), lines


def load_sidecar(
    path: Path | None,
    watch_root: Path | None = None,
    folder_defaults: Path | None = None,
) -> Sidecar:
    """Load a track's sidecar merged over its folder's release.yaml.

    Each file is validated on its own first, so every error names the file it is in.
    Problems from both files are reported together.
    """
    merged: dict[str, Any] = {}
    problems: list[Problem] = []
    for source in (folder_defaults, path):
        if source is None:
            continue
        try:
            values, _ = _load_one(source, watch_root)
        except FileProblems as exc:
            problems.extend(exc.problems)
            continue
        merged.update(values)
    if problems:
        raise FileProblems(problems)
    # Already validated piece by piece; construct without re-resolving relative paths.
    return Sidecar.model_validate(merged)


def check_sidecar_file(path: Path, watch_root: Path | None = None) -> Sidecar:
    """Validate one sidecar (or release.yaml) on its own, for `releaseosd validate`."""
    defaults = (
        None if path.name.lower() in FOLDER_DEFAULTS_NAMES else folder_defaults_for(path.parent)
    )
    return load_sidecar(path, watch_root=watch_root, folder_defaults=defaults)


def json_schema() -> dict[str, Any]:
    schema = Sidecar.model_json_schema(mode="validation")
    for option in schema["properties"]["release_at"]["anyOf"]:
        if option.get("format") == "date-time":
            del option["format"]
            option["pattern"] = _RELEASE_AT_PATTERN
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/releaseos/releaseosd/config/sidecar.schema.json"
    schema["title"] = "releaseosd sidecar"
    schema["description"] = (
        "Metadata for one exported track: put 'Track Name.yaml' beside 'Track Name.wav'. "
        "A release.yaml in the same folder supplies defaults."
    )
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
