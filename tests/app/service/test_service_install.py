"""install / uninstall / status, with HOME in tmp and recording systemctl/launchctl stubs on PATH."""

from __future__ import annotations

import io
import os
import plistlib
import sys
from pathlib import Path

import pytest
from stub_tools import StubTools

from releaseosd.app import service

UID = os.getuid()


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "venv" / "bin" / "releaseosd"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def config(user_home: Path) -> Path:
    path = user_home / ".config" / "releaseosd" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("watch: []\n")
    return path


class Output:
    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()


def unit_file(home: Path) -> Path:
    return home / ".config" / "systemd" / "user" / "releaseosd.service"


def plist_file(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / "com.releaseos.releaseosd.plist"


# --- dry run ---------------------------------------------------------------------------------------


def test_dry_run_on_linux_prints_the_unit_and_commands_and_touches_nothing(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path
) -> None:
    output = Output()
    status = service.install(
        dry_run=True, platform="linux", executable=program, out=output.out, err=output.err
    )
    assert status == 0
    text = output.out.getvalue()
    assert f"Would write {unit_file(user_home)}:" in text
    assert f"ExecStart={program} run --config {config}\n" in text
    assert "Type=notify\n" in text
    assert text.endswith(
        "Would run:\n"
        "  systemctl --user daemon-reload\n"
        "  systemctl --user enable --now releaseosd.service\n"
    )
    assert output.err.getvalue() == ""
    assert not unit_file(user_home).exists()
    assert stub_tools.calls() == []


def test_dry_run_on_macos_prints_the_plist_and_commands(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path
) -> None:
    output = Output()
    status = service.install(
        dry_run=True, platform="darwin", executable=program, out=output.out, err=output.err
    )
    assert status == 0
    text = output.out.getvalue()
    logs = user_home / "Library" / "Logs" / "releaseosd"
    assert f"Would create {logs}/\n" in text
    assert f"Would write {plist_file(user_home)}:\n" in text
    start = text.index("<?xml")
    end = text.index("</plist>") + len("</plist>\n")
    data = plistlib.loads(text[start:end].encode())
    assert data["ProgramArguments"] == [str(program), "run", "--config", str(config)]
    assert data["StandardErrorPath"] == str(logs / "releaseosd.log")
    assert text[end:] == (
        "\nWould run:\n"
        f"  launchctl enable gui/{UID}/com.releaseos.releaseosd\n"
        f"  launchctl bootstrap gui/{UID} {plist_file(user_home)}\n"
    )
    assert not logs.exists()
    assert stub_tools.calls() == []


def test_dry_run_notes_a_missing_config(user_home: Path, program: Path) -> None:
    output = Output()
    assert (
        service.install(
            dry_run=True, platform="linux", executable=program, out=output.out, err=output.err
        )
        == 0
    )
    missing = user_home / ".config" / "releaseosd" / "config.yaml"
    assert f"Note: {missing} does not exist yet" in output.out.getvalue()


def test_default_program_is_the_console_script_next_to_python_or_python_m() -> None:
    command = service.daemon_command()
    script = Path(sys.executable).parent / "releaseosd"
    if script.is_file():
        assert command == [str(script)]
    else:
        assert command == [sys.executable, "-m", "releaseosd"]


def test_unit_goes_to_dot_config_without_xdg_config_home(
    user_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert service.unit_path() == unit_file(user_home)
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")
    assert service.unit_path() == unit_file(user_home)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_home / "elsewhere"))
    assert (
        service.unit_path() == user_home / "elsewhere" / "systemd" / "user" / "releaseosd.service"
    )


# --- systemd -----------------------------------------------------------------------------------------


