"""What an audio file is: format, length, sample rate, channels, bit depth and its own tags.

Every refusal is an AudioProblem whose message names the file and says, in a producer's words, what
is wrong. AudioIncomplete is the case worth waiting on: a header that promises more audio than the
disk holds, which is what an export still being written (or cut short) looks like.

mutagen reads tags and the compressed formats. WAV and AIFF headers are read here as well: mutagen
trusts the header's sizes, the standard `wave` module refuses 24-bit/float/extensible files, and the
waveform scan needs the exact sample layout to read PCM straight from disk.

probe() is total: whatever the bytes, it returns AudioInfo or raises AudioProblem. The header readers
check every size and number they read before trusting it (a cut header, an absurd sample rate, a
chunk that claims gigabytes, a run of empty chunks), and probe() turns anything unforeseen into an
AudioProblem too, so a damaged file still shows up in `releaseosd status` with a reason.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

AudioFormat = Literal["wav", "aiff", "flac", "mp3", "ogg", "m4a"]

SUFFIXES: dict[str, AudioFormat] = {
    ".wav": "wav",
    ".wave": "wav",
    ".aif": "aiff",
    ".aiff": "aiff",
    ".aifc": "aiff",
    ".flac": "flac",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "ogg",
    ".m4a": "m4a",
}
ACCEPTED = "SoundCloud takes WAV, AIFF, FLAC, MP3, OGG, M4A/AAC"
_NAMES: dict[AudioFormat, str] = {
    "wav": "WAV",
    "aiff": "AIFF",
    "flac": "FLAC",
    "mp3": "MP3",
    "ogg": "OGG",
    "m4a": "M4A",
}
_MAX_TEXT_CHUNK = 1 << 20
_MAX_CHANNELS = 64
# Real WAV/AIFF files have a handful of chunks and M4As a handful of top-level boxes (fragmented
# files: two per fragment); more than this is a damaged header, and walking it would take minutes.
_MAX_CHUNKS = 10_000
_MAX_BOXES = 100_000
_MAX_RATE = 10**10  # beyond this a sample rate is not a number worth printing

_log = logging.getLogger(__name__)


class AudioProblem(Exception):
    """The file cannot be used; str(exc) is a message for the producer, naming the file."""


class AudioIncomplete(AudioProblem):
    """The header promises more audio than is on disk: still being written, or cut short.

    Worth re-checking once the file stops changing rather than marking the track invalid.
    """


@dataclass(frozen=True)
class AudioTags:
    title: str | None = None
    artist: str | None = None
    genre: str | None = None
    bpm: float | None = None
    key: str | None = None


@dataclass(frozen=True)
class AudioInfo:
    format: AudioFormat
    duration: float
    sample_rate: int
    channels: int
    bit_depth: int | None
    tags: AudioTags


@dataclass(frozen=True)
class PcmLayout:
    """Where and how uncompressed samples sit in a WAV or AIFF file."""

    data_offset: int
    frames: int
    channels: int
    sample_rate: int
    sample_width: int  # bytes per sample in the file (24-bit audio: 3)
    encoding: Literal["int", "uint", "float"]
    byte_order: Literal["<", ">"]
    bit_depth: int

    @property
    def block_align(self) -> int:
        return self.sample_width * self.channels

    @property
    def data_size(self) -> int:
        return self.frames * self.block_align


@dataclass(frozen=True)
class _Header:
    """A parsed WAV/AIFF header: the sample layout and the RIFF INFO / AIFF NAME, AUTH text."""

    layout: PcmLayout
    text_tags: AudioTags


def human_size(n: int) -> str:
    if n >= 10 * 1000**2:
        return f"{n / 1000**2:.0f} MB"
    if n >= 1000**2:
        return f"{n / 1000**2:.1f} MB"
    if n >= 1000:
        return f"{n / 1000:.0f} KB"
    return f"{n} bytes"


def _says_but(what: str, declared: int, on_disk: int) -> str:
    """'… says 52 MB of audio but only 12 MB are on disk', exact when rounding would hide it."""
    said, has = human_size(declared), human_size(on_disk)
    if said == has:
        said, has = f"{declared:,} bytes", f"{on_disk:,} bytes"
    return f"{what} says {said}{' of audio' if 'header' in what else ''} but only {has} are on disk"


def _problem(path: Path, what: str) -> AudioProblem:
    return AudioProblem(f"{path.name}: {what}")


def _incomplete(path: Path, what: str) -> AudioIncomplete:
    return AudioIncomplete(f"{path.name}: {what}: the export looks unfinished or truncated")


def _read_at(path: Path, f: BinaryIO, pos: int, n: int) -> bytes:
    """n bytes at pos, which the size taken at the start says are there.

    Fewer means the file shrank while it was being read: an export being rewritten.
    """
    f.seek(pos)
    raw = f.read(n)
    if len(raw) < n:
        raise _incomplete(path, "the file got shorter while it was being read")
    return raw


# --- what is in the file ----------------------------------------------------------------------

_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"MThd", "a MIDI file (notes, not audio)"),
    (b"\x7fELF", "a program"),
)


def _skip_id3(head: bytes, f: BinaryIO) -> bytes:
    """The first bytes after a leading ID3v2 tag (FLAC files sometimes carry one)."""
    size = 0
    for b in head[6:10]:
        size = (size << 7) | (b & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    f.seek(10 + size + footer)
    return f.read(16)


def _mpeg_sync(b: bytes) -> Literal["mpeg", "adts"] | None:
    if len(b) < 4 or b[0] != 0xFF or (b[1] & 0xE0) != 0xE0:
        return None
    version, layer = (b[1] >> 3) & 3, (b[1] >> 1) & 3
    if (b[1] & 0xF6) == 0xF0:
        return "adts"
    bitrate, rate = b[2] >> 4, (b[2] >> 2) & 3
    if version == 1 or layer == 0 or bitrate in (0, 15) or rate == 3:
        return None
    return "mpeg"


def _looks_like_text(head: bytes) -> str | None:
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end is still text
            return None
        text = head[: exc.start].decode("utf-8")
    if not text:
        return None
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if printable < 0.95 * len(text):
        return None
    snippet = " ".join(text.split())[:40]
    return snippet


def sniff(path: Path, f: BinaryIO) -> AudioFormat | None:
    """The audio format the content is in, or None; raises AudioProblem for known non-audio."""
    head = f.read(1024)
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFX" and head[8:12] == b"WAVE":
        raise _problem(
            path, "a big-endian (RIFX) WAV, which SoundCloud does not take; export a standard WAV"
        )
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:3] == b"ID3" and len(head) >= 10:
        return "flac" if _skip_id3(head, f)[:4] == b"fLaC" else "mp3"
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            raise _problem(path, f"not an audio file (looks like {what})")
    sync = _mpeg_sync(head[:4])
    if sync == "adts":
        raise _problem(
            path, f"a raw AAC stream (ADTS), not a supported format ({ACCEPTED}); export M4A"
        )
    if sync == "mpeg":
        return "mp3"
    text = _looks_like_text(head)
    if text is not None:
        raise _problem(path, f"not an audio file (looks like text: {text!r})")
    return None


# --- WAV and AIFF headers ---------------------------------------------------------------------


def _chunk_id_ok(cid: bytes) -> bool:
    return all(32 <= b < 127 for b in cid)


def _riff_info(body: bytes) -> dict[str, str]:
    """RIFF LIST/INFO text fields (INAM title, IART artist, IGNR genre, ...)."""
    out: dict[str, str] = {}
    pos = 4
    while pos + 8 <= len(body):
        cid, size = body[pos : pos + 4], struct.unpack("<I", body[pos + 4 : pos + 8])[0]
        value = body[pos + 8 : pos + 8 + size].split(b"\x00", 1)[0]
        out[cid.decode("latin-1")] = _decode_text(value)
        pos += 8 + size + (size & 1)
    return out


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()


def _check_pcm(path: Path, kind: str, channels: int, rate: int, width: int, bits: int) -> None:
    if not 1 <= channels <= _MAX_CHANNELS:
        raise _problem(path, f"the {kind} header says {channels} channels: the file is damaged")
    if not 1000 <= rate <= 1_000_000:
        raise _problem(
            path, f"the {kind} header says a sample rate of {rate} Hz: the file is damaged"
        )
    if width not in (1, 2, 3, 4, 8) or not 1 <= bits <= 8 * width:
        raise _problem(path, f"the {kind} header says {bits}-bit samples: the file is damaged")


def _wav_header(path: Path, f: BinaryIO, size: int) -> _Header:
    f.seek(0)
    head = f.read(12)
    if len(head) < 12:
        raise _problem(path, "only part of a WAV header, no audio")
    riff64 = head[:4] in (b"RF64", b"BW64")
    riff_size = struct.unpack("<I", head[4:8])[0]
    ds64_riff = ds64_data = None
    fmt: tuple[int, int, int, int, int] | None = None  # tag, channels, rate, block_align, bits
    data: tuple[int, int] | None = None  # offset, declared size
    info: dict[str, str] = {}
    pos = 12
    chunks = 0
    while pos + 8 <= size:
        chunks += 1
        if chunks > _MAX_CHUNKS:
            if fmt is None or data is None:
                raise _problem(
                    path, f"the WAV's chunk list is damaged ({_MAX_CHUNKS:,} chunks and no audio)"
                )
            break
        cid, csize = struct.unpack("<4sI", _read_at(path, f, pos, 8))
        body = pos + 8
        if not _chunk_id_ok(cid):
            if fmt is None or data is None:
                raise _problem(path, f"the WAV's chunk list is damaged at byte {pos}")
            break  # trailing junk after the audio is harmless
        if cid == b"ds64" and csize >= 16:
            raw = f.read(16)
            if len(raw) < 16:
                raise _problem(
                    path,
                    "the WAV's ds64 chunk (its 64-bit sizes) is cut short: the file is damaged",
                )
            ds64_riff, ds64_data = struct.unpack("<QQ", raw)
        elif cid == b"fmt ":
            raw = f.read(min(csize, 40))
            if len(raw) < 16:
                raise _problem(path, "the WAV's format chunk is cut short: the file is damaged")
            tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", raw[:16])
            if tag == 0xFFFE and len(raw) < 26:
                raise _problem(path, "the WAV's format chunk is cut short: the file is damaged")
            if tag == 0xFFFE:
                valid_bits = struct.unpack("<H", raw[18:20])[0]
                tag = struct.unpack("<H", raw[24:26])[0]  # first two bytes of the sub-format GUID
                bits = valid_bits or bits
            fmt = (tag, channels, rate, block_align, bits)
        elif cid == b"data":
            declared = csize
            if riff64 and csize == 0xFFFFFFFF and ds64_data is not None:
                declared = ds64_data
            data = (body, declared)
            if declared in (0, 0xFFFFFFFF) or body + declared > size:
                break
            csize = declared
        elif cid == b"LIST" and csize <= _MAX_TEXT_CHUNK:
            raw = f.read(csize)
            if raw[:4] == b"INFO":
                info.update(_riff_info(raw))
        pos = body + csize + (csize & 1)

    if fmt is None:
        raise _problem(path, "the WAV has no format chunk: the file is damaged")
    if data is None:
        raise _problem(path, "the WAV has a header but no audio data")
    tag, channels, rate, block_align, bits = fmt
    if tag not in (1, 3):
        raise _problem(
            path,
            f"the WAV holds compressed audio (format 0x{tag:04X}); export uncompressed PCM WAV",
        )
    width = block_align // channels if channels else 0
    _check_pcm(path, "WAV", channels, rate, width, bits)
    if width * channels != block_align:
        raise _problem(path, "the WAV header's block size does not match its channels: damaged")
    offset, declared = data
    on_disk = size - offset
    if declared in (0, 0xFFFFFFFF) and on_disk > 0:
        raise _incomplete(
            path,
            f"the WAV header does not say how much audio there is yet, while {human_size(on_disk)} "
            "follow it",
        )
    if declared > on_disk:
        raise _incomplete(
            path,
            _says_but("the WAV header", declared, on_disk),
        )
    declared_riff = ds64_riff if riff64 and riff_size == 0xFFFFFFFF else riff_size
    if declared_riff not in (None, 0, 0xFFFFFFFF) and declared_riff + 8 > size:
        raise _incomplete(
            path,
            f"the RIFF header says {human_size(declared_riff + 8)} but the file has "
            f"{human_size(size)}",
        )
    if declared < block_align:
        raise _problem(path, "the WAV has a header but no audio in it (0 seconds)")
    encoding: Literal["int", "uint", "float"] = (
        "float" if tag == 3 else ("uint" if width == 1 else "int")
    )
    if encoding == "float" and width not in (4, 8):
        raise _problem(path, f"the WAV says {8 * width}-bit float samples: the file is damaged")
    layout = PcmLayout(offset, declared // block_align, channels, rate, width, encoding, "<", bits)
    tags = AudioTags(
        title=info.get("INAM") or None,
        artist=info.get("IART") or None,
        genre=info.get("IGNR") or None,
    )
    return _Header(layout, tags)


def _extended(raw: bytes) -> float | None:
    """An 80-bit IEEE 754 extended float (AIFF's sample rate); None when too large for a float."""
    exponent, mantissa = struct.unpack(">HQ", raw)
    sign = -1.0 if exponent & 0x8000 else 1.0
    exponent &= 0x7FFF
    if exponent == 0 and mantissa == 0:
        return 0.0
    if exponent == 0x7FFF:
        return math.inf
    try:
        return sign * math.ldexp(float(mantissa), exponent - 16383 - 63)
    except OverflowError:  # exponents above ~2^1024: a damaged header, not a sample rate
        return None


# AIFF-C compression types that are plain PCM: type -> (encoding, byte order, width or None)
_AIFC_PCM: dict[bytes, tuple[Literal["int", "float"], Literal["<", ">"], int | None]] = {
    b"NONE": ("int", ">", None),
    b"twos": ("int", ">", None),
    b"sowt": ("int", "<", None),
    b"in24": ("int", ">", 3),
    b"in32": ("int", ">", 4),
    b"fl32": ("float", ">", 4),
    b"FL32": ("float", ">", 4),
    b"fl64": ("float", ">", 8),
    b"FL64": ("float", ">", 8),
}


def _aiff_header(path: Path, f: BinaryIO, size: int) -> _Header:
    head = _read_at(path, f, 0, 12)
    form_size = struct.unpack(">I", head[4:8])[0]
    comm: tuple[int, int, int, float | None, bytes] | None = (
        None  # channels, frames, bits, rate, compression
    )
    ssnd: tuple[int, int] | None = None  # offset of the first sample, declared sample bytes
    text: dict[bytes, str] = {}
    pos = 12
    chunks = 0
    while pos + 8 <= size:
        chunks += 1
        if chunks > _MAX_CHUNKS:
            if comm is None or ssnd is None:
                raise _problem(
                    path, f"the AIFF's chunk list is damaged ({_MAX_CHUNKS:,} chunks and no audio)"
                )
            break
        cid, csize = struct.unpack(">4sI", _read_at(path, f, pos, 8))
        body = pos + 8
        if not _chunk_id_ok(cid):
            if comm is None or ssnd is None:
                raise _problem(path, f"the AIFF's chunk list is damaged at byte {pos}")
            break
        if cid == b"COMM":
            raw = f.read(min(csize, 64))
            if len(raw) < 18:
                raise _problem(path, "the AIFF's COMM chunk is cut short: the file is damaged")
            channels, frames, bits = struct.unpack(">hIh", raw[:8])
            compression = raw[18:22] if head[8:12] == b"AIFC" and len(raw) >= 22 else b"NONE"
            comm = (channels, frames, bits, _extended(raw[8:18]), compression)
        elif cid == b"SSND":
            offset = struct.unpack(">I", _read_at(path, f, body, 4))[0] if body + 8 <= size else 0
            if csize >= 8 and offset > csize - 8:
                raise _problem(
                    path,
                    "the AIFF's audio chunk (SSND) says its samples start past its own end: "
                    "the file is damaged",
                )
            ssnd = (body + 8 + offset, max(csize - 8 - offset, 0))
            if csize == 0 or body + csize > size:
                break
        elif cid in (b"NAME", b"AUTH") and csize <= _MAX_TEXT_CHUNK:
            text[cid] = _decode_text(f.read(csize).split(b"\x00", 1)[0])
        pos = body + csize + (csize & 1)

    if comm is None:
        raise _problem(path, "the AIFF has no COMM chunk: the file is damaged")
    if ssnd is None:
        raise _problem(path, "the AIFF has a header but no audio data")
    channels, frames, bits, rate_f, compression = comm
    pcm = _AIFC_PCM.get(compression)
    if pcm is None:
        name = compression.decode("latin-1", "replace")
        raise _problem(
            path, f"the AIFF holds compressed audio ({name!r}); export uncompressed AIFF"
        )
    encoding, order, fixed_width = pcm
    width = fixed_width or (bits + 7) // 8
    if rate_f is None or (math.isfinite(rate_f) and abs(rate_f) >= _MAX_RATE):
        raise _problem(path, "the AIFF header says an impossible sample rate: the file is damaged")
    rate = round(rate_f) if math.isfinite(rate_f) else 0
    _check_pcm(path, "AIFF", channels, rate, width, max(bits, 1))
    block = width * channels
    offset, declared = ssnd
    on_disk = max(size - offset, 0)
    wanted = frames * block
    if (frames == 0 or declared == 0) and on_disk >= block:
        raise _incomplete(
            path,
            f"the AIFF header does not say how much audio there is yet, while {human_size(on_disk)} "
            "follow it",
        )
    if wanted > on_disk:
        raise _incomplete(
            path,
            _says_but("the AIFF header", wanted, on_disk),
        )
    if form_size not in (0, 0xFFFFFFFF) and form_size + 8 > size:
        raise _incomplete(
            path,
            f"the AIFF header says {human_size(form_size + 8)} but the file has {human_size(size)}",
        )
    if frames == 0:
        raise _problem(path, "the AIFF has a header but no audio in it (0 seconds)")
    if wanted > declared:
        raise _problem(path, "the AIFF's COMM and SSND chunks disagree about its length: damaged")
    layout = PcmLayout(offset, frames, channels, rate, width, encoding, order, bits)
    tags = AudioTags(title=text.get(b"NAME") or None, artist=text.get(b"AUTH") or None)
    return _Header(layout, tags)


def pcm_layout(path: Path) -> PcmLayout | None:
    """The sample layout of an uncompressed WAV/AIFF; None for any other format."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        fmt = sniff(path, f)
        if fmt == "wav":
            return _wav_header(path, f, size).layout
        if fmt == "aiff":
            return _aiff_header(path, f, size).layout
    return None


# --- tags ---------------------------------------------------------------------------------------


def _bpm(value: object) -> float | None:
    try:
        bpm = float(str(value).strip().replace(",", "."))
    except ValueError:
        return None
    return bpm if 0 < bpm < 1000 else None


def _clean(value: object, limit: int = 200) -> str | None:
    text = str(value).replace("\x00", " ").strip() if value is not None else ""
    return text[:limit] if text else None


def _first(values: Any) -> Any:
    if isinstance(values, list | tuple):
        return values[0] if values else None
    return values


def _id3_tags(tags: Any) -> AudioTags:
    def text(frame_id: str) -> str | None:
        frame = tags.get(frame_id)
        return _clean(_first(frame.text)) if frame is not None and frame.text else None

    genre = None
    tcon = tags.get("TCON")
    if tcon is not None and tcon.genres:
        genre = _clean(tcon.genres[0])
    key = text("TKEY")
    if key is None:
        for frame in tags.getall("TXXX"):
            if frame.desc.lower() in ("initialkey", "key") and frame.text:
                key = _clean(frame.text[0])
    return AudioTags(
        title=text("TIT2"),
        artist=text("TPE1"),
        genre=genre,
        bpm=_bpm(text("TBPM")) if text("TBPM") else None,
        key=key,
    )


def _vorbis_tags(tags: Any) -> AudioTags:
    def text(*names: str) -> str | None:
        for name in names:
            values = tags.get(name)
            if values:
                return _clean(values[0])
        return None

    bpm_text = text("bpm", "tempo")
    return AudioTags(
        title=text("title"),
        artist=text("artist"),
        genre=text("genre"),
        bpm=_bpm(bpm_text) if bpm_text else None,
        key=text("key", "initialkey"),
    )


def _mp4_tags(tags: Any) -> AudioTags:
    def text(name: str) -> str | None:
        values = tags.get(name)
        if not values:
            return None
        value = values[0]
        return _clean(
            bytes(value).decode("utf-8", "replace") if isinstance(value, bytes) else value
        )

    tempo = tags.get("tmpo")
    key = text("----:com.apple.iTunes:initialkey") or text("----:com.apple.iTunes:KEY")
    return AudioTags(
        title=text("\xa9nam"),
        artist=text("\xa9ART"),
        genre=text("\xa9gen"),
        bpm=_bpm(tempo[0]) if tempo else None,
        key=key,
    )


def _merge(primary: AudioTags, fallback: AudioTags) -> AudioTags:
    return AudioTags(
        title=primary.title or fallback.title,
        artist=primary.artist or fallback.artist,
        genre=primary.genre or fallback.genre,
        bpm=primary.bpm or fallback.bpm,
        key=primary.key or fallback.key,
    )


# --- probe --------------------------------------------------------------------------------------


def _id3_length(head: bytes) -> int | None:
    """Bytes a leading ID3v2 tag takes (header, body, footer); None if head is not such a header."""
    if len(head) < 10 or head[:3] != b"ID3" or head[3] not in (2, 3, 4):
        return None
    if any(b & 0x80 for b in head[6:10]):  # the size is "syncsafe": seven bits a byte
        return None
    size = 0
    for b in head[6:10]:
        size = (size << 7) | b
    return 10 + size + (10 if head[3] == 4 and head[5] & 0x10 else 0)


def _leading_id3(path: Path, f: BinaryIO, size: int) -> None:
    """Refuse an MP3/FLAC whose ID3 tag (artwork, often megabytes) is not all on disk yet."""
    length = _id3_length(_read_at(path, f, 0, min(size, 10)))
    if length is not None and length > size:
        raise _incomplete(path, _says_but("its ID3 tag (title, artist, artwork)", length, size))


_FLAC_BLOCKS = {
    1: "reserved space",
    2: "application data",
    3: "seek table",
    4: "tags",
    5: "cue sheet",
    6: "artwork",
}


def _flac_blocks(path: Path, f: BinaryIO, size: int) -> None:
    """Refuse a FLAC whose metadata (tags, artwork) runs past the end of the file.

    Encoders write all metadata before the audio, so that is a file still being written or cut
    short. Anything that does not look like FLAC metadata is left for mutagen to refuse.
    """
    start = _id3_length(_read_at(path, f, 0, min(size, 10))) or 0
    f.seek(start)
    if f.read(4) != b"fLaC":
        return
    pos = start + 4
    for block in range(_MAX_CHUNKS):
        if pos + 4 > size:
            if block == 0:
                return
            raise _incomplete(path, "the file ends before the FLAC's audio starts")
        header = _read_at(path, f, pos, 4)
        kind, length = header[0] & 0x7F, int.from_bytes(header[1:4], "big")
        if block == 0 and (kind != 0 or length != 34):
            return  # not a STREAMINFO block first: damaged, mutagen says so
        if pos + 4 + length > size:
            if block == 0 or kind not in _FLAC_BLOCKS:
                return
            said = f"its FLAC {_FLAC_BLOCKS[kind]}"
            raise _incomplete(path, _says_but(said, length, size - pos - 4))
        if header[0] & 0x80:  # the last metadata block
            return
        pos += 4 + length


def _box_damaged(path: Path, pos: int) -> AudioProblem:
    return _problem(path, f"the M4A's box list is damaged at byte {pos}")


def _mp4_boxes(path: Path, f: BinaryIO, size: int) -> None:
    """Refuse an MP4 whose top-level boxes run past the end, or that has no index (moov) yet.

    Encoders write the moov box last by default, so a missing one means an unfinished export.
    """
    pos = 0
    seen: set[bytes] = set()
    boxes = 0
    while pos + 8 <= size:
        boxes += 1
        if boxes > _MAX_BOXES:
            raise _problem(path, f"the M4A's box list is damaged ({_MAX_BOXES:,} boxes)")
        box_size, kind = struct.unpack(">I4s", _read_at(path, f, pos, 8))
        header = 8
        if box_size == 1:  # a 64-bit size follows: how big boxes (over 4 GB) are written
            if pos + 16 > size:
                if not _chunk_id_ok(kind):
                    raise _box_damaged(path, pos)
                name = kind.decode("latin-1")
                raise _incomplete(path, f"the file ends inside the header of its '{name}' box")
            box_size = struct.unpack(">Q", _read_at(path, f, pos + 8, 8))[0]
            header = 16
        elif box_size == 0:
            box_size = size - pos
        if box_size < header:
            raise _box_damaged(path, pos)
        seen.add(kind)
        if pos + box_size > size:
            if not _chunk_id_ok(kind):  # not a box cut short: bytes that are not a box at all
                raise _box_damaged(path, pos)
            raise _incomplete(
                path,
                _says_but(f"its '{kind.decode('latin-1')}' box", box_size, size - pos),
            )
        pos += box_size
    if b"moov" not in seen:
        raise _incomplete(path, "the M4A has no index (moov box) yet")


def _mutagen(module: str) -> Any:
    """A mutagen submodule, loaded on first use; its API is untyped, so it is Any here."""
    return importlib.import_module(f"mutagen.{module}")


def _iff_id3(path: Path, fmt: AudioFormat) -> AudioTags:
    """ID3 tags inside a WAV/AIFF chunk; a damaged tag chunk is not worth refusing the audio."""
    try:
        audio = _mutagen("wave").WAVE(path) if fmt == "wav" else _mutagen("aiff").AIFF(path)
    except Exception:
        return AudioTags()
    return _id3_tags(audio.tags) if audio.tags is not None else AudioTags()


def _lavc_gapless(path: Path) -> int:
    """Encoder delay + padding (samples) from an Info/Xing tag written by ffmpeg ("Lavc").

    mutagen subtracts them only when the tag names LAME; without that an ffmpeg-made MP3 reads up
    to ~50 ms long.
    """
    with path.open("rb") as f:
        head = f.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
            start += 10 if head[5] & 0x10 else 0
        f.seek(start)
        frame = f.read(512)
    for marker in (b"Xing", b"Info"):
        at = frame.find(marker, 0, 64)
        if at < 0:
            continue
        if len(frame) < at + 8:
            return 0  # the file shrank since mutagen read it; the scan will tell
        flags = struct.unpack(">I", frame[at + 4 : at + 8])[0]
        if not flags & 1:
            return 0  # no frame count: mutagen estimated the length from the size instead
        pos = at + 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4)
        pos += 4 * bool(flags & 8)
        encoder, gap = frame[pos : pos + 9], frame[pos + 21 : pos + 24]
        if not encoder.startswith(b"Lavc") or len(gap) < 3:
            return 0
        delay = (gap[0] << 4) | (gap[1] >> 4)
        padding = ((gap[1] & 0x0F) << 8) | gap[2]
        return delay + padding
    return 0


def _compressed(path: Path, fmt: AudioFormat) -> AudioInfo:
    name = _NAMES[fmt]
    try:
        audio: Any
        if fmt == "flac":
            audio = _mutagen("flac").FLAC(path)
        elif fmt == "mp3":
            audio = _mutagen("mp3").MP3(path)
        elif fmt == "m4a":
            audio = _mutagen("mp4").MP4(path)
        else:
            audio = _mutagen("_file").File(
                path,
                options=[
                    _mutagen("oggvorbis").OggVorbis,
                    _mutagen("oggopus").OggOpus,
                    _mutagen("oggflac").OggFLAC,
                    _mutagen("oggspeex").OggSpeex,
                ],
            )
            if audio is None:
                raise _problem(path, "an Ogg file without Vorbis, Opus or FLAC audio in it")
    except AudioProblem:
        raise
    except Exception as exc:
        detail = str(exc).strip().rstrip(".") or type(exc).__name__
        raise _problem(
            path, f"not a valid {name} file: damaged, or not audio at all (mutagen: {detail})"
        ) from exc
    info = audio.info
    if fmt == "mp3" and info.sketchy:
        raise _problem(path, "not a valid MP3 file (no run of consistent MPEG audio frames in it)")
    duration = float(info.length or 0.0)
    if fmt == "mp3" and not str(getattr(info, "encoder_info", "")).startswith("LAME"):
        duration -= _lavc_gapless(path) / max(int(info.sample_rate), 1)
    channels = int(getattr(info, "channels", 0) or 0)
    rate = int(getattr(info, "sample_rate", 0) or (48000 if fmt == "ogg" else 0))
    if not math.isfinite(duration) or duration <= 0 or channels <= 0 or rate <= 0:
        raise _problem(path, f"the {name} file has no audio in it (0 seconds)")
    bit_depth: int | None = None
    if fmt == "flac" or (fmt == "m4a" and getattr(info, "codec", "") == "alac"):
        bit_depth = int(info.bits_per_sample) or None
    tags = AudioTags()
    if audio.tags is not None:
        if fmt == "mp3":
            tags = _id3_tags(audio.tags)
        elif fmt == "m4a":
            tags = _mp4_tags(audio.tags)
        else:
            tags = _vorbis_tags(audio.tags)
    return AudioInfo(fmt, duration, rate, channels, bit_depth, tags)


def _open(path: Path) -> BinaryIO:
    """The file opened for reading; AudioProblem for a folder, a pipe or a device.

    Opened without blocking, so that a named pipe called "mix.wav" is refused instead of waiting
    forever for a writer.
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as exc:
        raise _problem(path, "the file is gone (moved or deleted)") from exc
    except IsADirectoryError as exc:
        raise _problem(path, "a folder, not an audio file") from exc
    except OSError as exc:
        raise _problem(path, f"cannot be read ({exc.strerror})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _problem(path, "a folder, not an audio file")
        if not stat.S_ISREG(mode):
            raise _problem(path, "not an audio file (a pipe or device, not a regular file)")
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def probe(path: Path) -> AudioInfo:
    """Inspect an audio file. Raises AudioProblem (AudioIncomplete when it looks unfinished).

    Nothing else: an unforeseen failure reading the file is an AudioProblem as well.
    """
    try:
        return _probe(path)
    except AudioProblem:
        raise
    except FileNotFoundError as exc:  # deleted between two reads
        raise _problem(path, "the file is gone (moved or deleted)") from exc
    except OSError as exc:  # a read error: a failing disk, an unplugged drive, a network share
        raise _problem(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from exc
    except Exception as exc:
        _log.warning("%s: unexpected %s while probing", path, type(exc).__name__, exc_info=exc)
        raise _problem(
            path,
            "could not be read as audio: it is damaged in a way releaseosd does not recognise "
            f"({type(exc).__name__})",
        ) from exc


def _probe(path: Path) -> AudioInfo:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        shown = suffix or "(no extension)"
        raise _problem(path, f"unsupported format {shown} ({ACCEPTED})")
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise _problem(path, "the file is empty (0 bytes)")
        fmt = sniff(path, f)
        expected = SUFFIXES[suffix]
        if fmt is None:
            name = _NAMES[expected]
            if expected == "mp3":
                fmt = "mp3"  # MP3s may start with junk; mutagen searches for frames
            else:
                raise _problem(
                    path,
                    f"not a {name} file: it does not start like one (damaged, or not audio at all)",
                )
        if fmt in ("wav", "aiff"):
            header = (_wav_header if fmt == "wav" else _aiff_header)(path, f, size)
        elif fmt == "m4a":
            _mp4_boxes(path, f, size)
        else:
            _leading_id3(path, f, size)
            if fmt == "flac":
                _flac_blocks(path, f, size)
    if fmt not in ("wav", "aiff"):
        return _compressed(path, fmt)
    layout = header.layout
    tags = _merge(_iff_id3(path, fmt), header.text_tags)
    return AudioInfo(
        format=fmt,
        duration=layout.frames / layout.sample_rate,
        sample_rate=layout.sample_rate,
        channels=layout.channels,
        bit_depth=layout.bit_depth,
        tags=tags,
    )
