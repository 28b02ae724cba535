"""The desktop keyring for real: gnome-keyring over a private D-Bus session, unlocked and not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")),
    reason="needs dbus-run-session and gnome-keyring-daemon (Debian: dbus, gnome-keyring)",
)

CHILD = textwrap.dedent(
    """
    import json
    from releaseosd.soundcloud import auth
    from releaseosd.soundcloud.errors import KeyringUnavailable
    from releaseosd.soundcloud.tokens import TokenSet, TokenStore

    store = TokenStore()
    try:
        backend = store.check()
        auth.setup_secret("cid", "s3cret", store=store)
        store.set_tokens("cid", TokenSet("acc", "ref", 5.0))
        again = TokenStore()
        tokens = again.get_tokens("cid")
        print(json.dumps({"backend": backend, "secret": again.get_client_secret("cid"),
                          "refresh": tokens and tokens.refresh_token}))
    except KeyringUnavailable as exc:
        print(json.dumps({"error": str(exc)}))
    """
)


def run_in_session(tmp_path: Path, unlock: bool) -> dict[str, str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    script = (
        "printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; "
        if unlock
        else ""
    )
    script += f'exec "{sys.executable}" -c "$CHILD"'
    env = {
        **os.environ,
        "CHILD": CHILD,
        "PYTHONPATH": str(ROOT),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    env.pop("PYTHON_KEYRING_BACKEND", None)
    done = subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_unlocked_gnome_keyring_holds_the_secrets(tmp_path: Path) -> None:
    result = run_in_session(tmp_path, unlock=True)
    assert result["backend"].startswith("keyring.backends.SecretService.Keyring")
    assert result["secret"] == "s3cret" and result["refresh"] == "ref"


def test_locked_gnome_keyring_says_how_to_unlock_it(tmp_path: Path) -> None:
    result = run_in_session(tmp_path, unlock=False)
    # Locked, or (fresh home) no login collection yet: gnome-keyring wants a prompt either way.
    assert "keyring is locked" in result["error"] or "Prompt dismissed" in result["error"]
    assert "gnome-keyring-daemon --unlock --components=secrets" in result["error"]
