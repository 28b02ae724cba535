"""`releaseosd build FILE`: the whole ingest for one file, without a daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon_harness import daemon_env, make_audio
from PIL import Image


def test_build_writes_preview_and_artwork_and_says_what_it_made(tmp_path: Path) -> None:
    audio = make_audio(tmp_path / "in" / "Night Drive.wav", seconds=3.0, freq=420)
    (tmp_path / "in" / "Night Drive.yaml").write_text("title: Night Drive\nbpm: 124\nkey: Am\n")
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text("preview:\n  length: 2\nartwork:\n  size: 800\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "releaseosd",
            "--config",
            str(config),
            "build",
            str(audio),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "title    Night Drive" in result.stdout
    assert f"preview  {out / 'preview.mp3'}" in result.stdout
    with Image.open(out / "artwork.png") as art:
        assert art.size == (800, 800)
    assert (out / "preview.mp3").stat().st_size > 1000


def test_build_reports_a_bad_sidecar_with_file_and_line(tmp_path: Path) -> None:
    audio = make_audio(tmp_path / "A.wav", seconds=1.0, freq=430)
    (tmp_path / "A.yaml").write_text("title: A\nsharing: loud\n")
    result = subprocess.run(
        [sys.executable, "-m", "releaseosd", "build", str(audio), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path),
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{tmp_path / 'A.yaml'}:2: sharing:" in result.stderr
