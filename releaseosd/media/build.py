"""One track's ingest, without the store or the daemon: probe, hash, scan, artwork, preview."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from releaseosd.media.artwork import check_artwork, render_waveform
from releaseosd.media.ffmpeg import Ffmpeg, find_ffmpeg
from releaseosd.media.preview import PreviewTags, build_preview
from releaseosd.media.probe import AudioInfo, probe
from releaseosd.media.waveform import scan
from releaseosd.model.config import Config
from releaseosd.model.metadata import effective
from releaseosd.model.sidecar import Sidecar
from releaseosd.model.store import replace_file

PREVIEW_NAME = "preview.mp3"
ARTWORK_STEM = "artwork"
# The waveform's bars (0..1), for the dashboard's track page: drawn again, never re-decoded.
WAVEFORM_NAME = "waveform.json"


@dataclass(frozen=True)
class BuiltAssets:
    info: AudioInfo
    sha256: str  # of the audio file's bytes
    audio_digest: str  # of the decoded samples: the same music under other tags has the same one
    preview: Path
    preview_sha256: str
    artwork: Path
    artwork_source: Literal["waveform", "sidecar"]
    loudest_start: float
    preview_start: float
    title: str
    warnings: tuple[str, ...] = ()  # worth telling the producer, not worth refusing the track


def build_shape(sidecar: Sidecar | None) -> str:
    """What of a sidecar the preview and artwork are made from, as a digest: an edit that leaves
    it alone needs no rebuild."""
    if sidecar is None:
        return ""
    shaping = sidecar.model_dump(
        mode="json", include={"preview", "artwork", "title", "artist", "genre", "bpm", "key"}
    )
    return hashlib.sha256(repr(sorted(shaping.items())).encode()).hexdigest()[:16]


def artwork_shows(sidecar: Sidecar) -> tuple[str, str | None]:
    """What the artwork is made from: the sidecar's image, or a waveform with the title on it."""
    if sidecar.artwork is not None:
        return ("image", str(sidecar.artwork))
    return ("waveform", sidecar.title)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as `sha256sum` prints it."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def content_digests(audio: Path, ffmpeg: Ffmpeg | None = None) -> tuple[str, str]:
    """(sha256 of the bytes, digest of the decoded samples) of an export, without building
    anything: to tell whether a re-saved file holds other audio than the one uploaded."""
    info = probe(audio)
    hasher, content = hashlib.sha256(), hashlib.sha256()
    scan(audio, info, 16, 1.0, ffmpeg or find_ffmpeg(), hasher, content)
    return hasher.hexdigest(), content.hexdigest()


def preview_start(
    requested: float | Literal["auto"], loudest: float, duration: float, length: float
) -> float:
    """Where the preview starts: the request, or the loudest window for 'auto', kept in the track."""
    start = loudest if requested == "auto" else float(requested)
    return round(min(max(start, 0.0), max(duration - length, 0.0)), 3)


def _write_peaks(peaks: tuple[float, ...], out: Path) -> None:
    replace_file(out, json.dumps([round(p, 3) for p in peaks]).encode())


def read_peaks(built: Path) -> list[float] | None:
    """The waveform bars a build wrote into its folder; None for a build from before they were
    kept, or a file that is not what a build writes."""
    try:
        peaks = json.loads((built / WAVEFORM_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(peaks, list) or not all(isinstance(p, int | float) for p in peaks):
        return None
    return [min(max(float(p), 0.0), 1.0) for p in peaks[:2000]]


def _copy_artwork(source: Path, out_dir: Path) -> Path:
    target = out_dir / f"{ARTWORK_STEM}{source.suffix.lower()}"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as dst, source.open("rb") as src:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def build_assets(
    audio: Path,
    sidecar: Sidecar,
    config: Config,
    out_dir: Path,
    ffmpeg: Ffmpeg | None = None,
) -> BuiltAssets:
    """Probe `audio`, then write its preview MP3 and artwork into `out_dir`.

    Raises AudioProblem (AudioIncomplete: wait and re-check), ArtworkProblem for unusable sidecar
    artwork, PreviewProblem when encoding fails, FfmpegMissing when there is no ffmpeg.
    """
    ffmpeg = ffmpeg or find_ffmpeg()
    info = probe(audio)
    spec = sidecar.preview
    length = spec.length if spec is not None and spec.length is not None else config.preview.length
    requested = spec.start if spec is not None and spec.start is not None else config.preview.start

    # Supplied artwork is checked before the long part, so a bad image fails fast.
    notes = check_artwork(sidecar.artwork) if sidecar.artwork is not None else []

    hasher, content = hashlib.sha256(), hashlib.sha256()
    waveform = scan(audio, info, config.artwork.bars, length, ffmpeg, hasher, content)
    # What the preview's tags and the artwork show is what SoundCloud is told (metadata.py).
    meta = effective(config.defaults, sidecar, audio, asdict(info.tags))
    title = str(meta["title"])

    out_dir.mkdir(parents=True, exist_ok=True)
    source: Literal["waveform", "sidecar"]
    if sidecar.artwork is not None:
        artwork = _copy_artwork(sidecar.artwork, out_dir)
        source = "sidecar"
    else:
        artwork = render_waveform(waveform, config.artwork, out_dir / f"{ARTWORK_STEM}.png", title)
        source = "waveform"

    _write_peaks(waveform.peaks, out_dir / WAVEFORM_NAME)
    duration = min(info.duration, waveform.duration)
    start = preview_start(requested, waveform.loudest_start, duration, length)
    tags = PreviewTags(
        title=title,
        artist=meta.get("artist"),
        genre=meta.get("genre"),
        bpm=meta.get("bpm"),
        key=meta.get("key"),
    )
    preview_cfg = config.preview.model_copy(update={"length": length})
    preview = build_preview(
        audio, info, out_dir / PREVIEW_NAME, start, preview_cfg, tags, artwork, ffmpeg
    )
    return BuiltAssets(
        info=info,
        sha256=hasher.hexdigest(),
        audio_digest=content.hexdigest(),
        preview=preview,
        preview_sha256=file_sha256(preview),
        artwork=artwork,
        artwork_source=source,
        loudest_start=waveform.loudest_start,
        preview_start=start,
        title=title,
        warnings=tuple(notes),
    )
