"""The daemon's configuration: the model (which is also the documentation), discovery and loading."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from releaseosd.model.sidecar import SidecarDefaults
from releaseosd.model.yamlfile import FileProblems, Problem, load_model

APP_NAME = "releaseosd"
ENV_CONFIG = "RELEASEOSD_CONFIG"
DEFAULT_DESCRIPTION_TEMPLATE = "Created with Release OS\nBPM: {bpm}\nKey: {key}"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _expand(value: Any, info: ValidationInfo) -> Any:
    """Paths accept ~ and $VARS; relative ones are relative to the config file, not the cwd."""
    if value is None:
        return None
    path = Path(os.path.expandvars(os.path.expanduser(str(value))))
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


class WatchFolder(StrictModel):
    path: Path = Field(description="A folder your DAW exports into.")
    recursive: bool = Field(True, description="Also watch every folder below it.")
    polling: bool = Field(
        False,
        description="Poll instead of using OS events; needed for network shares (SMB/NFS), "
        "where inotify and FSEvents see nothing.",
    )

    _expand_path = field_validator("path", mode="before")(_expand)


class SoundCloudConfig(StrictModel):
    client_id: str = Field(
        "", description="Your SoundCloud app's client id (the secret lives in the keyring)."
    )
    api_url: str = Field("https://api.soundcloud.com", description="SoundCloud API base URL.")
    auth_url: str = Field("https://secure.soundcloud.com", description="SoundCloud OAuth base URL.")
    redirect_uri: str = Field(
        "http://localhost:8765/callback",
        description="Redirect URI registered with your SoundCloud app; must be a loopback http URL.",
    )

    @field_validator("api_url", "auth_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("redirect_uri")
    @classmethod
    def _loopback(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError(
                f"must be a loopback address such as http://localhost:8765/callback, got {value!r}"
            )
        if parts.port is None:
            raise ValueError(
                f"must name a port, e.g. http://localhost:8765/callback, got {value!r}"
            )
        return value


class UploadsConfig(StrictModel):
    concurrency: int = Field(1, ge=1, le=8, description="How many uploads run at once.")
    max_attempts: int = Field(
        10,
        ge=1,
        le=1000,
        description="Failed attempts (SoundCloud reachable) before a track is 'failed'.",
    )
    backoff_base_seconds: float = Field(
        30.0, gt=0, description="First retry delay; doubles each attempt."
    )
    backoff_max_seconds: float = Field(
        3600.0, gt=0, description="Longest delay between two attempts."
    )

    @model_validator(mode="after")
    def _ordered(self) -> UploadsConfig:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise ValueError(
                "backoff_max_seconds must be ≥ backoff_base_seconds "
                f"({self.backoff_max_seconds} < {self.backoff_base_seconds})"
            )
        return self


class DefaultsConfig(SidecarDefaults):
    sharing: Literal["public", "private"] = Field(
        "private", description="Sharing for tracks whose sidecar does not say."
    )
    description_template: str = Field(
        DEFAULT_DESCRIPTION_TEMPLATE,
        description="Appended to each description. Placeholders: {title} {artist} {bpm} {key} "
        "{genre} {release} {label} {isrc}; a line whose placeholder has no value is left out.",
    )


class PreviewConfig(StrictModel):
    length: float = Field(30.0, gt=0, le=600, description="Preview length in seconds.")
    start: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="Start in seconds, or 'auto' for the loudest part of the track."
    )
    bitrate: int = Field(192, ge=32, le=320, description="MP3 bitrate in kbit/s.")
    fade_in: float = Field(0.5, ge=0, le=10, description="Fade-in seconds.")
    fade_out: float = Field(1.5, ge=0, le=10, description="Fade-out seconds.")


_COLOUR = re.compile(r"^#([0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")


class ArtworkConfig(StrictModel):
    size: int = Field(1400, ge=800, le=4000, description="Square artwork edge in pixels.")
    background: str = Field("#111318", description="Background colour (#rrggbb).")
    foreground: str = Field("#ff5500", description="Waveform colour (#rrggbb).")
    style: Literal["bars", "mirror", "line"] = Field(
        "bars", description="How the waveform is drawn."
    )
    bars: int = Field(120, ge=16, le=1000, description="Number of bars across the image.")

    @field_validator("background", "foreground")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError(f"must be a colour written #rrggbb (e.g. #ff5500), got {value!r}")
        return value


class NotificationsConfig(StrictModel):
    released: bool = Field(True, description="A track went public.")
    uploaded: bool = Field(True, description="A track was uploaded (privately, or scheduled).")
    failed: bool = Field(True, description="A track failed and needs you.")
    needs_login: bool = Field(
        True, description="SoundCloud login expired; run 'releaseosd auth login'."
    )


LOOPBACK_HOSTS = ("127.0.0.1", "::1")


class DashboardConfig(StrictModel):
    enabled: bool = Field(True, description="Serve the dashboard (releaseosd ui opens it).")
    port: int = Field(8766, ge=0, le=65535, description="Its port on 127.0.0.1 and ::1.")
    bind: list[str] = Field(
        default_factory=lambda: list(LOOPBACK_HOSTS),
        description="Addresses to listen on. Only loopback ones unless allow_non_loopback.",
    )
    allow_non_loopback: bool = Field(
        False,
        description="Let `bind` name an address other machines can reach. Anyone who can "
        "reach it and learns the secret controls your releases: leave this off.",
    )


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


class Config(StrictModel):
    watch: list[WatchFolder] = Field(default_factory=list, description="Folders to watch.")
    stable_seconds: float = Field(
        2.0, gt=0, le=3600, description="How long a file must be unchanged to count as complete."
    )
    state_dir: Path = Field(
        default_factory=default_state_dir, description="Where the store, previews and artwork live."
    )
    soundcloud: SoundCloudConfig = Field(default_factory=SoundCloudConfig)
    uploads: UploadsConfig = Field(default_factory=UploadsConfig)
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    preview: PreviewConfig = Field(default_factory=PreviewConfig)
    artwork: ArtworkConfig = Field(default_factory=ArtworkConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    _expand_state_dir = field_validator("state_dir", mode="before")(_expand)

    @field_validator("watch")
    @classmethod
    def _distinct(cls, folders: list[WatchFolder]) -> list[WatchFolder]:
        seen: set[Path] = set()
        for folder in folders:
            if folder.path in seen:
                raise ValueError(f"{folder.path} is listed twice")
            seen.add(folder.path)
        return folders

    def watch_root_of(self, path: Path) -> Path | None:
        """The watched folder an export lies in (resolved), or None.

        A file counts as inside a folder when it is there by name, or when the folder it sits in
        resolves inside it (a watch folder reached through a symlink); where the file itself
        resolves to is for `outside_its_root` to judge.
        """
        absolute = path.absolute()
        for folder in self.watch:
            if absolute.is_relative_to(folder.path.absolute()):
                return folder.path.resolve()
        parent = absolute.parent.resolve()
        for folder in self.watch:
            root = folder.path.resolve()
            if parent.is_relative_to(root):
                return root
        return None

    def root_for(self, path: Path, recorded: str | None = None) -> Path:
        """The folder an export's sidecar, artwork and links must stay inside, never none: its
        watched folder; else the root its track was `recorded` with, while it lies there (a
        folder dropped from the config by a reload keeps bounding the tracks found in it); else
        (`releaseosd upload` or `build` of a file outside every watched folder) its own folder.
        """
        root = self.watch_root_of(path)
        if root is not None:
            return root
        absolute = path.absolute()
        if recorded and absolute.is_relative_to(recorded):
            return Path(recorded)
        return absolute.parent.resolve()


def outside_its_root(path: Path, root: Path) -> str | None:
    """Why an export must not be read, or None: a symlink (or a hard path through one) that
    resolves outside its watch folder would upload a file nobody put there; a shared or synced
    folder must not be a way to publish a private file."""
    real = path.resolve()
    if real.is_relative_to(root):
        return None
    return (
        f"{path}: is a link to {real}, outside the watched folder {root}; releaseosd uploads only "
        "files inside its watch folders. Copy the file here instead of linking it."
    )


def rehearsal_state_dir(config: Config) -> Path:
    """`run --sandbox` keeps its tracks apart: a rehearsed upload must never look like a real one."""
    return config.state_dir / "rehearsal"


def config_path(explicit: Path | None = None) -> Path:
    """--config, else $RELEASEOSD_CONFIG, else the platform's user config dir."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.yaml"


def load_config(explicit: Path | None = None) -> tuple[Config, Path, bool]:
    """Load the effective config; returns (config, path, whether the file exists).

    A missing file is fine only where nobody asked for it: an explicit --config or
    $RELEASEOSD_CONFIG that points nowhere is a mistake worth stopping for.
    """
    path = config_path(explicit)
    asked = explicit is not None or bool(os.environ.get(ENV_CONFIG))
    if not path.exists():
        if asked:
            raise FileProblems([Problem(path, None, "", "config file not found")])
        return Config(), path, False
    config = load_model(Config, path, max_bytes=1024 * 1024, context={"base_dir": path.parent})
    return config, path, True


def effective_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain data, secrets masked, for `config show`."""

    def mask(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "********" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {k: mask(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, list):
            return [mask(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return mask(config)  # type: ignore[no-any-return]
