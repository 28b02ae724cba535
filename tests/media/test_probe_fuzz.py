"""probe() is total: real headers of every supported format, mutated, give AudioInfo or AudioProblem.

The seeds are short files ffmpeg makes in the session (tagged like the corpus, so the tag readers run
too). Each example applies one to three mutations: a cut at any offset, byte flips, overwrites and
insertions in the first few KB, a cut-off box or chunk header appended at the end, and the header's
own size, count, rate and length fields set to 0, 1, a huge or a "negative" value. Each probe must
end in AudioInfo or AudioProblem within SECONDS_PER_FILE. Hypothesis runs derandomized, so every
run tries the same inputs.
A larger run of the same mutations is in tests/benchmarks/test_probe_fuzz_bench.py.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from media_corpus import run_ffmpeg, tag_file

from releaseosd.media.ffmpeg import Ffmpeg
from releaseosd.media.probe import AudioInfo, AudioProblem, probe

# name -> (suffix, format for tag_file or None, ffmpeg output options)
SEEDS: dict[str, tuple[str, str | None, list[str]]] = {
    "wav16": (".wav", "wav", ["-c:a", "pcm_s16le"]),
    "wav24": (".wav", "wav", ["-c:a", "pcm_s24le"]),  # WAVE_FORMAT_EXTENSIBLE
    "wavf32": (".wav", "wav", ["-c:a", "pcm_f32le"]),  # extensible, float
    "wav-ext-6ch": (".wav", None, ["-ac", "6", "-c:a", "pcm_s16le"]),  # extensible, 16-bit
    "wav-rf64": (".wav", None, ["-rf64", "always", "-c:a", "pcm_s24le"]),
    "aiff": (".aiff", "aiff", ["-c:a", "pcm_s16be"]),
    "aifc-fl32": (".aifc", "aiff", ["-c:a", "pcm_f32be"]),
    "aifc-sowt": (".aifc", None, ["-c:a", "pcm_s16le"]),
    "flac": (".flac", "flac", ["-c:a", "flac", "-sample_fmt", "s16"]),
    "mp3": (".mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
    "ogg": (".ogg", "ogg", ["-c:a", "libvorbis", "-q:a", "2"]),
    "opus": (".opus", None, ["-c:a", "libopus", "-metadata", "title=Night Drive"]),
    "m4a": (".m4a", "m4a", ["-c:a", "aac", "-b:a", "96k"]),
    "alac": (".m4a", None, ["-c:a", "alac", "-metadata", "title=Night Drive"]),
}
Order = Literal["little", "big"]
EXAMPLES = 200  # per seed: about 2,800 files in all, well under a minute on a busy machine
SECONDS_PER_FILE = 2.0  # probing a small file takes milliseconds; a long walk or a hang fails
HEAD = 4096  # flips, overwrites and insertions land in the first 4 KB, where the headers are


@dataclass(frozen=True)
class Field:
    """A number in a header: where it is, how wide (bytes), in which byte order."""

    offset: int
    width: int
    order: Order
    what: str


@dataclass(frozen=True)
class Seed:
    name: str
    suffix: str
    data: bytes
    fields: tuple[Field, ...]


# --- where the numbers are in each format's header ----------------------------------------------


def _u(data: bytes, at: int, width: int, order: Order) -> int:
    return int.from_bytes(data[at : at + width], order)


def _iff_fields(data: bytes) -> list[Field]:
    """RIFF/RF64 (little-endian) or FORM AIFF/AIFC (big-endian) chunks and their key numbers."""
    order: Order = "big" if data[:4] == b"FORM" else "little"
    fields = [Field(4, 4, order, "file size")]
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], _u(data, pos + 4, 4, order)
        body = pos + 8
        fields.append(Field(pos + 4, 4, order, f"{cid!r} size"))
        if cid == b"fmt ":
            for off, width, what in ((2, 2, "channels"), (4, 4, "rate"), (12, 2, "block align"),
                                     (14, 2, "bits"), (16, 2, "cbSize"), (18, 2, "valid bits"),
                                     (24, 2, "sub-format")):  # fmt: skip
                fields.append(Field(body + off, width, order, f"fmt {what}"))
        elif cid == b"ds64":
            fields += [Field(body, 8, order, "ds64 riff"), Field(body + 8, 8, order, "ds64 data")]
        elif cid == b"COMM":
            for off, width, what in ((0, 2, "channels"), (2, 4, "frames"), (6, 2, "bits"),
                                     (8, 2, "rate exponent"), (10, 8, "rate mantissa")):  # fmt: skip
                fields.append(Field(body + off, width, order, f"COMM {what}"))
        elif cid == b"SSND":
            fields.append(Field(body, 4, order, "SSND offset"))
        elif cid == b"LIST":
            sub = body + 4
            while sub + 8 <= body + size:
                fields.append(Field(sub + 4, 4, order, "INFO entry size"))
                sub += 8 + _u(data, sub + 4, 4, order) + (_u(data, sub + 4, 4, order) & 1)
        elif cid in (b"id3 ", b"ID3 "):
            fields += _id3_fields(data, body)
        pos = body + size + (size & 1)
    return fields


def _id3_fields(data: bytes, at: int) -> list[Field]:
    """ID3v2 tag size and its frame sizes (written as plain 4-byte numbers; syncsafe or not)."""
    if data[at : at + 3] != b"ID3":
        return []
    fields = [Field(at + 6, 4, "big", "ID3 size")]
    size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[at + 6 : at + 10]))
    pos, end = at + 10, at + 10 + size
    while pos + 10 <= end and data[pos : pos + 1].isalnum():
        fields.append(Field(pos + 4, 4, "big", f"ID3 frame {data[pos : pos + 4]!r} size"))
        raw = data[pos + 4 : pos + 8]
        frame = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(raw))
        if data[at + 3] == 3:
            frame = int.from_bytes(raw, "big")
        pos += 10 + frame
    return fields


_MP4_CONTAINERS = {b"moov": 0, b"trak": 0, b"mdia": 0, b"minf": 0, b"stbl": 0, b"udta": 0,
                   b"edts": 0, b"dinf": 0, b"ilst": 0, b"meta": 4, b"stsd": 8, b"mp4a": 28,
                   b"alac": 28}  # fmt: skip


def _mp4_fields(
    data: bytes, start: int = 0, end: int | None = None, in_stsd: bool = False
) -> list[Field]:
    fields: list[Field] = []
    pos, end = start, len(data) if end is None else end
    while pos + 8 <= end:
        size, kind = _u(data, pos, 4, "big"), data[pos + 4 : pos + 8]
        if size < 8:
            break
        fields.append(Field(pos, 4, "big", f"{kind!r} box size"))
        body = pos + 8
        if kind in (b"mvhd", b"mdhd"):
            fields += [Field(body + 12, 4, "big", f"{kind!r} timescale"),
                       Field(body + 16, 4, "big", f"{kind!r} duration")]  # fmt: skip
        elif kind in (b"stts", b"stsz", b"stco", b"stsc", b"stsd"):
            fields.append(Field(body + 4, 4, "big", f"{kind!r} entry count"))
        elif in_stsd and kind in (b"mp4a", b"alac"):
            fields += [Field(body + 16, 2, "big", "sample entry channels"),
                       Field(body + 24, 4, "big", "sample entry rate")]  # fmt: skip
        if kind in _MP4_CONTAINERS:
            fields += _mp4_fields(data, body + _MP4_CONTAINERS[kind], pos + size, kind == b"stsd")
        pos += size
    return fields


def _flac_fields(data: bytes) -> list[Field]:
    pos = data.find(b"fLaC")
    fields = _id3_fields(data, 0)
    pos += 4
    while pos + 4 <= len(data):
        header, length = data[pos], _u(data, pos + 1, 3, "big")
        fields.append(Field(pos + 1, 3, "big", f"FLAC block {header & 0x7F} length"))
        if header & 0x7F == 0:
            fields += [Field(pos + 14, 4, "big", "STREAMINFO rate/channels/bits"),
                       Field(pos + 18, 4, "big", "STREAMINFO total samples")]  # fmt: skip
        elif header & 0x7F == 4:
            vendor = _u(data, pos + 4, 4, "little")
            fields += [Field(pos + 4, 4, "little", "vendor length"),
                       Field(pos + 8 + vendor, 4, "little", "comment count")]  # fmt: skip
        pos += 4 + length
        if header & 0x80:
            break
    return fields


def _ogg_fields(data: bytes) -> list[Field]:
    fields: list[Field] = []
    pos = 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS" and len(fields) < 60:
        segments = data[pos + 26]
        fields += [Field(pos + 6, 8, "little", "granule position"),
                   Field(pos + 26, 1, "little", "segment count")]  # fmt: skip
        lacing = data[pos + 27 : pos + 27 + segments]
        fields += [Field(pos + 27 + i, 1, "little", "lacing") for i in range(min(segments, 3))]
        body = pos + 27 + segments
        if data[body : body + 7] == b"\x01vorbis":
            fields += [Field(body + 11, 1, "little", "vorbis channels"),
                       Field(body + 12, 4, "little", "vorbis rate")]  # fmt: skip
        elif data[body : body + 8] == b"OpusHead":
            fields += [Field(body + 9, 1, "little", "opus channels"),
                       Field(body + 10, 2, "little", "opus pre-skip")]  # fmt: skip
        elif data[body : body + 7] == b"\x03vorbis" or data[body : body + 8] == b"OpusTags":
            vendor_at = body + (7 if data[body] == 3 else 8)
            vendor = _u(data, vendor_at, 4, "little")
            fields += [Field(vendor_at, 4, "little", "vendor length"),
                       Field(vendor_at + 4 + vendor, 4, "little", "comment count")]  # fmt: skip
        pos = body + sum(lacing)
    return fields


def _mp3_fields(data: bytes) -> list[Field]:
    fields = _id3_fields(data, 0)
    for marker in (b"Xing", b"Info"):
        at = data.find(marker, 0, HEAD)
        if at >= 0:
            fields += [Field(at + 4, 4, "big", "Xing flags"), Field(at + 8, 4, "big", "frames"),
                       Field(at + 12, 4, "big", "bytes")]  # fmt: skip
    return fields


def header_fields(data: bytes) -> tuple[Field, ...]:
    """The numbers worth setting to absurd values in this file's headers."""
    if data[:4] in (b"RIFF", b"RF64", b"FORM"):
        found = _iff_fields(data)
    elif data[4:8] == b"ftyp":
        found = _mp4_fields(data)
    elif b"fLaC" in data[:HEAD]:
        found = _flac_fields(data)
    elif data[:4] == b"OggS":
        found = _ogg_fields(data)
    else:
        found = _mp3_fields(data)
    return tuple(f for f in found if f.offset + f.width <= len(data))


