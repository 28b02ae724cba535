"""The one-pass scan: bar peaks, the loudest window, the same answers from disk and from ffmpeg."""

from __future__ import annotations

import hashlib
import itertools
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media_corpus import Track, run_ffmpeg

from releaseosd.media import waveform
from releaseosd.media.ffmpeg import Ffmpeg
from releaseosd.media.probe import PcmLayout, pcm_layout, probe
from releaseosd.media.waveform import scan


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.integers(-32768, 32767), min_size=0, max_size=400),
    block=st.integers(1, 37),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_blocks_fold_the_same_whatever_the_chunking(
    data: list[int], block: int, cuts: list[int]
) -> None:
    values = np.array(data, dtype=np.int16)
    expected = [max(data[i : i + block]) for i in range(0, len(data), block)]
    folder = waveform._Blocks(block, np.maximum)
    edges = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in itertools.pairwise(edges):
        folder.feed(values[start:end])
    assert folder.result().tolist() == expected


def _layout(
    width: int, encoding: Literal["int", "uint", "float"], order: Literal["<", ">"] = "<"
) -> PcmLayout:
    return PcmLayout(0, 0, 1, 44100, width, encoding, order, 8 * width)


def test_sample_decoding_of_every_pcm_layout() -> None:
    le24 = b"".join(struct.pack("<i", v)[:3] for v in (-(1 << 23), (1 << 23) - 1, 0, 1 << 22))
    be24 = b"".join(struct.pack(">i", v)[1:] for v in (-(1 << 23), (1 << 23) - 1, 0, 1 << 22))
    full24 = float(1 << 31)
    for raw, layout in ((le24, _layout(3, "int")), (be24, _layout(3, "int", ">"))):
        got = waveform.pcm_samples(memoryview(raw), layout).astype(np.float64) / full24
        assert got.tolist() == pytest.approx([-1.0, 1.0 - 2**-23, 0.0, 0.5])
    u8 = waveform.pcm_samples(memoryview(bytes([0, 128, 255])), _layout(1, "uint"))
    assert u8.tolist() == [-128, 0, 127]
    f64 = waveform.pcm_samples(
        memoryview(struct.pack(">2d", -0.25, 0.75)), _layout(8, "float", ">")
    )
    assert f64.tolist() == [-0.25, 0.75]


@pytest.fixture(scope="module")
def burst_variants(
    ff: Ffmpeg, burst_wav: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The burst track in every PCM layout the direct reader handles, plus compressed ones."""
    folder = tmp_path_factory.mktemp("burst")
    variants = {"s16": burst_wav}
    for name, options in {
        "u8.wav": ["-c:a", "pcm_u8"],
        "s24.wav": ["-c:a", "pcm_s24le"],
        "s32.wav": ["-c:a", "pcm_s32le"],
        "f32.wav": ["-c:a", "pcm_f32le"],
        "f64.wav": ["-c:a", "pcm_f64le"],
        "s24.aiff": ["-c:a", "pcm_s24be"],
        "f32.aiff": ["-c:a", "pcm_f32be"],
        "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
        "flac": ["-c:a", "flac"],
    }.items():
        path = folder / f"burst-{name.replace('.', '-')}.{name.split('.')[-1]}"
        run_ffmpeg(ff, "-i", str(burst_wav), *options, str(path))
        variants[name] = path
    return variants


@pytest.mark.parametrize(
    "name",
    [
        "s16",
        "u8.wav",
        "s24.wav",
        "s32.wav",
        "f32.wav",
        "f64.wav",
        "s24.aiff",
        "f32.aiff",
        "mp3",
        "flac",
    ],
)
def test_auto_start_finds_the_loud_burst(
    burst_variants: dict[str, Path], ff: Ffmpeg, name: str
) -> None:
    path = burst_variants[name]
    result = scan(path, probe(path), bars=60, window_seconds=8.0, ffmpeg=ff)
    assert 40.0 <= result.loudest_start <= 42.0, result.loudest_start
    assert abs(result.duration - 60.0) < 0.05
    assert len(result.peaks) == 60 and max(result.peaks) == 1.0
    # bar i covers seconds [i, i+1): the burst's bars are loud, the rest quiet
    assert min(result.peaks[41:49]) > 0.8
    assert max(result.peaks[:39] + result.peaks[51:]) < 0.3


@pytest.mark.parametrize("name", ["s16", "s24.wav", "f32.wav", "s24.aiff", "u8.wav"])
def test_reading_from_disk_matches_decoding_with_ffmpeg(
    burst_variants: dict[str, Path], ff: Ffmpeg, name: str
) -> None:
    path = burst_variants[name]
    info = probe(path)
    layout = pcm_layout(path)
    assert layout is not None
    direct = waveform._scan_pcm(path, layout, 60, 8.0, None)
    decoded = waveform._scan_decoded(path, info, 60, 8.0, ff, None)
    assert direct.duration == pytest.approx(decoded.duration, abs=1e-3)
    assert direct.peaks == pytest.approx(decoded.peaks, abs=0.02)
    assert direct.loudest_start == pytest.approx(decoded.loudest_start, abs=0.5)


@pytest.mark.parametrize("key", ["wav24-stereo", "aiff-mono", "mp3-stereo", "m4a-mono"])
def test_the_hasher_sees_every_byte_of_the_file(
    corpus: dict[str, Track], ff: Ffmpeg, key: str
) -> None:
    path = corpus[key].path
    hasher = hashlib.sha256()
    scan(path, probe(path), 32, 5.0, ff, hasher=hasher)
    assert hasher.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_silence_and_short_tracks(ff: Ffmpeg, tmp_path: Path) -> None:
    silent = tmp_path / "silence.wav"
    run_ffmpeg(ff, "-f", "lavfi", "-i", "anullsrc=duration=3:sample_rate=8000", str(silent))
    result = scan(silent, probe(silent), 20, 30.0, ff)
    assert result.peaks == (0.0,) * 20
    assert result.loudest_start == 0.0  # shorter than the window: start at the top
    tiny = tmp_path / "tiny.wav"
    run_ffmpeg(ff, "-f", "lavfi", "-i", "sine=duration=0.01:sample_rate=8000", str(tiny))
    result = scan(tiny, probe(tiny), 120, 30.0, ff)  # 80 frames for 120 bars
    assert len(result.peaks) == 120 and max(result.peaks) == 1.0
