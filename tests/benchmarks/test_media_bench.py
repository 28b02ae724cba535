"""Media benchmarks, run on demand: `pytest tests/benchmarks/test_media_bench.py -p no:cacheprovider`.

Each figure is printed next to the ffmpeg command it is measured against, in the same run on the same
file; times are the best of several runs so that other load on the machine counts less.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from releaseosd.media.ffmpeg import Ffmpeg, find_ffmpeg
from releaseosd.media.preview import PreviewTags, build_preview
from releaseosd.media.probe import probe
from releaseosd.model.config import PreviewConfig

pytestmark = pytest.mark.benchmark
ROOT = Path(__file__).resolve().parents[2]
REPEATS = 3

# The artwork step as the daemon runs it, alone in a child so its peak RSS is its own.
CHILD = """
import json, resource, sys, time
from pathlib import Path
from releaseosd.model.config import ArtworkConfig
from releaseosd.media.artwork import render_waveform
from releaseosd.media.ffmpeg import find_ffmpeg
from releaseosd.media.probe import probe
from releaseosd.media.waveform import scan

def hwm_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import mutagen.flac, mutagen.mp3, mutagen.wave  # warm, as in the running daemon

source, out = Path(sys.argv[1]), Path(sys.argv[2])
ff = find_ffmpeg()
after_imports = hwm_mb()
start = time.perf_counter()
info = probe(source)
result = scan(source, info, 120, 30.0, ff)
render_waveform(result, ArtworkConfig(), out, "Night Drive")  # titled, as the daemon draws it
seconds = time.perf_counter() - start
print(json.dumps({
    "seconds": seconds,
    "vm_hwm_mb": hwm_mb(),
    "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "after_imports_mb": after_imports,
}))
"""


def _ffmpeg(ff: Ffmpeg, *args: str) -> None:
    subprocess.run(
        [str(ff.ffmpeg), "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        capture_output=True,
    )


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def _artwork_child(source: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


@pytest.fixture(scope="module")
def ff() -> Ffmpeg:
    find_ffmpeg.cache_clear()
    return find_ffmpeg()


@pytest.fixture(scope="module")
def files(ff: Ffmpeg, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A 5-minute and a 30-minute 44.1 kHz stereo 16-bit WAV, plus MP3 and FLAC of the 5-minute."""
    folder = tmp_path_factory.mktemp("bench")
    five = folder / "five.wav"
    _ffmpeg(
        ff,
        "-f", "lavfi", "-i", "anoisesrc=duration=300:color=pink:amplitude=0.3:sample_rate=44100",
        "-f", "lavfi", "-i", "sine=frequency=110:duration=300:sample_rate=44100",
        "-filter_complex", "[0][1]amerge=inputs=2", "-c:a", "pcm_s16le", str(five),
    )  # fmt: skip
    thirty = folder / "thirty.wav"
    _ffmpeg(ff, "-stream_loop", "5", "-i", str(five), "-c", "copy", str(thirty))
    mp3, flac = folder / "five.mp3", folder / "five.flac"
    _ffmpeg(ff, "-i", str(five), "-b:a", "192k", str(mp3))
    _ffmpeg(ff, "-i", str(five), str(flac))
    yield {"five": five, "thirty": thirty, "mp3": mp3, "flac": flac}


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(line)