# --- mutations ----------------------------------------------------------------------------------

# An operation is plain data, so a failing example reads as what was done to the file:
#   ("cut", at, 0) | ("flip", at, xor) | ("put", at, bytes) | ("insert", at, bytes)
#   | ("append", 0, bytes) | ("field", index, value)  -- value modulo the field's width
Op = tuple[str, int, int | bytes]


def special_values(width: int) -> list[int]:
    """0, 1, tiny, "negative" (top bit set), all ones, the largest signed, and neighbours."""
    bits = 8 * width
    top = 1 << (bits - 1)
    return [0, 1, 2, 7, 8, 16, (1 << bits) - 1, (1 << bits) - 8, top, top - 1, top - 2,
            0x7FFF, 0x7FFE, 0x8000, 0xFFFF, 0x7FFFFFFF]  # fmt: skip


def mutate(seed: Seed, ops: list[Op]) -> bytes:
    data = bytearray(seed.data)
    for op in ops:
        kind, at = op[0], op[1]
        if kind == "cut":
            del data[at:]
        elif kind == "append":
            arg = op[2]
            assert isinstance(arg, bytes)
            data += arg
        elif kind == "field" and seed.fields:
            field = seed.fields[at % len(seed.fields)]
            value = op[2]
            assert isinstance(value, int)
            if field.offset + field.width <= len(data):
                raw = (value % (1 << (8 * field.width))).to_bytes(field.width, field.order)
                data[field.offset : field.offset + field.width] = raw
        elif data:
            at %= min(len(data), HEAD) + (kind == "insert")
            arg = op[2]
            if kind == "flip":
                assert isinstance(arg, int)
                data[at] ^= arg or 0xFF
            elif kind == "put":
                assert isinstance(arg, bytes)
                data[at : at + len(arg)] = arg
            elif kind == "insert":
                assert isinstance(arg, bytes)
                data[at:at] = arg
    return bytes(data)


