"""Helpers for the doctor / init / upload tests (fixtures are in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from daemon_harness import CLIENT_ID, CLIENT_SECRET, daemon_env

from releaseosd.soundcloud.sandbox import Sandbox


def keyring_file(root: Path) -> Path:
    """Where keyrings.alt's PlaintextKeyring keeps its file under daemon_env(root)."""
    return root / "xdg-data" / "python_keyring" / "keyring_pass.cfg"


def file_token_store(path: Path) -> Any:
    from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

    from releaseosd.soundcloud.tokens import TokenStore

    backend = PlaintextKeyring()
    backend.file_path = str(path)
    return TokenStore(backend=backend)


def log_in(store: Any, sandbox: Sandbox) -> None:
    from releaseosd.soundcloud.tokens import TokenSet

    pair = sandbox.issue_tokens(CLIENT_ID)
    store.set_client_secret(CLIENT_ID, CLIENT_SECRET)
    store.set_tokens(
        CLIENT_ID,
        TokenSet(pair.access_token, pair.refresh_token, time.time() + float(pair.expires_in)),
    )


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
