"""One streaming pass over a track: the waveform's bar peaks and where its loudest stretch starts.

Memory stays flat whatever the track's length: samples pass through in fixed-size chunks and are
folded at once into per-block maxima (about eight blocks per bar) and 100 ms energy sums (36 000
floats for an hour). Uncompressed WAV/AIFF is read straight from disk with numpy; everything else is
decoded by an ffmpeg child into a pipe as 16-bit PCM.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import numpy as np
import numpy.typing as npt

from releaseosd.media.ffmpeg import Ffmpeg
from releaseosd.media.probe import AudioIncomplete, AudioInfo, AudioProblem, PcmLayout, pcm_layout

HOP_SECONDS = 0.1
_BLOCKS_PER_BAR = 8
_CHUNK_BYTES = 1 << 20
_HASH_CHUNK = 1 << 20
_PACKET_FRAMES = 16384  # per write ffmpeg makes into the pipe (64 KB of 16-bit stereo)
# Formats whose header states the length exactly, so a short decode means a cut-off file.
_EXACT_LENGTH = ("flac", "m4a")


class Hasher(Protocol):
    """What scan() needs of a hashlib object."""

    def update(self, data: bytes | memoryview, /) -> None: ...


@dataclass(frozen=True)
class WaveformScan:
    peaks: tuple[float, ...]  # one per bar, 0..1, the loudest bar is 1.0 (all 0.0 for silence)
    loudest_start: float  # seconds; start of the loudest window of the asked length
    duration: float  # seconds of audio actually read


class _Blocks:
    """Folds a stream of samples into fixed-size blocks, carrying a partial block across chunks."""

    def __init__(self, block: int, reduce: np.ufunc) -> None:
        self.block = block
        self.reduce = reduce
        self.filled = 0  # samples already in the block being built
        self.partial = 0.0  # their reduced value, meaningful when filled > 0
        self.done: list[npt.NDArray[np.float64]] = []

    def _one(self, values: npt.NDArray[np.generic]) -> float:
        return float(self.reduce.reduce(values))

    def feed(self, values: npt.NDArray[np.generic]) -> None:
        if self.filled:
            need = self.block - self.filled
            if len(values) < need:
                self.partial = float(self.reduce(self.partial, self._one(values)))
                self.filled += len(values)
                return
            head = float(self.reduce(self.partial, self._one(values[:need])))
            self.done.append(np.array([head]))
            values = values[need:]
            self.filled = 0
        whole = len(values) // self.block
        if whole:
            blocks = values[: whole * self.block].reshape(whole, self.block)
            self.done.append(self.reduce.reduce(blocks, axis=1).astype(np.float64))
        rest = values[whole * self.block :]
        if len(rest):
            self.partial = self._one(rest)
            self.filled = len(rest)

    def result(self) -> npt.NDArray[np.float64]:
        parts = [*self.done]
        if self.filled:
            parts.append(np.array([self.partial]))
        return np.concatenate(parts) if parts else np.zeros(0)


class _Scanner:
    """Accumulates bar peaks and windowed energy from interleaved samples."""

    def __init__(self, frames_hint: int, rate: int, channels: int, bars: int) -> None:
        self.channels = channels
        self.rate = rate
        peak_frames = max(1, frames_hint // (bars * _BLOCKS_PER_BAR))
        hop_frames = max(1, round(rate * HOP_SECONDS))
        self.hop_seconds = hop_frames / rate
        self.high = _Blocks(peak_frames * channels, np.maximum)
        self.low = _Blocks(peak_frames * channels, np.minimum)
        self.energy = _Blocks(hop_frames * channels, np.add)
        self.samples = 0

    def feed(self, samples: npt.NDArray[np.generic]) -> None:
        self.high.feed(samples)
        self.low.feed(samples)
        # Energy only ranks windows against each other, so it stays in the samples' own units.
        squares = samples.astype(np.float32)
        np.multiply(squares, squares, out=squares)
        self.energy.feed(squares)
        self.samples += len(samples)

    def finish(self, bars: int, window_seconds: float, full: float) -> WaveformScan:
        frames = self.samples // self.channels
        peaks = np.maximum(self.high.result(), -self.low.result()) / full
        return WaveformScan(
            peaks=_bars(peaks, bars),
            loudest_start=_loudest(self.energy.result(), self.hop_seconds, window_seconds),
            duration=frames / self.rate,
        )


def _bars(blocks: npt.NDArray[np.float64], bars: int) -> tuple[float, ...]:
    if len(blocks) == 0:
        return (0.0,) * bars
    edges = (np.arange(bars + 1) * len(blocks)) // bars
    starts = np.minimum(edges[:-1], len(blocks) - 1)
    ends = np.maximum(edges[1:], starts + 1)
    values = np.array([blocks[s:e].max() for s, e in zip(starts, ends, strict=True)])
    top = float(values.max())
    if top <= 0:
        return (0.0,) * bars
    return tuple(float(v) for v in np.clip(values / top, 0.0, 1.0))


def _loudest(energy: npt.NDArray[np.float64], hop: float, window_seconds: float) -> float:
    width = max(1, round(window_seconds / hop))
    if len(energy) <= width:
        return 0.0
    total = np.concatenate(([0.0], np.cumsum(energy)))
    sums = total[width:] - total[:-width]
    return round(float(np.argmax(sums)) * hop, 3)


def full_scale(layout: PcmLayout) -> float:
    """The sample value that means 0 dBFS in what pcm_samples() returns."""
    if layout.encoding == "float":
        return 1.0
    if layout.sample_width == 3:
        return float(1 << 31)  # 24-bit samples are widened into the top of an int32
    return float(1 << (8 * layout.sample_width - 1))


def pcm_samples(raw: memoryview, layout: PcmLayout) -> npt.NDArray[np.generic]:
    """Interleaved samples from raw bytes in `layout` (24-bit ones widened into int32)."""
    order, width = layout.byte_order, layout.sample_width
    if layout.encoding == "float":
        return np.frombuffer(raw, dtype=f"{order}f{width}")
    if width == 1:
        data = np.frombuffer(raw, dtype=np.uint8)
        return data.astype(np.int16) - 128 if layout.encoding == "uint" else data.view(np.int8)
    if width == 3:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        wide = np.zeros((len(triples), 4), dtype=np.uint8)
        if order == "<":
            wide[:, 1:] = triples
        else:
            wide[:, :3] = triples
        return wide.view(f"{order}i4").ravel()
    return np.frombuffer(raw, dtype=f"{order}i{width}")


def _hash_range(f: BinaryIO, start: int, end: int, hasher: Hasher) -> None:
    f.seek(start)
    left = end - start
    while left > 0:
        data: bytes = f.read(min(_HASH_CHUNK, left))
        if not data:
            break
        hasher.update(data)
        left -= len(data)


def _scan_pcm(
    path: Path,
    layout: PcmLayout,
    bars: int,
    window: float,
    hasher: Hasher | None,
    content: Hasher | None = None,
) -> WaveformScan:
    if content is not None:
        content.update(content_kind(layout.sample_rate, layout.channels, _pcm_class(layout)))
    full = full_scale(layout)
    block = layout.block_align
    chunk = max(1, _CHUNK_BYTES // block) * block
    scanner = _Scanner(layout.frames, layout.sample_rate, layout.channels, bars)
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    end = layout.data_offset + layout.data_size
    with path.open("rb", buffering=0) as f:
        if hasher is not None:
            _hash_range(f, 0, layout.data_offset, hasher)
        f.seek(layout.data_offset)
        left = layout.data_size
        while left > 0:
            got = f.readinto(view[: min(chunk, left)])
            if not got:
                raise AudioIncomplete(
                    f"{path.name}: the file got shorter while it was read: is it still being written?"
                )
            if hasher is not None:
                hasher.update(view[:got])
            usable = got - got % block
            if usable != got:  # a read ending mid-frame: finish the frame before folding it
                more = f.readinto(view[got : got + block - got % block]) or 0
                if hasher is not None:
                    hasher.update(view[got : got + more])
                got += more
                usable = got - got % block
            left -= got
            samples = pcm_samples(view[:usable], layout)
            if content is not None:
                content.update(_canonical(view[:usable], samples, layout))
            scanner.feed(samples)
        if hasher is not None:
            _hash_range(f, end, os.fstat(f.fileno()).st_size, hasher)
    return scanner.finish(bars, window, full)


@contextlib.contextmanager
def _decoder(
    path: Path, info: AudioInfo, ffmpeg: Ffmpeg, width: int = 2
) -> Iterator[subprocess.Popen[bytes]]:
    pcm = f"s{8 * width}le"
    command = [
        str(ffmpeg.ffmpeg), "-nostdin", "-hide_banner", "-v", "error",
        # One decoding thread: frame threads gain nothing at pipe speed (measured on FLAC) but
        # take the core that folds the samples, and the daemon already builds two tracks at once.
        "-threads", "1",
        "-i", str(path),
        # The stream's own layout: converting to it costs ffmpeg nothing, a downmix would.
        "-map", "0:a:0", "-ac", str(info.channels), "-ar", str(info.sample_rate),
        # 64 KB packets written straight to the pipe: ffmpeg's default copies each ~4 KB decoded
        # frame into a 32 KB output buffer first. On the 2-core test VM that copy and the extra
        # writes were most of the cost over a bare decode (1.12x -> 0.97x for a 5-minute MP3).
        # The PCM is byte-for-byte the same, except in a stream that changes rate or channels
        # midway (chained OGG, joined MP3s; no DAW writes one): there ffmpeg 5.1 rebuilds its
        # filters and drops the part-filled packet, at most 0.37 s of 44.1 kHz per change, which
        # can only shift a bar's peak.
        "-af", f"asetnsamples=n={_PACKET_FRAMES}:p=0",
        "-f", pcm, "-acodec", f"pcm_{pcm}",
        "-avioflags", "direct",
        "pipe:1",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if process.returncode != 0:
            errors.seek(0)
            lines = errors.read().decode("utf-8", "replace").strip().splitlines()
            detail = lines[-1] if lines else f"exit status {process.returncode}"
            raise AudioProblem(f"{path.name}: ffmpeg could not decode the audio ({detail})")


def _widen_pipe(fd: int) -> None:
    """Ask Linux for a 1 MB pipe so ffmpeg blocks less often on a full pipe."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _CHUNK_BYTES)
    except (ImportError, OSError):
        pass  # other systems, or a lowered /proc/sys/fs/pipe-max-size: the default works too