def ops_strategy(seed: Seed) -> st.SearchStrategy[list[Op]]:
    size = len(seed.data)
    cut = st.tuples(st.just("cut"), st.integers(0, size), st.just(0))
    near_end = st.tuples(st.just("cut"), st.integers(max(size - 64, 0), size), st.just(0))
    flip = st.tuples(st.just("flip"), st.integers(0, HEAD), st.integers(0, 255))
    put = st.tuples(st.just("put"), st.integers(0, HEAD), st.binary(min_size=1, max_size=16))
    insert = st.tuples(st.just("insert"), st.integers(0, HEAD), st.binary(min_size=1, max_size=64))
    # A cut-off header at the end: a 32-bit or 64-bit box/chunk size, then a type, then a bit more
    header = st.builds(
        lambda length, kind, rest: length + kind + rest,
        st.sampled_from(
            [b"\x00\x00\x00\x01", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x10"]
        ),
        st.sampled_from(
            [b"mdat", b"moov", b"free", b"data", b"LIST", b"SSND", b"\x00\x00\x00\x00"]
        ),
        st.binary(max_size=12),
    )
    append = st.tuples(st.just("append"), st.just(0), header | st.binary(min_size=1, max_size=24))
    n = max(len(seed.fields), 1)
    field = st.integers(0, n - 1).flatmap(
        lambda i: st.tuples(
            st.just("field"),
            st.just(i),
            st.sampled_from(special_values(seed.fields[i].width if seed.fields else 4))
            | st.integers(0, (1 << (8 * (seed.fields[i].width if seed.fields else 4))) - 1),
        )
    )
    one: st.SearchStrategy[Op] = st.one_of(field, cut, near_end, flip, put, insert, append)
    return st.lists(one, min_size=1, max_size=3)


def make_seeds(ff: Ffmpeg, folder: Path, seconds: float = 0.4) -> dict[str, Seed]:
    seeds: dict[str, Seed] = {}
    for name, (suffix, tag_as, options) in SEEDS.items():
        path = folder / f"{name}{suffix}"
        run_ffmpeg(
            ff, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
            *options, str(path),
        )  # fmt: skip
        if tag_as is not None:
            tag_file(path, tag_as)
        data = path.read_bytes()
        seeds[name] = Seed(name, suffix, data, header_fields(data))
    return seeds


def check_total(path: Path, data: bytes) -> AudioInfo | AudioProblem:
    """Write the mutated file and probe it: AudioInfo or an AudioProblem naming it, nothing else."""
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        info = probe(path)
    except AudioProblem as exc:
        assert time.perf_counter() - start < SECONDS_PER_FILE, exc
        message = str(exc)
        assert message.startswith(f"{path.name}: "), message
        assert len(message) < 400, message
        return exc
    assert time.perf_counter() - start < SECONDS_PER_FILE, info
    # What callers divide by and show: a real length, rate and channel count
    assert math.isfinite(info.duration) and info.duration > 0, info
    assert info.sample_rate > 0 and info.channels > 0, info
    return info


# --- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seeds(ff: Ffmpeg, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Seed]:
    return make_seeds(ff, tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="session")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_seeds_probe_cleanly_and_have_header_fields(seeds: dict[str, Seed], fuzz_dir: Path) -> None:
    """The unmutated seeds are valid audio, and the walkers found numbers to mutate in each."""
    for seed in seeds.values():
        result = check_total(fuzz_dir / f"clean-{seed.name}{seed.suffix}", seed.data)
        assert isinstance(result, AudioInfo), (seed.name, result)
        assert len(seed.fields) >= 3, (seed.name, seed.fields)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_headers_give_audio_info_or_audio_problem(
    name: str, seeds: dict[str, Seed], fuzz_dir: Path
) -> None:
    seed = seeds[name]
    path = fuzz_dir / f"Mutated {name}{seed.suffix}"

    @settings(
        max_examples=EXAMPLES,
        deadline=SECONDS_PER_FILE * 1000,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ops=ops_strategy(seed))
    def run(ops: list[Op]) -> None:
        check_total(path, mutate(seed, ops))

    run()


def test_every_cut_of_every_header_is_handled(seeds: dict[str, Seed], fuzz_dir: Path) -> None:
    """Truncation at each of the first 1 KB of offsets, and near the end, without Hypothesis."""
    for seed in seeds.values():
        path = fuzz_dir / f"Cut {seed.name}{seed.suffix}"
        size = len(seed.data)
        for at in sorted({*range(0, min(size, 1024)), *range(max(size - 48, 0), size)}):
            check_total(path, seed.data[:at])


def test_field_walkers_read_real_numbers(seeds: dict[str, Seed]) -> None:
    """A sanity check on the helpers: the fields they name hold what real headers hold."""
    wav = seeds["wav16"]
    rate = next(f for f in wav.fields if f.what == "fmt rate")
    assert struct.unpack("<I", wav.data[rate.offset : rate.offset + 4])[0] == 44100
    m4a = seeds["m4a"]
    assert any(f.what == "b'mdhd' timescale" for f in m4a.fields)
    aiff = seeds["aiff"]
    exponent = next(f for f in aiff.fields if f.what == "COMM rate exponent")
    assert aiff.data[exponent.offset : exponent.offset + 2] == b"\x40\x0e"
