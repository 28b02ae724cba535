"""probe(): real files of every supported format, and a corpus of broken ones."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from media_corpus import TAGS, Track, run_ffmpeg

from releaseosd.media.ffmpeg import Ffmpeg
from releaseosd.media.probe import AudioIncomplete, AudioProblem, pcm_layout, probe
from releaseosd.media.waveform import scan

CORPUS_KEYS = [f"{name}-{layout}" for name in (
    "wav16", "wav24", "wavf32", "aiff", "flac", "mp3", "ogg", "m4a"
) for layout in ("mono", "stereo")]  # fmt: skip


@pytest.mark.parametrize("key", CORPUS_KEYS)
def test_real_files_probe_exactly(corpus: dict[str, Track], key: str) -> None:
    track = corpus[key]
    info = probe(track.path)
    assert info.format == track.format
    assert abs(info.duration - track.seconds) < 0.05, info.duration
    # Mono AAC-LC says channelConfiguration 1, which could also be HE-AACv2 parametric stereo
    # without decoding; mutagen then falls back to the sample entry's fixed 2. Harmless: the
    # preview of such a file is stereo.
    assert info.channels == (2 if track.format == "m4a" else track.channels)
    assert info.sample_rate == track.sample_rate
    assert info.bit_depth == track.bit_depth
    assert info.tags.title == TAGS["title"]
    assert info.tags.artist == TAGS["artist"]
    assert info.tags.genre == TAGS["genre"]
    assert info.tags.bpm == TAGS["bpm"]
    assert info.tags.key == TAGS["key"]


def test_wav_extensible_layouts_are_read_from_the_header(corpus: dict[str, Track]) -> None:
    """ffmpeg writes 24-bit and float WAVs as WAVE_FORMAT_EXTENSIBLE (0xFFFE), as DAWs do."""
    for key, width, encoding in (("wav24-stereo", 3, "int"), ("wavf32-stereo", 4, "float")):
        raw = corpus[key].path.read_bytes()
        assert struct.unpack("<H", raw[20:22])[0] == 0xFFFE
        layout = pcm_layout(corpus[key].path)
        assert layout is not None
        assert (layout.sample_width, layout.encoding, layout.channels) == (width, encoding, 2)
        assert layout.frames == 12 * 44100
        assert layout.data_offset + layout.data_size <= len(raw)


def test_riff_info_tags_are_read(ff: Ffmpeg, tmp_path: Path) -> None:
    path = tmp_path / "info.wav"
    run_ffmpeg(
        ff, "-f", "lavfi", "-i", "sine=duration=1", "-metadata", "title=Info Title",
        "-metadata", "artist=Info Artist", "-metadata", "genre=House", str(path),
    )  # fmt: skip
    tags = probe(path).tags
    assert (tags.title, tags.artist, tags.genre) == ("Info Title", "Info Artist", "House")


def test_rf64_and_opus_and_alac_probe(ff: Ffmpeg, tmp_path: Path) -> None:
    cases = {
        "rf64.wav": ["-rf64", "always", "-c:a", "pcm_s24le"],
        "opus.opus": ["-c:a", "libopus"],
        "alac.m4a": ["-c:a", "alac"],
        "float.aiff": ["-c:a", "pcm_f32be"],
    }
    for name, options in cases.items():
        path = tmp_path / name
        run_ffmpeg(ff, "-f", "lavfi", "-i", "sine=duration=3.5", *options, str(path))
        info = probe(path)
        assert abs(info.duration - 3.5) < 0.05, (name, info.duration)


def test_mp3_encoder_delay_is_not_counted(ff: Ffmpeg, tmp_path: Path) -> None:
    """ffmpeg-made MP3s carry their delay/padding in a 'Lavc' Info tag mutagen ignores."""
    for rate in (22050, 32000, 48000):
        path = tmp_path / f"{rate}.mp3"
        run_ffmpeg(ff, "-f", "lavfi", "-i", f"sine=duration=7.3:sample_rate={rate}", str(path))
        assert abs(probe(path).duration - 7.3) < 0.005


# --- the broken corpus ----------------------------------------------------------------------


def _wav_header(data_size: int, riff_size: int | None = None) -> bytes:
    riff = riff_size if riff_size is not None else 36 + data_size
    fmt = struct.pack("<HHIIHH", 1, 2, 44100, 44100 * 4, 4, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", data_size))
    )


def _cut(source: Path, target: Path, keep: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


Maker = Callable[[Path, dict[str, Track], Ffmpeg], Path]


def _bad_cases() -> dict[str, tuple[Maker, type[AudioProblem], str]]:
    rng = bytes((i * 7919 + 13) % 251 for i in range(64 * 1024))  # deterministic noise

    def write(name: str, data: bytes) -> Maker:
        def make(tmp: Path, corpus: dict[str, Track], ff: Ffmpeg) -> Path:
            path = tmp / name
            path.write_bytes(data)
            return path

        return make

    def cut(key: str, name: str, keep: float) -> Maker:
        return lambda tmp, corpus, ff: _cut(corpus[key].path, tmp / name, keep)

    def placeholder(tmp: Path, corpus: dict[str, Track], ff: Ffmpeg) -> Path:
        path = tmp / "Still Writing.wav"
        path.write_bytes(_wav_header(0, riff_size=0) + b"\x01\x00" * 40000)
        return path

    def no_moov(tmp: Path, corpus: dict[str, Track], ff: Ffmpeg) -> Path:
        data = corpus["m4a-stereo"].path.read_bytes()
        path = tmp / "NoIndex.m4a"
        path.write_bytes(data[: data.index(b"moov") - 4])  # ffmpeg writes the index last
        return path

    def adpcm(tmp: Path, corpus: dict[str, Track], ff: Ffmpeg) -> Path:
        path = tmp / "ADPCM.wav"
        run_ffmpeg(ff, "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "adpcm_ima_wav", str(path))
        return path

    def folder(tmp: Path, corpus: dict[str, Track], ff: Ffmpeg) -> Path:
        path = tmp / "Folder.wav"
        path.mkdir()
        return path

    def png(tmp: Path, corpus: dict[str, Track], ff: Ffmpeg) -> Path:
        from PIL import Image

        path = tmp / "Cover.wav"
        Image.new("RGB", (8, 8)).save(path, format="PNG")
        return path

    def ogg_garbage(tmp: Path, corpus: dict[str, Track], ff: Ffmpeg) -> Path:
        data = corpus["ogg-stereo"].path.read_bytes()
        path = tmp / "Garbled.ogg"
        path.write_bytes(data[:58] + rng[: len(data) - 58])  # keep only the first page header
        return path

    return {
        "zero-length": (write("Night Drive.wav", b""), AudioProblem, "the file is empty (0 bytes)"),
        "text named .wav": (
            write("Notes.wav", b"Remember to export the\nfinal mix at -14 LUFS\n" * 20),
            AudioProblem,
            "not an audio file (looks like text",
        ),
        "html named .mp3": (
            write("Download.mp3", b"<!DOCTYPE html><html><body>404</body></html>\n"),
            AudioProblem,
            "looks like text",
        ),
        "truncated wav": (
            cut("wav16-stereo", "Cut.wav", 0.25),
            AudioIncomplete,
            "the WAV header says 2.1 MB of audio but only 529 KB are on disk",
        ),
        "wav header only, nothing promised": (
            write("Empty Header.wav", _wav_header(0)),
            AudioProblem,
            "no audio in it",
        ),
        "wav header only, audio promised": (
            write("Header Only.wav", _wav_header(52_000_000)),
            AudioIncomplete,
            "says 52 MB of audio but only 0 bytes are on disk",
        ),
        "wav sizes not filled in yet": (placeholder, AudioIncomplete, "does not say how much"),
        "random bytes .wav": (write("Noise.wav", rng), AudioProblem, "not a WAV file"),
        "png renamed .wav": (png, AudioProblem, "not an audio file (looks like a PNG image)"),
        "zip renamed .mp3": (
            write("Stems.mp3", b"PK\x03\x04" + rng[:1000]),
            AudioProblem,
            "looks like a ZIP archive",
        ),
        "corrupt flac": (
            write("Broken.flac", b"fLaC" + rng[:5000]),
            AudioProblem,
            "not a valid FLAC file",
        ),
        "garbage mp3": (write("Garbage.mp3", rng), AudioProblem, "not a valid MP3 file"),
        "unsupported extension": (
            write("Night Drive.xyz", rng[:100]),
            AudioProblem,
            "unsupported format .xyz (SoundCloud takes WAV, AIFF, FLAC, MP3, OGG, M4A/AAC)",
        ),
        "truncated aiff": (
            cut("aiff-stereo", "Cut.aiff", 0.5),
            AudioIncomplete,
            "the AIFF header says",
        ),
        "ogg with garbage body": (ogg_garbage, AudioProblem, "Garbled.ogg: "),
        "m4a cut in half": (cut("m4a-stereo", "Half.m4a", 0.5), AudioIncomplete, "'mdat' box says"),
        "m4a without its index": (no_moov, AudioIncomplete, "no index (moov box) yet"),
        "compressed wav": (adpcm, AudioProblem, "holds compressed audio (format 0x0011)"),
        "a folder": (folder, AudioProblem, "a folder, not an audio file"),
        "missing": (lambda tmp, corpus, ff: tmp / "Gone.wav", AudioProblem, "the file is gone"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", sorted(BAD))
def test_broken_files_are_refused_with_a_clear_message(
    case: str, tmp_path: Path, corpus: dict[str, Track], ff: Ffmpeg
) -> None:
    make, kind, fragment = BAD[case]
    path = make(tmp_path, corpus, ff)
    with pytest.raises(AudioProblem) as caught:
        info = probe(path)
        # Some damage only shows when decoding: the scan is the second line of defence.
        scan(path, info, 32, 5.0, ff)
    assert type(caught.value) is kind, caught.value
    message = str(caught.value)
    assert message.startswith(f"{path.name}: "), message
    assert fragment in message, message


def test_only_some_damage_needs_the_decode(
    tmp_path: Path, corpus: dict[str, Track], ff: Ffmpeg
) -> None:
    """probe alone catches everything except what only decoding can reveal."""
    decode_only = {"ogg with garbage body"}
    for case in sorted(set(BAD) - decode_only):
        make, kind, _ = BAD[case]
        folder = tmp_path / case.replace(" ", "_").replace(",", "").replace(".", "")
        folder.mkdir()
        with pytest.raises(kind):
            probe(make(folder, corpus, ff))


def test_truncated_flac_is_incomplete_after_decoding(
    tmp_path: Path, corpus: dict[str, Track], ff: Ffmpeg
) -> None:
    path = _cut(corpus["flac-stereo"].path, tmp_path / "Half.flac", 0.5)
    info = probe(path)  # FLAC's header states the length; the missing half shows on decoding
    with pytest.raises(AudioIncomplete, match=r"Half\.flac: the FLAC header says 12\.0 s"):
        scan(path, info, 32, 5.0, ff)
