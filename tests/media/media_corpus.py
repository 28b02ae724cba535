"""What the media tests generate: formats, tags, and the helpers that make and tag real files.

A module of its own (not conftest) so test files can import it unambiguously.
"""

from __future__ import annotations

import importlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from releaseosd.media.ffmpeg import Ffmpeg

SECONDS = 12.0
TAGS = {"title": "Night Drive", "artist": "DJ Test", "genre": "Techno", "bpm": 124.0, "key": "Am"}


@dataclass(frozen=True)
class Track:
    name: str
    path: Path
    format: str
    channels: int
    sample_rate: int
    bit_depth: int | None
    seconds: float


# name -> (suffix, probe format, ffmpeg output options, bit depth)
FORMATS: dict[str, tuple[str, str, list[str], int | None]] = {
    "wav16": (".wav", "wav", ["-c:a", "pcm_s16le"], 16),
    "wav24": (".wav", "wav", ["-c:a", "pcm_s24le"], 24),
    "wavf32": (".wav", "wav", ["-c:a", "pcm_f32le"], 32),
    "aiff": (".aiff", "aiff", ["-c:a", "pcm_s16be"], 16),
    "flac": (".flac", "flac", ["-c:a", "flac", "-sample_fmt", "s16"], 16),
    "mp3": (".mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "192k"], None),
    "ogg": (".ogg", "ogg", ["-c:a", "libvorbis", "-q:a", "4"], None),
    "m4a": (".m4a", "m4a", ["-c:a", "aac", "-b:a", "160k"], None),
}


def run_ffmpeg(ff: Ffmpeg, *args: str) -> None:
    subprocess.run(
        [str(ff.ffmpeg), "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        capture_output=True,
    )


def mutagen_module(name: str) -> Any:
    """A mutagen submodule as Any: mutagen's API is untyped."""
    return importlib.import_module(f"mutagen.{name}")


def mp3_file(path: Path) -> Any:
    return mutagen_module("mp3").MP3(path)


def tag_file(path: Path, fmt: str) -> None:
    """Write TAGS the way each format carries them (ID3 frames, Vorbis comments, MP4 atoms)."""

    if fmt in ("wav", "aiff", "mp3"):
        cls: Any = {
            "wav": mutagen_module("wave").WAVE,
            "aiff": mutagen_module("aiff").AIFF,
            "mp3": mutagen_module("mp3").MP3,
        }[fmt]
        audio = cls(path)
        if audio.tags is None:
            audio.add_tags()
        id3 = mutagen_module("id3")
        audio.tags.add(id3.TIT2(encoding=3, text=TAGS["title"]))
        audio.tags.add(id3.TPE1(encoding=3, text=TAGS["artist"]))
        audio.tags.add(id3.TCON(encoding=3, text=TAGS["genre"]))
        audio.tags.add(id3.TBPM(encoding=3, text="124"))
        audio.tags.add(id3.TKEY(encoding=3, text=TAGS["key"]))
        audio.save()
    elif fmt in ("flac", "ogg"):
        vorbis: Any = (
            mutagen_module("flac").FLAC(path)
            if fmt == "flac"
            else mutagen_module("oggvorbis").OggVorbis(path)
        )
        vorbis["TITLE"] = TAGS["title"]
        vorbis["ARTIST"] = TAGS["artist"]
        vorbis["GENRE"] = TAGS["genre"]
        vorbis["BPM"] = "124"
        vorbis["KEY"] = TAGS["key"]
        vorbis.save()
    else:
        mp4: Any = mutagen_module("mp4").MP4(path)
        mp4["\xa9nam"] = TAGS["title"]
        mp4["\xa9ART"] = TAGS["artist"]
        mp4["\xa9gen"] = TAGS["genre"]
        mp4["tmpo"] = [124]
        mp4["----:com.apple.iTunes:initialkey"] = mutagen_module("mp4").MP4FreeForm(b"Am")
        mp4.save()
