"""The small interface the pipeline talks to SoundCloud through: find a copy, upload, read its
status, change it (sharing, fields), delete it, playlists. `SoundCloudClient` is the one
implementation (the rehearsal points it at the sandbox); the stages know only this, and the
failures in soundcloud/errors.py it raises."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from releaseosd.soundcloud.client import Progress, Sharing, TrackFields


class Remote(Protocol):
    def copies_of(self, digests: list[str]) -> list[dict[str, Any]]:
        """The copies on SoundCloud whose machine tag names one of these digests."""
        ...

    def check_quota(self, duration_seconds: float | None = None) -> dict[str, Any]: ...

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
    ) -> dict[str, Any]: ...

    def get_track(self, urn: str) -> dict[str, Any]: ...

    def update_track(self, urn: str, changes: dict[str, Any]) -> dict[str, Any]: ...

    def delete_track(self, urn: str) -> bool: ...

    def find_playlist(self, title: str) -> dict[str, Any] | None: ...

    def create_playlist(
        self,
        title: str,
        sharing: Sharing,
        track_urns: list[str],
        set_type: Literal["playlist", "album"] = "playlist",
    ) -> dict[str, Any]: ...

    def add_to_playlist(self, playlist_urn: str, track_urn: str) -> dict[str, Any]: ...
