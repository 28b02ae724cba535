"""Which ffmpeg: the system's on PATH, else the imageio-ffmpeg wheel's, else a helpful error."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from releaseosd.media import ffmpeg as ffmpeg_module
from releaseosd.media.ffmpeg import FfmpegMissing, find_ffmpeg


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    find_ffmpeg.cache_clear()
    yield
    find_ffmpeg.cache_clear()


def test_system_ffmpeg_and_ffprobe_win_when_on_path() -> None:
    found = find_ffmpeg()
    assert found.source == "system"
    assert found.ffmpeg.name == "ffmpeg" and found.ffprobe is not None
    assert found.version and found.version[0].isdigit()
    assert find_ffmpeg() is found  # cached


def test_without_ffmpeg_on_path_the_wheel_binary_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE", raising=False)
    found = find_ffmpeg()
    assert found.source == "imageio-ffmpeg"
    assert found.ffprobe is None
    assert "imageio_ffmpeg" in str(found.ffmpeg)
    out = subprocess.run([str(found.ffmpeg), "-version"], capture_output=True, check=True)
    assert out.stdout.startswith(b"ffmpeg version")


def test_no_ffmpeg_anywhere_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imageio_ffmpeg

    def missing() -> str:
        raise RuntimeError("No ffmpeg exe could be found.")

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    with pytest.raises(FfmpegMissing) as caught:
        find_ffmpeg()
    assert "apt install ffmpeg" in str(caught.value)
    assert "pip install imageio-ffmpeg" in str(caught.value)


def test_an_ffmpeg_that_does_not_run_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'segmentation fault' >&2\nexit 139\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FfmpegMissing, match="does not answer like ffmpeg"):
        find_ffmpeg()


def test_version_is_parsed_from_the_banner() -> None:
    found = find_ffmpeg()
    assert ffmpeg_module._version(found.ffmpeg) == found.version