def test_artwork_against_showwavespic_and_its_memory(
    ff: Ffmpeg, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    showwavespic = [
        str(ff.ffmpeg), "-nostdin", "-v", "error", "-y", "-i", str(files["thirty"]),
        "-filter_complex", "showwavespic=s=1400x1400", "-frames:v", "1",
        str(tmp_path / "showwavespic.png"),
    ]  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {"five": [], "thirty": []}
    baseline_runs = []
    for _ in range(REPEATS):  # interleaved, so load from elsewhere hits both alike
        for name in runs:
            runs[name].append(_artwork_child(files[name], tmp_path / f"{name}.png"))
        baseline_runs.append(_timed(showwavespic))
    baseline = min(baseline_runs)
    ours = min(run["seconds"] for run in runs["thirty"])
    peak = {name: max(run["vm_hwm_mb"] for run in runs[name]) for name in runs}
    imports = min(run["after_imports_mb"] for run in runs["thirty"])
    maxrss = max(run["ru_maxrss_mb"] for run in runs["thirty"])
    _report(
        capsys,
        f"\n[artwork 30-min WAV] scan+render {ours:.3f} s vs ffmpeg showwavespic {baseline:.3f} s "
        f"= {ours / baseline:.3f}x (target <= 0.25x)"
        f"\n[artwork RSS] peak VmHWM 30-min {peak['thirty']:.1f} MB, 5-min {peak['five']:.1f} MB, "
        f"difference {peak['thirty'] - peak['five']:+.1f} MB (ru_maxrss {maxrss:.1f} MB; "
        f"{imports:.1f} MB of it is the interpreter with numpy+Pillow+mutagen imported)",
    )
    assert ours <= 0.25 * baseline
    assert peak["thirty"] < 80
    assert abs(peak["thirty"] - peak["five"]) < 10


@pytest.mark.parametrize("kind", ["mp3", "flac"])
def test_artwork_of_compressed_input_against_a_plain_decode(
    ff: Ffmpeg,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    source = files[kind]
    null = [str(ff.ffmpeg), "-nostdin", "-v", "error", "-i", str(source), "-f", "null", "-"]
    ours_runs, baseline_runs = [], []
    # Interleaved pairs, each side going first in turn. On this shared two-core VM back-to-back
    # runs of the same ffmpeg command swing by ±20 %, so a ratio of two bests compares two lucky
    # draws; each pair's own ratio cancels the machine's drift, and their median drops outliers
    # either way. Both figures are printed; the target is checked on the median pair.
    for turn in range(11):
        if turn % 2:
            baseline_runs.append(_timed(null))
        ours_runs.append(_artwork_child(source, tmp_path / "a.png")["seconds"])
        if not turn % 2:
            baseline_runs.append(_timed(null))
    ratios = sorted(o / b for o, b in zip(ours_runs, baseline_runs, strict=True))
    paired = statistics.median(ratios)
    ours, baseline = min(ours_runs), min(baseline_runs)
    _report(
        capsys,
        f"\n[artwork 5-min {kind.upper()}] scan+render vs ffmpeg -f null, median of "
        f"{len(ratios)} paired runs = {paired:.3f}x (target <= 1.3x; pairs "
        f"{ratios[0]:.2f}..{ratios[-1]:.2f}); best {ours:.3f} s vs best {baseline:.3f} s = "
        f"{ours / baseline:.3f}x",
    )
    assert paired <= 1.3


def test_preview_from_minute_25_against_ffmpeg(
    ff: Ffmpeg, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = files["thirty"]
    info = probe(source)
    tags = PreviewTags(title="Bench")

    def ours() -> float:
        start = time.perf_counter()
        build_preview(source, info, tmp_path / "p.mp3", 1500.0, PreviewConfig(), tags, None, ff)
        return time.perf_counter() - start

    command = [
        str(ff.ffmpeg), "-nostdin", "-v", "error", "-y", "-ss", "1500", "-t", "30",
        "-i", str(source), "-b:a", "192k", str(tmp_path / "baseline.mp3"),
    ]  # fmt: skip
    ours_runs, baseline_runs = [], []
    for _ in range(5):
        ours_runs.append(ours())
        baseline_runs.append(_timed(command))
    ours_s, baseline = min(ours_runs), min(baseline_runs)
    _report(
        capsys,
        f"\n[preview 30 s from 25:00 of 30-min WAV] build_preview {ours_s:.3f} s vs "
        f"ffmpeg -ss 1500 -t 30 {baseline:.3f} s = {ours_s / baseline:.3f}x (target <= 1.5x)",
    )
    assert ours_s <= 1.5 * baseline
