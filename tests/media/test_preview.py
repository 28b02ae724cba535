"""The preview MP3: length, position, fades, tags, float WAVs that stay music, clean failures."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from media_corpus import Track, mp3_file, run_ffmpeg
from PIL import Image

from releaseosd.media.ffmpeg import Ffmpeg
from releaseosd.media.preview import PreviewProblem, PreviewTags, build_preview
from releaseosd.media.probe import pcm_layout, probe
from releaseosd.model.config import PreviewConfig

Decode = Callable[[Path], tuple[npt.NDArray[np.float32], int, str]]
TAGS = PreviewTags(title="Night Drive", artist="DJ Test", genre="Techno", bpm=124.0, key="F# minor")


def _tone_share(samples: npt.NDArray[np.float32], rate: int, hz: float) -> float:
    """Share of the spectrum's energy within ±10 Hz of `hz` (a clean tone: close to 1)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spectrum[np.abs(freqs - hz) <= 10].sum() / spectrum.sum())


def _rms(samples: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize(
    "key", ["wavf32-stereo", "wavf32-mono", "wav24-stereo", "aiff-stereo", "ogg-mono"]
)
def test_preview_is_the_tone_not_noise(
    corpus: dict[str, Track], ff: Ffmpeg, decode: Decode, tmp_path: Path, key: str
) -> None:
    """pydub alone reads extensible float WAVs as integers; the result would be noise."""
    track = corpus[key]
    cfg = PreviewConfig(length=5.0, fade_in=0.5, fade_out=0.5)
    out = build_preview(track.path, probe(track.path), tmp_path / "p.mp3", 3.0, cfg, TAGS, None, ff)
    samples, rate, errors = decode(out)
    assert errors == ""
    assert abs(len(samples) / rate - 5.0) < 0.1
    middle = samples[rate : 4 * rate]
    assert _tone_share(middle, rate, 440.0) > 0.95
    assert 0.02 < _rms(middle) < 0.06  # the source: a 0.0625-amplitude sine, RMS 0.044


def test_preview_starts_where_asked_and_fades(
    ff: Ffmpeg, burst_wav: Path, decode: Decode, tmp_path: Path
) -> None:
    cfg = PreviewConfig(length=6.0, fade_in=0.5, fade_out=1.0, bitrate=128)
    out = build_preview(burst_wav, probe(burst_wav), tmp_path / "p.mp3", 37.0, cfg, TAGS, None, ff)
    samples, rate, _ = decode(out)
    assert abs(len(samples) / rate - 6.0) < 0.1
    before = _rms(samples[int(0.6 * rate) : int(2.9 * rate)])  # 37.6–39.9 s: the quiet tone
    burst = _rms(samples[int(3.1 * rate) : int(4.9 * rate)])  # 40.1–41.9 s: the noise burst
    assert burst > 10 * before
    assert _rms(samples[: int(0.02 * rate)]) < 0.2 * before  # faded in
    assert _rms(samples[-int(0.02 * rate) :]) < 0.2 * burst  # faded out


def test_a_start_too_late_is_moved_back_and_short_tracks_are_previewed_whole(
    corpus: dict[str, Track], ff: Ffmpeg, decode: Decode, tmp_path: Path
) -> None:
    track = corpus["flac-stereo"]
    info = probe(track.path)
    late = build_preview(
        track.path, info, tmp_path / "late.mp3", 11.0, PreviewConfig(length=5), TAGS, None, ff
    )
    samples, rate, _ = decode(late)
    assert abs(len(samples) / rate - 5.0) < 0.1
    whole = build_preview(
        track.path, info, tmp_path / "whole.mp3", 0.0, PreviewConfig(), TAGS, None, ff
    )
    samples, rate, _ = decode(whole)
    assert abs(len(samples) / rate - 12.0) < 0.1


def test_id3_tags_bitrate_and_artwork(corpus: dict[str, Track], ff: Ffmpeg, tmp_path: Path) -> None:
    art = tmp_path / "art.png"
    Image.new("RGB", (800, 800), (255, 85, 0)).save(art)
    track = corpus["mp3-stereo"]
    cfg = PreviewConfig(length=4.0, bitrate=256)
    tags = PreviewTags(title="Night Drive", artist="DJ Test", genre="Techno", bpm=122.5, key="8A")
    out = build_preview(track.path, probe(track.path), tmp_path / "p.mp3", 2.0, cfg, tags, art, ff)
    mp3 = mp3_file(out)
    assert mp3.tags.version[:2] == (2, 3)
    assert str(mp3.tags["TIT2"]) == "Night Drive"
    assert str(mp3.tags["TPE1"]) == "DJ Test"
    assert str(mp3.tags["TCON"]) == "Techno"
    assert str(mp3.tags["TBPM"]) == "122.5"
    assert str(mp3.tags["TKEY"]) == "8A"
    (apic,) = mp3.tags.getall("APIC")
    assert apic.mime == "image/png" and apic.type == 3 and apic.data == art.read_bytes()
    assert abs(mp3.info.bitrate - 256_000) < 8_000
    only_title = build_preview(
        track.path, probe(track.path), tmp_path / "q.mp3", 0.0, cfg, PreviewTags("T"), None, ff
    )
    assert sorted(mp3_file(only_title).tags.keys()) == ["TIT2"]


def test_a_failed_encode_leaves_nothing_behind(
    corpus: dict[str, Track], ff: Ffmpeg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydub leaves its temp files when ffmpeg fails; the old preview must survive untouched."""
    broken = tmp_path / "ffmpeg-without-mp3"
    broken.write_text(
        "#!/bin/sh\n"
        'case "$*" in *" mp3 "*) echo "Unknown encoder libmp3lame" >&2; exit 1;; esac\n'
        f'exec {ff.ffmpeg} "$@"\n'
    )
    broken.chmod(0o755)
    no_mp3 = Ffmpeg(broken, None, "system", ff.version)
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "preview.mp3").write_bytes(b"the previous preview")
    track = corpus["wav16-stereo"]
    with pytest.raises(
        PreviewProblem,
        match=r"preview\.mp3: ffmpeg could not encode the preview of wav16-stereo\.wav",
    ):
        build_preview(
            track.path,
            probe(track.path),
            out_dir / "preview.mp3",
            0.0,
            PreviewConfig(length=3),
            TAGS,
            None,
            no_mp3,
        )
    assert [p.name for p in out_dir.iterdir()] == ["preview.mp3"]
    assert (out_dir / "preview.mp3").read_bytes() == b"the previous preview"
    assert list(system_tmp.iterdir()) == []


def test_pydub_globals_are_restored(corpus: dict[str, Track], ff: Ffmpeg, tmp_path: Path) -> None:
    from pydub import AudioSegment, audio_segment

    before = (AudioSegment.converter, audio_segment.NamedTemporaryFile)
    track = corpus["ogg-stereo"]
    build_preview(
        track.path,
        probe(track.path),
        tmp_path / "p.mp3",
        0.0,
        PreviewConfig(length=2),
        TAGS,
        None,
        ff,
    )
    assert (AudioSegment.converter, audio_segment.NamedTemporaryFile) == before


@pytest.mark.parametrize("key", ["wav24-stereo", "wavf32-mono", "aiff-stereo", "wav16-mono"])
def test_reading_the_excerpt_from_disk_matches_ffmpeg(
    corpus: dict[str, Track], ff: Ffmpeg, key: str
) -> None:
    from releaseosd.media import preview

    path = corpus[key].path
    info = probe(path)
    layout = pcm_layout(path)
    assert layout is not None
    disk = preview._excerpt_from_disk(path, layout, 2.5, 3.0)
    decoded = preview._excerpt_from_ffmpeg(path, info, 2.5, 3.0, ff)
    assert (disk.frame_rate, disk.channels, disk.sample_width) == (
        decoded.frame_rate,
        decoded.channels,
        2,
    )
    a = np.frombuffer(disk.raw_data, dtype="<i2").astype(np.int32)
    b = np.frombuffer(decoded.raw_data, dtype="<i2").astype(np.int32)
    assert len(a) == len(b) == 3 * 44100 * info.channels
    assert np.abs(a - b).max() <= 1  # rounding, no shift in time


@pytest.mark.parametrize(
    ("options", "rate", "channels"),
    [
        (["-ar", "96000", "-c:a", "pcm_s24le"], 48000, 1),
        (["-ac", "6", "-c:a", "pcm_s16le"], 44100, 2),
    ],
)
def test_rates_and_layouts_mp3_lacks_go_through_ffmpeg(
    ff: Ffmpeg, decode: Decode, tmp_path: Path, options: list[str], rate: int, channels: int
) -> None:
    source = tmp_path / "source.wav"
    run_ffmpeg(
        ff,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=6:sample_rate=44100",
        *options,
        str(source),
    )
    out = build_preview(
        source, probe(source), tmp_path / "p.mp3", 1.0, PreviewConfig(length=4), TAGS, None, ff
    )
    samples, got_rate, errors = decode(out)
    assert (got_rate, errors) == (rate, "")
    assert abs(len(samples) / got_rate - 4.0) < 0.1
    assert _tone_share(samples[got_rate : 3 * got_rate], got_rate, 440.0) > 0.95
    assert mp3_file(out).info.channels == channels  # 5.1 is downmixed to stereo