def test_install_status_uninstall_on_linux(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path
) -> None:
    output = Output()
    assert (
        service.install(platform="linux", executable=program, out=output.out, err=output.err) == 0
    )
    unit = unit_file(user_home)
    assert f"ExecStart={program} run --config {config}\n" in unit.read_text()
    assert unit.stat().st_mode & 0o777 == 0o644
    assert stub_tools.calls() == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "releaseosd.service"],
    ]
    assert "journalctl --user -u releaseosd" in output.out.getvalue()
    assert output.err.getvalue() == ""

    stub_tools.answer("systemctl", "is-active", stdout="active\n")
    output = Output()
    assert service.status(platform="linux", executable=program, out=output.out, err=output.err) == 0
    assert output.out.getvalue() == (
        f"service file: {unit}\n"
        "state:        active\n"
        "logs:         journalctl --user -u releaseosd\n"
    )

    output = Output()
    assert service.uninstall(platform="linux", out=output.out, err=output.err) == 0
    assert not unit.exists()
    assert stub_tools.calls()[-3:] == [
        ["systemctl", "--user", "is-active", "releaseosd.service"],
        ["systemctl", "--user", "disable", "--now", "releaseosd.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]

    stub_tools.answer("systemctl", "is-active", stdout="inactive\n", status=3)
    output = Output()
    assert service.status(platform="linux", executable=program, out=output.out, err=output.err) == 3
    assert f"service file: {unit} (not installed)\n" in output.out.getvalue()
    assert "state:        inactive\n" in output.out.getvalue()


def test_reinstall_restarts_a_running_service_onto_the_new_file(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path, tmp_path: Path
) -> None:
    assert (
        service.install(platform="linux", executable=program, out=io.StringIO(), err=io.StringIO())
        == 0
    )
    other = tmp_path / "other.yaml"
    other.write_text("watch: []\n")
    assert (
        service.install(
            platform="linux",
            executable=program,
            config_path=other,
            out=io.StringIO(),
            err=io.StringIO(),
        )
        == 0
    )
    assert f"--config {other}\n" in unit_file(user_home).read_text()
    assert stub_tools.calls()[2:] == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "try-restart", "releaseosd.service"],
        ["systemctl", "--user", "enable", "--now", "releaseosd.service"],
    ]


def test_status_flags_a_unit_written_for_another_program(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path, tmp_path: Path
) -> None:
    assert (
        service.install(platform="linux", executable=program, out=io.StringIO(), err=io.StringIO())
        == 0
    )
    output = Output()
    service.status(
        platform="linux",
        executable=tmp_path / "moved" / "releaseosd",
        out=output.out,
        err=output.err,
    )
    assert "differs from what `install` would write now" in output.out.getvalue()


def test_a_failing_systemctl_is_reported_with_its_message(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path
) -> None:
    stub_tools.answer(
        "systemctl", "enable", stderr="Failed to connect to bus: No medium found\n", status=1
    )
    output = Output()
    assert (
        service.install(platform="linux", executable=program, out=output.out, err=output.err) == 1
    )
    assert output.err.getvalue() == (
        "releaseosd: `systemctl --user enable --now releaseosd.service` failed with exit status 1: "
        "Failed to connect to bus: No medium found\n"
    )


