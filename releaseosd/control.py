"""How the CLI reaches the track list: through the running daemon, else the store directly."""

from __future__ import annotations

from typing import Any

from releaseosd.config import Config
from releaseosd.store import STORE_FILE, AtomicJSONStorage
from releaseosd.track import Track


def read_rows(config: Config) -> list[dict[str, Any]]:
    """Status rows, oldest first. Reading is safe without the owner lock: the store file is only
    ever replaced whole, so a reader sees one complete version."""
    data = AtomicJSONStorage(config.state_dir / STORE_FILE).read() or {}
    tracks = [Track.model_validate(doc) for doc in (data.get("tracks") or {}).values()]
    tracks.sort(key=lambda t: t.created_at)
    return [t.status_row() for t in tracks]
