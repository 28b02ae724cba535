"""build_assets end to end: real files in, preview MP3 + artwork PNG + facts out."""

from __future__ import annotations

import hashlib
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from media_corpus import TAGS, Track, mp3_file, mutagen_module, run_ffmpeg
from PIL import Image

from releaseosd.media.artwork import ArtworkProblem
from releaseosd.media.build import build_assets, preview_start
from releaseosd.media.ffmpeg import Ffmpeg, find_ffmpeg
from releaseosd.media.probe import AudioIncomplete, AudioProblem, probe
from releaseosd.media.waveform import scan
from releaseosd.model.config import ArtworkConfig, Config, DefaultsConfig, PreviewConfig
from releaseosd.model.metadata import metadata_for
from releaseosd.model.sidecar import Sidecar
from releaseosd.model.track import Track as TrackRecord
from releaseosd.pipeline.ingest import probe_dict

Decode = Callable[[Path], tuple[npt.NDArray[np.float32], int, str]]
CONFIG = Config(preview=PreviewConfig(length=5.0), artwork=ArtworkConfig(size=800, bars=48))
CORPUS_KEYS = [
    f"{name}-{layout}"
    for name in ("wav16", "wav24", "wavf32", "aiff", "flac", "mp3", "ogg", "m4a")
    for layout in ("mono", "stereo")
]


@pytest.mark.parametrize("key", CORPUS_KEYS)
def test_every_format_builds_a_preview_and_artwork(
    corpus: dict[str, Track], ff: Ffmpeg, decode: Decode, tmp_path: Path, key: str
) -> None:
    track = corpus[key]
    built = build_assets(track.path, Sidecar(), CONFIG, tmp_path / "out", ff)

    assert built.sha256 == hashlib.sha256(track.path.read_bytes()).hexdigest()
    assert abs(built.info.duration - track.seconds) < 0.05
    assert built.title == TAGS["title"]  # no sidecar title: the file's own tag
    assert 0.0 <= built.preview_start <= track.seconds - 5.0

    samples, rate, errors = decode(built.preview)
    assert errors == "", errors  # ffmpeg decodes it without a complaint
    assert abs(len(samples) / rate - 5.0) < 0.1
    assert np.abs(samples).max() > 0.03  # audible, not silence
    tags = mp3_file(built.preview).tags
    assert str(tags["TIT2"]) == "Night Drive" and str(tags["TPE1"]) == "DJ Test"
    assert str(tags["TCON"]) == "Techno" and str(tags["TBPM"]) == "124"
    assert str(tags["TKEY"]) == "Am"
    assert tags.getall("APIC")[0].data == built.artwork.read_bytes()

    assert built.artwork_source == "waveform"
    with Image.open(built.artwork) as image:
        assert (image.format, image.size) == ("PNG", (800, 800))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "artwork.png",
        "preview.mp3",
        "waveform.json",
    ]


def test_default_config_makes_1400px_artwork_and_a_whole_short_track_preview(
    corpus: dict[str, Track], ff: Ffmpeg, decode: Decode, tmp_path: Path
) -> None:
    built = build_assets(corpus["wav24-stereo"].path, Sidecar(), Config(), tmp_path, ff)
    with Image.open(built.artwork) as image:
        assert image.size == (1400, 1400)
    samples, rate, _ = decode(built.preview)
    assert abs(len(samples) / rate - 12.0) < 0.1  # 12 s track, 30 s preview: all of it
    assert built.preview_start == 0.0


def test_auto_start_and_sidecar_overrides(
    ff: Ffmpeg, burst_wav: Path, decode: Decode, tmp_path: Path
) -> None:
    auto = build_assets(burst_wav, Sidecar(), CONFIG, tmp_path / "auto", ff)
    assert 40.0 <= auto.loudest_start <= 42.0
    assert auto.preview_start == auto.loudest_start
    assert auto.title == "burst"  # no tag, no sidecar title: the file name

    sidecar = Sidecar.model_validate(
        {"title": "Burst (Edit)", "preview": {"start": 100, "length": 8}, "bpm": 128, "key": "Am"}
    )
    fixed = build_assets(burst_wav, sidecar, CONFIG, tmp_path / "fixed", ff)
    assert fixed.preview_start == 52.0  # 100 s asked, kept inside the 60 s track
    assert fixed.title == "Burst (Edit)"
    samples, rate, _ = decode(fixed.preview)
    assert abs(len(samples) / rate - 8.0) < 0.1

    start_10 = Config(
        preview=PreviewConfig(start=10.0, length=5.0), artwork=ArtworkConfig(size=800)
    )
    assert build_assets(burst_wav, Sidecar(), start_10, tmp_path / "cfg", ff).preview_start == 10.0


def test_preview_start_rules() -> None:
    assert preview_start("auto", 41.2, 60.0, 30.0) == 30.0
    assert preview_start("auto", 12.5, 60.0, 30.0) == 12.5
    assert preview_start(5.0, 41.2, 20.0, 30.0) == 0.0
    assert preview_start(-1.0, 0.0, 100.0, 30.0) == 0.0


