"""Which files are audio exports: the formats releaseosd probes, previews and uploads."""

from __future__ import annotations

from pathlib import Path

AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".aif", ".aiff", ".flac", ".mp3", ".ogg", ".oga", ".m4a", ".aac"}
)
LOSSLESS_SUFFIXES = frozenset({".wav", ".wave", ".aif", ".aiff", ".flac"})


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES
