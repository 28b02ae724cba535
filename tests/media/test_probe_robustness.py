"""probe() is total: one regression test per way a damaged file used to escape it, or be mislabelled.

Before these fixes each of these files made probe() raise something other than AudioProblem
(struct.error, OverflowError, OSError, ...), block forever, or refuse the file with a wrong or
unreadable reason; such a file then never appeared in `releaseosd status`. Most start from a real
file ffmpeg made and change what a damaged or half-written export would have.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from media_corpus import Track, run_ffmpeg

from releaseosd.media import probe as probe_module
from releaseosd.media.ffmpeg import Ffmpeg
from releaseosd.media.probe import AudioIncomplete, AudioInfo, AudioProblem, human_size, probe


def _refused(path: Path) -> AudioProblem:
    """The AudioProblem probe() raises for path; fails on AudioInfo or any other exception."""
    with pytest.raises(AudioProblem) as caught:
        probe(path)
    message = str(caught.value)
    assert message.startswith(f"{path.name}: "), message
    return caught.value


def _boxes(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of an MP4's top-level boxes."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append((pos, size, kind))
        pos += size
    return out


def _chunk(data: bytes, cid: bytes, order: str) -> tuple[int, int]:
    """(offset of the body, size) of the first WAV/AIFF chunk called cid."""
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack(order + "I", data[pos + 4 : pos + 8])[0]
        if data[pos : pos + 4] == cid:
            return pos + 8, size
        pos += 8 + size + (size & 1)
    raise AssertionError(f"no {cid!r} chunk")


# --- M4A ----------------------------------------------------------------------------------------


def test_m4a_cut_inside_a_64_bit_box_header_is_incomplete(
    corpus: dict[str, Track], tmp_path: Path
) -> None:
    """An export over 4 GB writes its mdat with a 64-bit size (size field 1, then 8 more bytes).

    Cut 12 bytes into that 16-byte header (4 bytes into the 64-bit size): was struct.error.
    """
    data = corpus["m4a-stereo"].path.read_bytes()
    _ftyp, (free, free_size, free_kind), (mdat, mdat_size, _) = _boxes(data)[:3]
    assert (free_kind, free_size, mdat) == (b"free", 8, free + 8)  # ffmpeg's spare 8 bytes
    big = data[:free] + struct.pack(">I4sQ", 1, b"mdat", 16 + mdat_size - 8) + data[mdat + 8 :]
    path = tmp_path / "Long Mix.m4a"
    path.write_bytes(big[: free + 12])
    problem = _refused(path)
    assert type(problem) is AudioIncomplete
    assert str(problem) == (
        "Long Mix.m4a: the file ends inside the header of its 'mdat' box: "
        "the export looks unfinished or truncated"
    )
    path.write_bytes(big)  # the same file complete still probes
    assert isinstance(probe(path), AudioInfo)


def test_m4a_garbage_after_the_index_is_damage_not_an_unfinished_box(
    corpus: dict[str, Track], tmp_path: Path
) -> None:
    """Bytes that are no box at all (control characters for a type) used to read as a box 'still
    being written', with the control characters printed in the message."""
    data = corpus["m4a-stereo"].path.read_bytes()
    path = tmp_path / "Trailing.m4a"
    path.write_bytes(data + b"\x00\x10\x00\x00\x01\x02\x03\x04" + b"\x00" * 100)
    problem = _refused(path)
    assert type(problem) is AudioProblem
    assert str(problem) == f"Trailing.m4a: the M4A's box list is damaged at byte {len(data)}"


# --- AIFF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exponent",
    [
        0x7FFE,  # the largest finite 80-bit exponent: math.ldexp raised OverflowError
        0x4400,  # about 2^1025 Hz: OverflowError too
        0x4400 | 0x8000,  # the same, negative: OverflowError
        0x4050,  # about 10^24 Hz: a finite float, printed as a 25-digit "sample rate"
    ],
)
def test_aiff_absurd_sample_rate_exponent_is_damage(
    corpus: dict[str, Track], tmp_path: Path, exponent: int
) -> None:
    data = bytearray(corpus["aiff-stereo"].path.read_bytes())
    body, _ = _chunk(bytes(data), b"COMM", ">")
    assert data[body + 8 : body + 10] == b"\x40\x0e"  # 44100 Hz: 2^15 * 1.35
    data[body + 8 : body + 10] = struct.pack(">H", exponent)
    path = tmp_path / "Rate.aiff"
    path.write_bytes(data)
    problem = _refused(path)
    assert type(problem) is AudioProblem
    assert str(problem) == (
        "Rate.aiff: the AIFF header says an impossible sample rate: the file is damaged"
    )


def test_aiff_infinite_sample_rate_keeps_its_message(
    corpus: dict[str, Track], tmp_path: Path
) -> None:
    """Exponent 0x7FFF (infinity) was already handled; its message stays as it was."""
    data = bytearray(corpus["aiff-stereo"].path.read_bytes())
    body, _ = _chunk(bytes(data), b"COMM", ">")
    data[body + 8 : body + 10] = b"\x7f\xff"
    path = tmp_path / "Inf.aiff"
    path.write_bytes(data)
    assert str(_refused(path)) == (
        "Inf.aiff: the AIFF header says a sample rate of 0 Hz: the file is damaged"
    )


def test_aiff_sample_offset_past_its_chunk_is_damage_not_unfinished(
    corpus: dict[str, Track], tmp_path: Path
) -> None:
    """An SSND offset beyond the chunk's own size used to read as "only 0 bytes on disk", an
    export still being written: the track would wait for audio that never comes."""
    data = bytearray(corpus["aiff-stereo"].path.read_bytes())
    body, _ = _chunk(bytes(data), b"SSND", ">")
    data[body : body + 4] = b"\xff\xff\xff\xf0"
    path = tmp_path / "Offset.aiff"
    path.write_bytes(data)
    problem = _refused(path)
    assert type(problem) is AudioProblem
    assert "says its samples start past its own end: the file is damaged" in str(problem)


def test_aiff_run_of_empty_chunks_stops_early(tmp_path: Path) -> None:
    """Thousands of zero-size chunks and no audio: refused after a bounded walk, not after
    reading every 8 bytes of what could be a gigabyte file."""
    comm = b"COMM" + struct.pack(">I", 18) + struct.pack(">hIh", 2, 100, 16) + b"\x40\x0e\xac\x44"
    comm += b"\x00" * 6
    body = b"AIFF" + comm + b"ANNO\x00\x00\x00\x00" * 12_000
    path = tmp_path / "Empty Chunks.aiff"
    path.write_bytes(b"FORM" + struct.pack(">I", len(body)) + body)
    assert str(_refused(path)) == (
        "Empty Chunks.aiff: the AIFF's chunk list is damaged (10,000 chunks and no audio)"
    )


# --- WAV ----------------------------------------------------------------------------------------


def test_rf64_cut_inside_its_ds64_chunk_is_refused(ff: Ffmpeg, tmp_path: Path) -> None:
    """RF64 keeps its real sizes in a 'ds64' chunk: cut inside it was struct.error."""
    source = tmp_path / "source.wav"
    run_ffmpeg(ff, "-f", "lavfi", "-i", "sine=duration=1", "-rf64", "always", str(source))
    data = source.read_bytes()
    assert data[:4] == b"RF64" and data[12:16] == b"ds64"
    path = tmp_path / "Cut RF64.wav"
    path.write_bytes(data[:30])
    problem = _refused(path)
    assert type(problem) is AudioProblem
    assert str(problem) == (
        "Cut RF64.wav: the WAV's ds64 chunk (its 64-bit sizes) is cut short: the file is damaged"
    )