def _scan_decoded(
    path: Path,
    info: AudioInfo,
    bars: int,
    window: float,
    ffmpeg: Ffmpeg,
    hasher: Hasher | None,
    content: Hasher | None = None,
) -> WaveformScan:
    width = _decoded_width(info)
    if content is not None:
        content.update(content_kind(info.sample_rate, info.channels, str(8 * width)))
    if hasher is not None:
        with path.open("rb") as f:
            _hash_range(f, 0, os.fstat(f.fileno()).st_size, hasher)
    scanner = _Scanner(int(info.duration * info.sample_rate), info.sample_rate, info.channels, bars)
    buffer = bytearray(_CHUNK_BYTES)
    view = memoryview(buffer)
    pending = 0
    frame = width * info.channels
    with _decoder(path, info, ffmpeg, width) as process:
        stream = cast(io.BufferedReader, process.stdout)
        _widen_pipe(stream.fileno())
        ended = False
        while not ended:
            # Fill the whole buffer first: numpy's per-call overhead on 64 KB pipe reads costs
            # more than the folding itself.
            while pending < len(buffer):
                got = stream.readinto(view[pending:])
                if not got:
                    ended = True
                    break
                if content is not None:
                    content.update(view[pending : pending + got])
                pending += got
            usable = pending - pending % frame
            scanner.feed(np.frombuffer(view[:usable], dtype=f"<i{width}"))
            view[: pending - usable] = view[usable:pending]
            pending -= usable
    if scanner.samples == 0:
        raise AudioProblem(f"{path.name}: ffmpeg found no audio it could decode in it")
    result = scanner.finish(bars, window, float(1 << (8 * width - 1)))
    short = info.duration - result.duration
    if info.format in _EXACT_LENGTH and short > max(0.5, 0.01 * info.duration):
        raise AudioIncomplete(
            f"{path.name}: the {info.format.upper()} header says {info.duration:.1f} s of audio "
            f"but only {result.duration:.1f} s decode: the export looks unfinished or truncated"
        )
    return result


