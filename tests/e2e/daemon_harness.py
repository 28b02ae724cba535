"""Helpers for end-to-end daemon tests: real audio made with ffmpeg, the SoundCloud sandbox over
loopback HTTP, a real keyring backend (keyrings.alt's file keyring in a temp dir), and the daemon
itself, in a thread or as a child process."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from releaseosd.model.config import Config, load_config
from releaseosd.model.store import read_tracks as read_store
from releaseosd.model.track import Track

CLIENT_ID = "e2e-client"
CLIENT_SECRET = "e2e-secret-value-123"

_audio_cache: dict[tuple[float, str, int], bytes] = {}


def make_audio(
    path: Path,
    seconds: float = 2.0,
    freq: int = 440,
    codec: str = "pcm_s16le",
    channels: int = 2,
    options: tuple[str, ...] = (),
) -> Path:
    """Real audio made by ffmpeg, in the format the suffix names, renamed into place as many
    DAWs do; each frequency gives different bytes (a different track)."""
    key = (seconds, codec, freq, channels, options, path.suffix.lower())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp{path.suffix}"
    if key not in _audio_cache:
        # To a file, not a pipe: ffmpeg patches the WAV header's sizes at the end, which a pipe
        # cannot take (and releaseosd rightly treats such a header as an unfinished export).
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
             "-i", f"sine=frequency={freq}:duration={seconds}",
             "-ac", str(channels), "-ar", "44100", "-c:a", codec, *options, str(tmp)],
            check=True,
        )  # fmt: skip
        _audio_cache[key] = tmp.read_bytes()
    else:
        tmp.write_bytes(_audio_cache[key])
    os.replace(tmp, path)
    return path


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keyring_file(root: Path) -> Path:
    """Where keyrings.alt's PlaintextKeyring keeps its file under daemon_env(root)."""
    return root / "xdg-data" / "python_keyring" / "keyring_pass.cfg"


def file_token_store(path: Path) -> Any:
    """A real keyring backend (keyrings.alt's file keyring) behind releaseosd's TokenStore."""
    from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

    from releaseosd.soundcloud.tokens import TokenStore

    backend = PlaintextKeyring()
    backend.file_path = str(path)
    return TokenStore(backend=backend)


def log_in(store: Any, sandbox: Any) -> None:
    """What `auth setup` + `auth login` leave in the keyring, minted directly by the sandbox."""
    from releaseosd.soundcloud.tokens import TokenSet

    pair = sandbox.issue_tokens(CLIENT_ID)
    store.set_client_secret(CLIENT_ID, CLIENT_SECRET)
    store.set_tokens(
        CLIENT_ID,
        TokenSet(pair.access_token, pair.refresh_token, time.time() + float(pair.expires_in)),
    )


def write_config(root: Path, sandbox_url: str, **extra: Any) -> Path:
    exports = root / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    uploads = extra.pop("uploads", {})
    lines = [
        "watch:",
        f"  - path: {exports}",
        "stable_seconds: 0.3",
        f"state_dir: {root / 'state'}",
        "soundcloud:",
        f"  client_id: {CLIENT_ID}",
        f"  api_url: {sandbox_url}",
        f"  auth_url: {sandbox_url}",
        *([f"  redirect_uri: {extra.pop('redirect_uri')}"] if "redirect_uri" in extra else []),
        "uploads:",
        f"  concurrency: {uploads.get('concurrency', 2)}",
        f"  max_attempts: {uploads.get('max_attempts', 10)}",
        f"  backoff_base_seconds: {uploads.get('backoff_base_seconds', 0.2)}",
        f"  backoff_max_seconds: {uploads.get('backoff_max_seconds', 1.0)}",
        "preview:",
        "  length: 1",
        "artwork:",
        "  size: 800",
        "  bars: 32",
        # Off unless a test is about it: each daemon start would load the web stack.
        "dashboard:",
        f"  enabled: {str(extra.pop('dashboard', False)).lower()}",
        "  port: 0",
    ]
    path = root / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_tracks(state_dir: Path) -> list[Track]:
    """Every track with its history, read from the store's files as a reader that does not own
    them (the daemon may be running)."""
    return read_store(state_dir)


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    every: float = 0.05,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def by_title(state_dir: Path) -> dict[str, Track]:
    return {t.title: t for t in read_tracks(state_dir)}


def by_id(state_dir: Path, track_id: str) -> Track:
    """The record of this track as the store holds it now."""
    return next(t for t in read_tracks(state_dir) if t.id == track_id)


class ThreadedDaemon:
    """The real Daemon, in a thread of the test process (signals are the subprocess tests' job)."""

    def __init__(self, config_path: Path, tokens: Any, **kwargs: Any) -> None:
        from releaseosd.app.daemon import Daemon

        self.config: Config = load_config(config_path)[0]
        kwargs.setdefault("tick_seconds", 0.3)
        kwargs.setdefault("reconcile_seconds", 2.0)
        self.daemon = Daemon(self.config, config_path, tokens=tokens, **kwargs)
        self.thread = threading.Thread(target=self.daemon.run, name="daemon-under-test")

    def __enter__(self) -> ThreadedDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "daemon did not stop within 15 s"


def daemon_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    env["XDG_DATA_HOME"] = str(root / "xdg-data")
    env["XDG_RUNTIME_DIR"] = str(root / "run")
    (root / "run").mkdir(mode=0o700, exist_ok=True)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def start_daemon_process(config_path: Path, root: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "releaseosd", "--config", str(config_path), "run"],
        env=daemon_env(root),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
    )


def local(seconds_from_now: float) -> dt.datetime:
    return (dt.datetime.now().astimezone() + dt.timedelta(seconds=seconds_from_now)).replace(
        microsecond=0
    )


# --- what tests of the running daemon ask of the store and the CLI ------------------------------

from releaseosd.model.states import State  # noqa: E402

DONE = (State.RELEASED, State.PUBLISHED)


def track(state_dir: Path, title: str) -> Track | None:
    return by_title(state_dir).get(title)


def in_state(state_dir: Path, title: str, *states: Any) -> Track | None:
    found = track(state_dir, title)
    return found if found is not None and found.state in states else None


def command(config_path: Path, name: str, **body: Any) -> str:
    """A CLI command, through the running daemon's control socket (or on the store if none)."""
    from releaseosd.app.control import run_command

    return run_command(load_config(config_path)[0], name, body)


def pause_before_start(state_dir: Path) -> None:
    from releaseosd.model.store import Store

    store = Store.open(state_dir)
    try:
        store.set_flag("paused", True)
    finally:
        store.close()


def dump(state_dir: Path) -> str:
    """The store as a short table, for assertion messages."""
    return "\n".join(
        f"{t.id} {t.title!r} {t.state.value} path={t.audio_path} err={t.last_error!r} "
        f"dup={t.duplicate_of} urn={t.soundcloud.urn} notes={[h.note for h in t.history][-4:]}"
        for t in read_tracks(state_dir)
    )


def eventually(condition: Callable[[], Any], timeout: float) -> Any:
    """wait_for that returns None instead of raising: to assert that something does not happen
    within a bound, or to report what happened instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    return None