def test_wav_extensible_format_chunk_cut_short_is_damage(tmp_path: Path) -> None:
    """A WAVE_FORMAT_EXTENSIBLE fmt chunk without its sub-format used to be reported as
    "compressed audio (format 0xFFFE)", which sends the producer to the wrong export setting."""
    fmt = struct.pack("<HHIIHHH", 0xFFFE, 2, 44100, 44100 * 6, 6, 24, 0)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", 6000) + b"\x00" * 6000
    path = tmp_path / "Short fmt.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert str(_refused(path)) == (
        "Short fmt.wav: the WAV's format chunk is cut short: the file is damaged"
    )


def test_wav_run_of_empty_chunks_stops_early(tmp_path: Path) -> None:
    fmt = struct.pack("<HHIIHH", 1, 2, 44100, 44100 * 4, 4, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"JUNK\x00\x00\x00\x00" * 12_000
    path = tmp_path / "Empty Chunks.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert str(_refused(path)) == (
        "Empty Chunks.wav: the WAV's chunk list is damaged (10,000 chunks and no audio)"
    )


def test_wav_that_shrinks_while_being_read_is_incomplete(
    corpus: dict[str, Track], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size is taken once; a DAW re-exporting over the file can shorten it mid-read. The
    chunk walk then read fewer than 8 bytes of a chunk header: struct.error."""
    data = corpus["wav16-stereo"].path.read_bytes()
    path = tmp_path / "Rewritten.wav"
    path.write_bytes(data[:40])  # RIFF header, fmt chunk, half the next chunk's header
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        fields = list(st[:10])
        fields[6] = len(data)  # the size before the re-export started
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", stale_fstat)
    problem = _refused(path)
    assert type(problem) is AudioIncomplete
    assert str(problem) == (
        "Rewritten.wav: the file got shorter while it was being read: "
        "the export looks unfinished or truncated"
    )


# --- FLAC and MP3: metadata written before the audio ----------------------------------------------


def test_flac_cut_inside_its_metadata_is_incomplete(
    corpus: dict[str, Track], tmp_path: Path
) -> None:
    """Encoders write tags and artwork before the audio; a FLAC cut there was refused as "not a
    valid FLAC file" (mutagen: file said 8192 bytes, read 1000 bytes) instead of waited for."""
    data = corpus["flac-stereo"].path.read_bytes()
    pos, kinds = 4, []
    while True:  # find the padding block ffmpeg writes after the tags
        header, length = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        kinds.append(header & 0x7F)
        if header & 0x7F == 1 or header & 0x80:
            break
        pos += 4 + length
    assert kinds[-1] == 1 and length > 2000, kinds
    path = tmp_path / "Half Written.flac"
    path.write_bytes(data[: pos + 4 + 1000])
    problem = _refused(path)
    assert type(problem) is AudioIncomplete
    assert str(problem) == (
        f"Half Written.flac: its FLAC reserved space says {human_size(length)} but only "
        f"{human_size(1000)} are on disk: the export looks unfinished or truncated"
    )


def test_mp3_cut_inside_its_id3_tag_is_incomplete(corpus: dict[str, Track], tmp_path: Path) -> None:
    """An MP3's ID3 tag (with artwork, often megabytes) comes first; cut inside it the file was
    refused as "not a valid MP3 file" instead of waited for."""
    data = corpus["mp3-stereo"].path.read_bytes()
    assert data[:3] == b"ID3"
    tag = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    path = tmp_path / "Half Written.mp3"
    path.write_bytes(data[: tag // 2])
    problem = _refused(path)
    assert type(problem) is AudioIncomplete
    assert str(problem) == (
        f"Half Written.mp3: its ID3 tag (title, artist, artwork) says {human_size(tag)} but only "
        f"{human_size(tag // 2)} are on disk: the export looks unfinished or truncated"
    )


# --- races and the file system --------------------------------------------------------------------


class _ShrinkAfterParse:
    """mutagen.mp3 whose MP3() reads the file whole, then lets `after` change it on disk."""

    def __init__(self, after: Any) -> None:
        import mutagen.mp3

        self._real: Any = mutagen.mp3
        self._after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def MP3(self, path: Path) -> Any:  # mutagen's name
        audio = self._real.MP3(path)
        self._after(path)
        return audio


def _patch_mp3(monkeypatch: pytest.MonkeyPatch, after: Any) -> None:
    real = probe_module._mutagen
    shrink = _ShrinkAfterParse(after)
    monkeypatch.setattr(
        probe_module, "_mutagen", lambda name: shrink if name == "mp3" else real(name)
    )


def _ffmpeg_mp3(ff: Ffmpeg, tmp_path: Path) -> tuple[Path, int]:
    """An ffmpeg MP3 (its 'Lavc' Info tag is what the gapless reader looks at) and where its
    Info tag starts."""
    path = tmp_path / "Take.mp3"
    run_ffmpeg(ff, "-f", "lavfi", "-i", "sine=duration=2", str(path))
    data = path.read_bytes()
    start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    return path, data.index(b"Info", start, start + 64)


def test_mp3_cut_after_mutagen_read_it_still_probes(
    ff: Ffmpeg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder-delay reader opens the file a second time; if it was cut in between (a
    re-export starting), the Info tag it finds is short: struct.error."""
    path, info_at = _ffmpeg_mp3(ff, tmp_path)
    _patch_mp3(monkeypatch, lambda p: os.truncate(p, info_at + 6))
    info = probe(path)  # what mutagen read stands; the decode scan sees the cut
    assert info.format == "mp3" and abs(info.duration - 2.0) < 0.1


def test_mp3_deleted_after_mutagen_read_it_is_gone(
    ff: Ffmpeg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleted between the two reads: FileNotFoundError escaped."""
    path, _ = _ffmpeg_mp3(ff, tmp_path)
    _patch_mp3(monkeypatch, lambda p: p.unlink())
    problem = _refused(path)
    assert str(problem) == "Take.mp3: the file is gone (moved or deleted)"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_called_wav_is_refused_without_waiting(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until something writes to it: probe() never returned."""
    fifo = tmp_path / "Live Input.wav"
    os.mkfifo(fifo)
    outcome: list[BaseException | AudioInfo] = []

    def run() -> None:
        try:
            outcome.append(probe(fifo))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the blocked open() return
        thread.join(10)
        pytest.fail("probe() blocked on a named pipe")
    (result,) = outcome
    assert isinstance(result, AudioProblem), result
    assert str(result) == (
        "Live Input.wav: not an audio file (a pipe or device, not a regular file)"
    )


def test_read_errors_are_audio_problems(
    corpus: dict[str, Track], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing disk or an unplugged drive raises OSError from a read: it escaped."""
    path = tmp_path / "Flaky Drive.wav"
    path.write_bytes(corpus["wav16-stereo"].path.read_bytes())

    def eio(*args: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(probe_module, "_wav_header", eio)
    assert str(_refused(path)) == "Flaky Drive.wav: cannot be read (Input/output error)"


def test_anything_unforeseen_is_an_audio_problem(
    corpus: dict[str, Track], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence: an exception no header check foresaw still names the file."""
    path = tmp_path / "Odd.aiff"
    path.write_bytes(corpus["aiff-stereo"].path.read_bytes())

    def boom(*args: object) -> None:
        raise IndexError("index out of range")

    monkeypatch.setattr(probe_module, "_aiff_header", boom)
    assert str(_refused(path)) == (
        "Odd.aiff: could not be read as audio: it is damaged in a way releaseosd does not "
        "recognise (IndexError)"
    )


# --- content sniffing -----------------------------------------------------------------------------


def test_a_few_undecodable_bytes_are_not_called_text(tmp_path: Path) -> None:
    """Two bytes that are not UTF-8 were reported as "looks like text: ''"."""
    path = tmp_path / "Stub.ogg"
    path.write_bytes(b"\xfe\xfd")
    assert str(_refused(path)) == (
        "Stub.ogg: not a OGG file: it does not start like one (damaged, or not audio at all)"
    )