def test_without_systemctl_install_explains_and_writes_nothing(
    user_home: Path, program: Path, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    output = Output()
    assert (
        service.install(platform="linux", executable=program, out=output.out, err=output.err) == 1
    )
    assert "systemctl not found" in output.err.getvalue()
    assert "autostart" in output.err.getvalue()
    assert not unit_file(user_home).exists()


def test_install_refuses_a_missing_config_or_program(
    user_home: Path, stub_tools: StubTools, program: Path, tmp_path: Path
) -> None:
    output = Output()
    missing = tmp_path / "nope.yaml"
    assert (
        service.install(
            platform="linux",
            executable=program,
            config_path=missing,
            out=output.out,
            err=output.err,
        )
        == 1
    )
    assert output.err.getvalue().startswith(f"releaseosd: config file {missing} does not exist")
    present = tmp_path / "c.yaml"
    present.write_text("")
    output = Output()
    gone = tmp_path / "gone" / "releaseosd"
    assert (
        service.install(
            platform="linux", executable=gone, config_path=present, out=output.out, err=output.err
        )
        == 1
    )
    assert (
        output.err.getvalue()
        == f"releaseosd: {gone} is not an executable file; the service could not start it\n"
    )
    assert stub_tools.calls() == []
    assert not unit_file(user_home).exists()


def test_uninstall_when_not_installed_does_nothing(user_home: Path, stub_tools: StubTools) -> None:
    output = Output()
    assert service.uninstall(platform="linux", out=output.out, err=output.err) == 0
    assert output.out.getvalue() == f"Not installed: {unit_file(user_home)} does not exist.\n"
    assert stub_tools.calls() == []


def test_uninstall_dry_run(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path
) -> None:
    assert (
        service.install(platform="linux", executable=program, out=io.StringIO(), err=io.StringIO())
        == 0
    )
    output = Output()
    assert service.uninstall(dry_run=True, platform="linux", out=output.out, err=output.err) == 0
    assert output.out.getvalue() == (
        "Would run:\n"
        "  systemctl --user disable --now releaseosd.service\n"
        f"Would remove {unit_file(user_home)}\n"
        "Would run:\n"
        "  systemctl --user daemon-reload\n"
    )
    assert unit_file(user_home).exists()


def test_unsupported_platform_is_an_error(user_home: Path) -> None:
    output = Output()
    assert service.install(platform="win32", out=output.out, err=output.err) == 1
    assert output.err.getvalue().startswith("releaseosd: cannot install a service on 'win32'")


# --- launchd -----------------------------------------------------------------------------------------


def test_install_status_uninstall_on_macos(
    user_home: Path, stub_tools: StubTools, program: Path, config: Path
) -> None:
    output = Output()
    assert (
        service.install(platform="darwin", executable=program, out=output.out, err=output.err) == 0
    )
    plist = plist_file(user_home)
    data = plistlib.loads(plist.read_bytes())
    logs = user_home / "Library" / "Logs" / "releaseosd"
    assert data["ProgramArguments"] == [str(program), "run", "--config", str(config)]
    assert data["StandardOutPath"] == str(logs / "releaseosd.log")
    assert logs.is_dir()
    assert stub_tools.calls() == [
        ["launchctl", "enable", f"gui/{UID}/com.releaseos.releaseosd"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(plist)],
    ]
    assert str(logs / "releaseosd.log") in output.out.getvalue()

    stub_tools.answer(
        "launchctl",
        "print",
        stdout="gui/501/com.releaseos.releaseosd = {\n\tactive count = 1\n\tstate = running\n"
        "\tpid = 4242\n\tendpoints = {\n\t\tstate = waiting\n\t}\n}\n",
    )
    output = Output()
    assert (
        service.status(platform="darwin", executable=program, out=output.out, err=output.err) == 0
    )
    assert output.out.getvalue() == (
        f"service file: {plist}\n"
        "state:        running (pid 4242)\n"
        f"logs:         {logs / 'releaseosd.log'}\n"
    )

    # Installing again takes the loaded agent out first: bootstrap refuses a loaded label.
    assert (
        service.install(platform="darwin", executable=program, out=io.StringIO(), err=io.StringIO())
        == 0
    )
    assert stub_tools.calls()[-3:] == [
        ["launchctl", "bootout", f"gui/{UID}/com.releaseos.releaseosd"],
        ["launchctl", "enable", f"gui/{UID}/com.releaseos.releaseosd"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(plist)],
    ]

    stub_tools.answer(
        "launchctl", "bootout", stderr="Boot-out failed: 3: No such process\n", status=3
    )
    assert service.uninstall(platform="darwin", out=io.StringIO(), err=io.StringIO()) == 0
    assert not plist.exists()
    assert stub_tools.calls()[-1] == ["launchctl", "bootout", f"gui/{UID}/com.releaseos.releaseosd"]

    stub_tools.answer("launchctl", "print", stderr="Could not find service\n", status=113)
    output = Output()
    assert (
        service.status(platform="darwin", executable=program, out=output.out, err=output.err) == 3
    )
    assert "state:        not loaded\n" in output.out.getvalue()
