"""`releaseosd doctor`: each ✗ made real (no ffmpeg on PATH, no keyring backend, no session bus,
a missing folder, logged out, SoundCloud unreachable, a full disk), and an all-✓ run against the
sandbox with a real keyring, a real bus and a real notification server."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from daemon_harness import CLIENT_ID, file_token_store, write_config
from fake_notification_server import SessionBus
from sandbox_tools import TestSandbox
from setup_helpers import cli

from releaseosd.app import doctor
from releaseosd.app.doctor import Check, ServiceState, exit_code, format_checks, run_checks
from releaseosd.media.ffmpeg import find_ffmpeg
from releaseosd.model.config import Config, SoundCloudConfig, WatchFolder, load_config


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _running(_path: Path) -> ServiceState:
    return ServiceState(True, True, Path("/x/releaseosd.service"), "active")


# --- ffmpeg -----------------------------------------------------------------------------------------


@pytest.fixture
def no_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import` raise ImportError
    find_ffmpeg.cache_clear()
    yield
    monkeypatch.undo()
    find_ffmpeg.cache_clear()


@pytest.mark.usefixtures("no_ffmpeg")
def test_no_ffmpeg_anywhere_blocks_with_the_install_command() -> None:
    check = doctor.check_ffmpeg()
    assert not check.ok and check.blocks_uploads
    assert "ffmpeg not found on PATH" in check.detail
    assert check.fix is not None and "apt install ffmpeg" in check.fix


def test_ffmpeg_found_names_binary_and_source() -> None:
    check = doctor.check_ffmpeg()
    found = find_ffmpeg()
    assert check.ok and str(found.ffmpeg) in check.detail and found.version in check.detail


# --- keyring ----------------------------------------------------------------------------------------


def test_no_keyring_backend_gives_the_headless_fix() -> None:
    import keyring.backends.fail

    from releaseosd.soundcloud.tokens import TokenStore

    check = doctor.check_keyring(TokenStore(backend=keyring.backends.fail.Keyring()))
    assert not check.ok and check.blocks_uploads
    assert check.fix is not None and "gnome-keyring-daemon --unlock" in check.fix


def test_real_file_keyring_is_named(tmp_path: Path) -> None:
    check = doctor.check_keyring(file_token_store(tmp_path / "k.cfg"))
    assert check.ok and check.detail == "keyrings.alt.file.PlaintextKeyring"


def test_cli_doctor_with_the_fail_backend_exits_1_naming_the_keyring(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    (tmp_path / "exports").mkdir()
    config.write_text(f"watch:\n  - path: {tmp_path / 'exports'}\n", encoding="utf-8")
    done = cli(
        tmp_path,
        "--config",
        str(config),
        "doctor",
        "--json",
        env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    assert done.returncode == 1, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert checks["keyring"]["ok"] is False
    assert "No usable keyring backend" in checks["keyring"]["fix"]
    assert checks[f"watch {tmp_path / 'exports'}"]["ok"] is True


# --- notifications ----------------------------------------------------------------------------------


def test_no_session_bus_is_a_warning_that_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no "bus" socket in it
    check = doctor.check_notifications(Config(), platform="linux")
    assert not check.ok and not check.blocks_uploads
    assert "no D-Bus session bus" in check.detail
    assert exit_code([check]) == 0
    assert format_checks([check], color=False).startswith("! notifications")


def test_a_bus_without_a_notification_server_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = SessionBus.start(tmp_path)
    try:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
        check = doctor.check_notifications(Config(), platform="linux")
    finally:
        bus.stop()
    assert not check.ok and not check.blocks_uploads
    assert "org.freedesktop.Notifications" in check.detail


def test_notification_server_on_the_bus_is_found(notification_bus: str) -> None:
    check = doctor.check_notifications(Config(), platform="linux")
    assert check.ok, check.detail
    assert notification_bus in check.detail


# --- folders, login, service, disk --------------------------------------------------------------


def test_missing_and_unusable_watch_folders_name_the_path(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    missing = tmp_path / "gone"
    config = Config(watch=[WatchFolder(path=missing), WatchFolder(path=a_file)])
    checks = doctor.check_watch_folders(config, tmp_path / "config.yaml")
    assert [c.ok for c in checks] == [False, False]
    assert str(missing) in checks[0].detail and checks[0].fix and str(missing) in checks[0].fix
    assert "not a folder" in checks[1].detail
    assert exit_code(checks) == 1
    assert not doctor.check_watch_folders(Config(), tmp_path / "c.yaml")[0].ok


def test_logged_out_and_no_secret(tmp_path: Path, sandbox: TestSandbox) -> None:
    store = file_token_store(tmp_path / "k.cfg")
    sc = SoundCloudConfig(client_id=CLIENT_ID, api_url=sandbox.base_url, auth_url=sandbox.base_url)
    from releaseosd.soundcloud.auth import status

    def read(c: SoundCloudConfig) -> dict[str, Any]:
        return status(c, store=store)

    no_secret = doctor.check_soundcloud(sc, tmp_path / "c.yaml", read)
    assert not no_secret.ok and no_secret.fix and "auth setup" in no_secret.fix
    store.set_client_secret(CLIENT_ID, "s3cret")
    logged_out = doctor.check_soundcloud(sc, tmp_path / "c.yaml", read)
    assert not logged_out.ok and logged_out.blocks_uploads
    assert logged_out.fix == "releaseosd auth login"
    no_id = doctor.check_soundcloud(SoundCloudConfig(), tmp_path / "c.yaml", read)
    assert not no_id.ok and "client_id" in no_id.detail


def test_unreachable_soundcloud_is_reported_as_such(tmp_path: Path, token_store: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    sc = SoundCloudConfig(client_id=CLIENT_ID, api_url=closed, auth_url=closed)
    from releaseosd.soundcloud.auth import status

    check = doctor.check_soundcloud(sc, tmp_path / "c.yaml", lambda c: status(c, store=token_store))
    assert not check.ok
    assert "could not be reached" in check.detail and closed in check.detail
    assert "a login is stored" in check.detail


def test_service_not_installed_is_a_hint(tmp_path: Path) -> None:
    check = doctor.check_service(tmp_path / "config.yaml")  # the real reader, in an empty HOME
    assert not check.ok and not check.blocks_uploads
    assert check.fix is not None and "releaseosd service install" in check.fix


def test_little_free_space_blocks(tmp_path: Path) -> None:
    def tiny(_path: Path) -> Any:
        return SimpleNamespace(free=200 << 20)

    check = doctor.check_disk(tmp_path / "state" / "deeper", disk_usage=tiny)
    assert not check.ok and check.blocks_uploads
    assert "200.0 MiB free" in check.detail
    assert doctor.check_disk(tmp_path).ok  # the real disk of the test machine


# --- all of it --------------------------------------------------------------------------------------


def test_all_green_against_the_sandbox(
    tmp_path: Path, sandbox: TestSandbox, token_store: Any, notification_bus: str
) -> None:
    config_path = write_config(tmp_path, sandbox.base_url)
    config = load_config(config_path)[0]

    checks = run_checks(config, config_path, token_store=token_store, service_state=_running)

    failed = [c for c in checks if not c.ok]
    assert failed == [], format_checks(checks, color=False)
    by = _by_name(checks)
    assert "logged in as sandbox-artist" in by["SoundCloud"].detail
    assert "access token valid for" in by["SoundCloud"].detail
    assert by["keyring"].detail == "keyrings.alt.file.PlaintextKeyring"
    assert exit_code(checks) == 0
    text = format_checks(checks, color=False)
    assert "✗" not in text and text.endswith("Everything is ready.")


def test_format_puts_the_fix_under_each_failure() -> None:
    checks = [
        Check("ffmpeg", True, "/usr/bin/ffmpeg"),
        Check("keyring", False, "broken", "do this\nthen that"),
        Check("service", False, "not installed", "releaseosd service install", False),
    ]
    lines = format_checks(checks, color=False).splitlines()
    assert lines[0].startswith("✓ ffmpeg ")
    assert lines[1].startswith("✗ keyring ") and lines[2].strip() == "fix: do this"
    assert lines[3].strip() == "then that"
    assert lines[4].startswith("! service ") and "service install" in lines[5]
    assert "1 problem(s) stop uploads" in lines[-1]
    assert "\x1b[" in format_checks(checks, color=True)