def scan(
    path: Path,
    info: AudioInfo,
    bars: int,
    window_seconds: float,
    ffmpeg: Ffmpeg,
    hasher: Hasher | None = None,
    content: Hasher | None = None,
) -> WaveformScan:
    """Peaks for `bars` bars and the start of the loudest `window_seconds`, in one pass.

    If `hasher` is given every byte of the file is fed to it (in the same read for WAV/AIFF);
    `content` is fed the decoded audio after a line naming its sample format (for WAV/AIFF the
    sample bytes themselves, for other formats ffmpeg's 16-bit PCM), so two files holding the
    same samples under different tags or chunk layouts feed it the same bytes.
    Raises AudioProblem when the audio cannot be decoded, AudioIncomplete when less audio decodes
    than the header promised.
    """
    layout = pcm_layout(path) if info.format in ("wav", "aiff") else None
    if layout is not None:
        return _scan_pcm(path, layout, bars, window_seconds, hasher, content)
    return _scan_decoded(path, info, bars, window_seconds, ffmpeg, hasher, content)


def content_kind(rate: int, channels: int, sample_class: str) -> bytes:
    """What the content digest starts with: the same samples give the same digest whatever file
    holds them (WAV, AIFF, FLAC), so the format is named by what the samples are, not by how
    the file stores them."""
    return f"pcm:{rate}:{channels}:{sample_class}:".encode()


