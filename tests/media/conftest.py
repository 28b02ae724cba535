"""Real audio for the media tests, made once per session with ffmpeg's lavfi sources."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from media_corpus import FORMATS, SECONDS, Track, run_ffmpeg, tag_file

from releaseosd.media.ffmpeg import Ffmpeg, find_ffmpeg


@pytest.fixture(scope="session")
def ff() -> Ffmpeg:
    find_ffmpeg.cache_clear()
    found = find_ffmpeg()
    assert found.source == "system", "the media tests expect Debian's ffmpeg on PATH"
    return found


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def corpus(ff: Ffmpeg, media_dir: Path) -> dict[str, Track]:
    """Every supported format, mono and stereo, 12 s of a 440 Hz tone, tagged."""
    tracks: dict[str, Track] = {}
    for name, (suffix, fmt, options, depth) in FORMATS.items():
        for channels in (1, 2):
            key = f"{name}-{'mono' if channels == 1 else 'stereo'}"
            path = media_dir / f"{key}{suffix}"
            run_ffmpeg(
                ff,
                "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={SECONDS}",
                "-af", "volume=0.5", "-ac", str(channels), *options, str(path),
            )  # fmt: skip
            tag_file(path, fmt)
            tracks[key] = Track(key, path, fmt, channels, 44100, depth, SECONDS)
    return tracks


@pytest.fixture(scope="session")
def burst_wav(ff: Ffmpeg, media_dir: Path) -> Path:
    """60 s of a quiet tone with a loud noise burst from 40 s to 50 s."""
    path = media_dir / "burst.wav"
    run_ffmpeg(
        ff,
        "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=22050:duration=60",
        "-f", "lavfi", "-i", "anoisesrc=duration=10:amplitude=0.8:sample_rate=22050:seed=7",
        "-filter_complex",
        "[0]volume=0.1[q];[1]adelay=40000:all=1[n];[q][n]amix=inputs=2:normalize=0:duration=first",
        "-ac", "2", "-c:a", "pcm_s16le", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def decode(ff: Ffmpeg) -> Callable[[Path], tuple[npt.NDArray[np.float32], int, str]]:
    """Decode any file with ffmpeg to mono float32 at its own rate: (samples, rate, stderr)."""

    def run(path: Path) -> tuple[npt.NDArray[np.float32], int, str]:
        import mutagen

        rate = int(mutagen.File(path).info.sample_rate)
        result = subprocess.run(
            [str(ff.ffmpeg), "-nostdin", "-v", "error", "-i", str(path),
             "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
            capture_output=True, check=True,
        )  # fmt: skip
        samples = np.frombuffer(result.stdout, dtype="<f4")
        return samples, rate, result.stderr.decode("utf-8", "replace")

    return run