def test_sidecar_artwork_is_checked_copied_and_embedded(
    corpus: dict[str, Track], ff: Ffmpeg, tmp_path: Path
) -> None:
    cover = tmp_path / "cover.jpg"
    Image.new("RGB", (1200, 900), (10, 200, 90)).save(cover, format="JPEG")
    sidecar = Sidecar.model_validate({"artwork": str(cover), "artist": "Sidecar Artist"})
    built = build_assets(corpus["flac-stereo"].path, sidecar, CONFIG, tmp_path / "out", ff)
    assert built.artwork_source == "sidecar"
    assert built.artwork == tmp_path / "out" / "artwork.jpg"
    assert built.artwork.read_bytes() == cover.read_bytes()
    assert built.warnings == ("cover.jpg: artwork is 1200×900, not square; SoundCloud crops it",)
    tags = mp3_file(built.preview).tags
    assert tags.getall("APIC")[0].mime == "image/jpeg"
    assert str(tags["TPE1"]) == "Sidecar Artist"

    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (50, 50)).save(tiny)
    with pytest.raises(ArtworkProblem, match="only 50×50"):
        build_assets(
            corpus["flac-stereo"].path,
            Sidecar.model_validate({"artwork": str(tiny)}),
            CONFIG,
            tmp_path / "bad",
            ff,
        )
    assert not (tmp_path / "bad").exists()  # refused before any work


@pytest.fixture
def wheel_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ffmpeg]:
    """Only the imageio-ffmpeg binary: no ffmpeg or ffprobe on PATH."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE", raising=False)
    find_ffmpeg.cache_clear()
    try:
        yield find_ffmpeg()
    finally:
        find_ffmpeg.cache_clear()


@pytest.mark.parametrize("key", ["mp3-stereo", "m4a-stereo", "flac-mono", "wavf32-stereo"])
def test_the_wheel_ffmpeg_without_ffprobe_is_enough(
    corpus: dict[str, Track], ff: Ffmpeg, wheel_ffmpeg: Ffmpeg, tmp_path: Path, key: str
) -> None:
    assert wheel_ffmpeg.source == "imageio-ffmpeg" and wheel_ffmpeg.ffprobe is None
    path = corpus[key].path
    built = build_assets(path, Sidecar(), CONFIG, tmp_path, ffmpeg=None)
    assert abs(mp3_file(built.preview).info.length - 5.0) < 0.1
    # The wheel's ffmpeg is another release: the waveform it decodes must be the system one's
    # (AAC's priming samples are trimmed differently across releases: a few ms of length).
    info = probe(path)
    wheel, system = scan(path, info, 48, 5.0, wheel_ffmpeg), scan(path, info, 48, 5.0, ff)
    assert wheel.peaks == pytest.approx(system.peaks, abs=1e-3)
    assert wheel.loudest_start == system.loudest_start
    assert wheel.duration == pytest.approx(system.duration, abs=0.05)


def test_broken_audio_fails_before_writing_anything(
    corpus: dict[str, Track], ff: Ffmpeg, tmp_path: Path
) -> None:
    cut = tmp_path / "Night Drive.wav"
    data = corpus["wav16-stereo"].path.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioIncomplete, match=r"^Night Drive\.wav: the WAV header says"):
        build_assets(cut, Sidecar(), CONFIG, tmp_path / "out", ff)
    garbage = tmp_path / "Night Drive.ogg"
    garbage.write_bytes(corpus["ogg-stereo"].path.read_bytes()[:200] + bytes(50_000))
    with pytest.raises(AudioProblem, match=r"^Night Drive\.ogg: "):
        build_assets(garbage, Sidecar(), CONFIG, tmp_path / "out", ff)
    assert not (tmp_path / "out").exists()


def test_hash_is_of_the_whole_file_with_chunks_after_the_audio(ff: Ffmpeg, tmp_path: Path) -> None:
    """A WAV whose tag chunk follows the audio: the hash still covers every byte."""
    path = tmp_path / "tagged.wav"
    run_ffmpeg(ff, "-f", "lavfi", "-i", "sine=duration=2", str(path))
    wav = mutagen_module("wave").WAVE(path)
    wav.add_tags()
    wav.tags.add(mutagen_module("id3").TIT2(encoding=3, text="After"))
    wav.save()
    built = build_assets(path, Sidecar(), CONFIG, tmp_path / "out", ff)
    assert built.title == "After"
    assert built.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def _untagged_wav(path: Path, seconds: float = 6.0) -> Path:
    rate = 44100
    tone = (np.sin(np.arange(int(rate * seconds)) * 2 * np.pi * 330 / rate) * 12000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.tobytes())
    return path


@pytest.mark.parametrize(
    ("sidecar", "tagged", "artist", "title"),
    [
        ({"title": "Own Title", "artist": "Sidecar Artist"}, True, "Sidecar Artist", "Own Title"),
        ({"title": "Own Title"}, True, "DJ Test", "Own Title"),  # the file's tag beats defaults
        ({}, True, "DJ Test", "Night Drive"),
        ({"artist": "Sidecar Artist"}, False, "Sidecar Artist", "plain"),
        ({}, False, "Config Artist", "plain"),  # nothing else says: the config's default
    ],
)
def test_preview_tags_are_the_metadata_sent_to_soundcloud(
    corpus: dict[str, Track],
    ff: Ffmpeg,
    tmp_path: Path,
    sidecar: dict[str, str],
    tagged: bool,
    artist: str,
    title: str,
) -> None:
    """The preview's ID3 artist and title come from the same effective metadata SoundCloud is
    sent (metadata.metadata_for), whatever the sidecar, the file's tags and config defaults say."""
    config = CONFIG.model_copy(update={"defaults": DefaultsConfig(artist="Config Artist")})
    audio = corpus["flac-stereo"].path if tagged else _untagged_wav(tmp_path / "plain.wav")
    model = Sidecar.model_validate(sidecar)
    built = build_assets(audio, model, config, tmp_path / "out", ff)

    record = TrackRecord(audio_path=str(audio), title=audio.stem, probe=probe_dict(built.info))
    sent = metadata_for(record, config, model, audio)
    tags = mp3_file(built.preview).tags
    assert (str(tags["TPE1"]), str(tags["TIT2"])) == (sent["artist"], sent["title"])
    assert (sent["artist"], sent["title"]) == (artist, title)
    assert built.title == title