def _pcm_class(layout: PcmLayout) -> str:
    """16 (8- and 16-bit integers, as 16-bit), 32 (24- and 32-bit, top-aligned 32-bit) or f32/f64:
    the forms ffmpeg decodes FLAC and ALAC to, so a WAV and a FLAC of one master agree."""
    if layout.encoding == "float":
        return f"f{8 * layout.sample_width}"
    return "16" if layout.sample_width <= 2 else "32"


def _canonical(
    raw: memoryview, samples: npt.NDArray[np.generic], layout: PcmLayout
) -> bytes | memoryview:
    """Samples as the content digest takes them: little-endian, in their class's width."""
    sample_class = _pcm_class(layout)
    if sample_class == "16" and layout.sample_width == 2 and layout.byte_order == "<":
        return raw  # the bytes on disk are the canonical form already
    if sample_class == "16":
        wide = samples.astype("<i2")
        if layout.sample_width == 1:
            wide <<= 8  # as ffmpeg widens 8-bit audio
        return wide.tobytes()
    if sample_class == "32":
        return samples.astype("<i4", copy=False).tobytes()
    return samples.astype(f"<f{layout.sample_width}", copy=False).tobytes()


def _decoded_width(info: AudioInfo) -> int:
    """Bytes per decoded sample: 4 for lossless audio of more than 16 bits (a 24-bit FLAC must
    keep all its bits to agree with its WAV), else 2."""
    return 4 if (info.bit_depth or 0) > 16 else 2
