"""Which ffmpeg binary the media stage runs.

The system's ffmpeg wins when it is on PATH (distributions keep it patched); otherwise the binary
shipped in the imageio-ffmpeg wheel. That wheel has no ffprobe, so nothing in releaseosd may need one.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_FIX = "install it with `apt install ffmpeg` (or your system's package manager) or `pip install imageio-ffmpeg`"


class FfmpegMissing(RuntimeError):
    """No usable ffmpeg; the message says how to get one."""


@dataclass(frozen=True)
class Ffmpeg:
    ffmpeg: Path
    ffprobe: Path | None
    source: Literal["system", "imageio-ffmpeg"]
    version: str


def _version(exe: Path) -> str:
    try:
        result = subprocess.run(
            [str(exe), "-hide_banner", "-version"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FfmpegMissing(f"ffmpeg at {exe} does not run ({exc}); {_FIX}") from exc
    first = result.stdout.splitlines()[0] if result.stdout else ""
    if result.returncode != 0 or not first.startswith("ffmpeg version"):
        raise FfmpegMissing(f"{exe} does not answer like ffmpeg (`-version` failed); {_FIX}")
    return first.split()[2]


@functools.cache
def find_ffmpeg() -> Ffmpeg:
    """The ffmpeg to use; cached, `find_ffmpeg.cache_clear()` forgets it. Raises FfmpegMissing."""
    system = shutil.which("ffmpeg")
    if system is not None:
        exe = Path(system)
        probe = shutil.which("ffprobe")
        return Ffmpeg(exe, Path(probe) if probe else None, "system", _version(exe))
    try:
        import imageio_ffmpeg

        bundled = Path(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise FfmpegMissing(f"ffmpeg not found on PATH; {_FIX}") from exc
    return Ffmpeg(bundled, None, "imageio-ffmpeg", _version(bundled))
