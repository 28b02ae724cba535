"""The preview MP3: a faded excerpt of the track, ID3-tagged with its title, tempo, key and artwork.

The excerpt is read straight from disk for WAV/AIFF and cut by ffmpeg with an input seek for the
rest, so the cost follows the preview's length and not the track's; pydub fades and encodes it.
pydub's own readers are bypassed on purpose: they decode whole files into memory, seek only after
decoding, and read 32-bit float WAVs as integers (noise).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from releaseosd.media.ffmpeg import Ffmpeg
from releaseosd.media.probe import AudioIncomplete, AudioInfo, AudioProblem, PcmLayout, pcm_layout
from releaseosd.media.waveform import full_scale, pcm_samples
from releaseosd.model.config import PreviewConfig

with warnings.catch_warnings():
    # pydub warns at import when ffmpeg is not on PATH (we point it at one) and audioop is
    # deprecated on 3.11+; neither is actionable here.
    warnings.simplefilter("ignore", RuntimeWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub import AudioSegment
    from pydub import audio_segment as _pydub_module
    from pydub.exceptions import CouldntEncodeError

_CHUNK_FRAMES = 1 << 16
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# pydub keeps its converter and temp-file factory in module globals; one preview at a time may
# change them.
_PYDUB_LOCK = threading.Lock()


class PreviewProblem(Exception):
    """The preview could not be made; the message names the file and what went wrong."""


@dataclass(frozen=True)
class PreviewTags:
    title: str
    artist: str | None = None
    genre: str | None = None
    bpm: float | None = None
    key: str | None = None


def _output_rate(rate: int) -> int:
    if rate in _MP3_RATES:
        return rate
    return 48000 if rate % 48000 == 0 or rate % 8000 == 0 else 44100


def _excerpt(
    path: Path, info: AudioInfo, start: float, length: float, ffmpeg: Ffmpeg
) -> AudioSegment:
    """`length` seconds from `start` as 16-bit PCM, mono or stereo, at a rate MP3 supports."""
    layout = pcm_layout(path) if info.format in ("wav", "aiff") else None
    if layout is not None and layout.channels <= 2 and layout.sample_rate in _MP3_RATES:
        return _excerpt_from_disk(path, layout, start, length)
    return _excerpt_from_ffmpeg(path, info, start, length, ffmpeg)


def _excerpt_from_disk(path: Path, layout: PcmLayout, start: float, length: float) -> AudioSegment:
    """Read the frames straight from an uncompressed file: no second ffmpeg process to start."""
    first = min(round(start * layout.sample_rate), layout.frames)
    count = min(round(length * layout.sample_rate), layout.frames - first)
    block = layout.block_align
    native = layout.encoding == "int" and layout.sample_width == 2 and layout.byte_order == "<"
    pcm = bytearray()
    scale = np.float32(32767.0 / full_scale(layout))
    with path.open("rb") as f:
        f.seek(layout.data_offset + first * block)
        left = count * block
        while left > 0:
            raw = f.read(min(_CHUNK_FRAMES * block, left))
            if len(raw) < block:
                raise AudioIncomplete(f"{path.name}: the file got shorter while it was read")
            raw = raw[: len(raw) - len(raw) % block]
            left -= len(raw)
            if native:
                pcm += raw
                continue
            samples = pcm_samples(memoryview(raw), layout).astype(np.float32) * scale
            pcm += np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
    return AudioSegment(
        data=bytes(pcm), sample_width=2, frame_rate=layout.sample_rate, channels=layout.channels
    )


def _excerpt_from_ffmpeg(
    path: Path, info: AudioInfo, start: float, length: float, ffmpeg: Ffmpeg
) -> AudioSegment:
    """Decode with an input seek, so ffmpeg skips (not decodes) everything before `start`."""
    channels = 1 if info.channels == 1 else 2
    rate = _output_rate(info.sample_rate)
    command = [
        str(ffmpeg.ffmpeg), "-nostdin", "-hide_banner", "-v", "error",
        "-ss", f"{start:.3f}", "-t", f"{length:.3f}", "-i", str(path),
        "-map", "0:a:0", "-ac", str(channels), "-ar", str(rate),
        "-f", "s16le", "-acodec", "pcm_s16le", "-flush_packets", "0", "pipe:1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1] if lines else "no audio came out"
        raise AudioProblem(f"{path.name}: ffmpeg could not decode the preview's part ({detail})")
    frame = 2 * channels
    pcm = result.stdout[: len(result.stdout) - len(result.stdout) % frame]
    return AudioSegment(data=pcm, sample_width=2, frame_rate=rate, channels=channels)


@contextlib.contextmanager
def _pydub_using(ffmpeg: Ffmpeg, scratch: Path) -> Iterator[None]:
    """Point pydub at our ffmpeg and keep its temp files in `scratch`, which we always remove.

    pydub leaves its NamedTemporaryFiles behind when an encode fails.
    """
    with _PYDUB_LOCK:
        converter, factory = AudioSegment.converter, _pydub_module.NamedTemporaryFile
        AudioSegment.converter = str(ffmpeg.ffmpeg)
        _pydub_module.NamedTemporaryFile = functools.partial(factory, dir=scratch)
        try:
            yield
        finally:
            AudioSegment.converter = converter
            _pydub_module.NamedTemporaryFile = factory


def _bpm_text(bpm: float) -> str:
    return str(round(bpm)) if abs(bpm - round(bpm)) < 0.005 else f"{bpm:.2f}".rstrip("0")


def _write_tags(mp3: Path, tags: PreviewTags, artwork: Path | None) -> None:
    m: Any = importlib.import_module("mutagen.id3")  # untyped API
    frames: list[Any] = [m.TIT2(encoding=3, text=tags.title)]
    if tags.artist:
        frames.append(m.TPE1(encoding=3, text=tags.artist))
    if tags.genre:
        frames.append(m.TCON(encoding=3, text=tags.genre))
    if tags.bpm:
        frames.append(m.TBPM(encoding=3, text=_bpm_text(tags.bpm)))
    if tags.key:
        frames.append(m.TKEY(encoding=3, text=tags.key))
    if artwork is not None:
        data = artwork.read_bytes()
        mime = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        if data.startswith(b"GIF8"):
            mime = "image/gif"
        frames.append(m.APIC(encoding=3, mime=mime, type=3, desc="Cover", data=data))
    id3 = m.ID3()  # saved over ffmpeg's tag, which only names the encoder
    for frame in frames:
        id3.add(frame)
    id3.save(mp3, v2_version=3)  # v2.3: what Windows and older players read


def build_preview(
    path: Path,
    info: AudioInfo,
    out: Path,
    start: float,
    cfg: PreviewConfig,
    tags: PreviewTags,
    artwork: Path | None,
    ffmpeg: Ffmpeg,
) -> Path:
    """Write the preview MP3 to `out` (atomically) and return it.

    `cfg.length` seconds from `start` (moved earlier if the track ends first; the whole track when
    it is shorter than a preview), `cfg.bitrate` kbit/s, faded in and out. Raises AudioProblem when
    the track cannot be decoded, PreviewProblem when encoding or writing fails.
    """
    length = min(cfg.length, info.duration)
    start = min(max(start, 0.0), max(info.duration - length, 0.0))
    segment = _excerpt(path, info, start, length, ffmpeg)
    seconds = len(segment) / 1000
    fade_in = min(cfg.fade_in, seconds / 2)
    fade_out = min(cfg.fade_out, seconds / 2)
    if fade_in > 0:
        segment = segment.fade_in(round(fade_in * 1000))
    if fade_out > 0:
        segment = segment.fade_out(round(fade_out * 1000))

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".preview-") as scratch:
        partial = Path(scratch) / "preview.mp3"
        try:
            with _pydub_using(ffmpeg, Path(scratch)):
                segment.export(partial, format="mp3", bitrate=f"{cfg.bitrate}k").close()
        except (CouldntEncodeError, OSError) as exc:
            lines = str(exc).strip().splitlines()
            raise PreviewProblem(
                f"{out.name}: ffmpeg could not encode the preview of {path.name} "
                f"({lines[-1] if lines else type(exc).__name__})"
            ) from exc
        _write_tags(partial, tags, artwork)
        with partial.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, out)
    return out
