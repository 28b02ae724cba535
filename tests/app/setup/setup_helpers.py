"""Helpers for the doctor / init / upload tests (fixtures are in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon_harness import daemon_env


def cli(
    root: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m releaseosd ARGS` as a user runs it, with the file keyring of `root`."""
    full = daemon_env(root)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "releaseosd", *args],
        env=full,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(root),
    )
