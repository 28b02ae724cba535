"""The unit and plist: packaged copies match the repo's, systemd accepts the unit, launchd's keys."""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from releaseosd.app import service

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "systemd" / "releaseosd.service"
PLIST = REPO / "launchd" / "com.releaseos.releaseosd.plist"


def directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_packaged_templates_are_the_repo_files() -> None:
    assert service.template("releaseosd.service") == UNIT.read_bytes()
    assert service.template("com.releaseos.releaseosd.plist") == PLIST.read_bytes()


# --- systemd -------------------------------------------------------------------------------------


def test_unit_runs_as_a_notify_user_service_that_restarts_on_failure() -> None:
    found = directives(UNIT.read_text())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": ["%h/.local/bin/releaseosd run"],
        "Restart": ["on-failure"],
        "TimeoutStopSec": ["15"],
        "WantedBy": ["default.target"],
        "UMask": ["0077"],
        "NoNewPrivileges": ["yes"],
    }
    for key, value in expected.items():
        assert found.get(key) == value, key
    for key in ("WatchdogSec", "RestartSec", "StartLimitIntervalSec", "StartLimitBurst"):
        assert len(found.get(key, [])) == 1, key
    # These would hide the music folders, or need user namespaces a user manager may not have.
    for key in ("ProtectHome", "ProtectSystem", "PrivateTmp", "PrivateUsers"):
        assert key not in found


def verify(unit_text: str, tmp_path: Path) -> str:
    """systemd-analyze's complaints about a user unit: everything it prints, stdout and stderr."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd')")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    path = units / "releaseosd.service"
    path.write_text(unit_text)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
    result = subprocess.run(
        [analyze, "verify", "--user", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return (
        result.stdout
        + result.stderr
        + ("" if result.returncode == 0 else f"exit {result.returncode}")
    ).strip()


def test_systemd_accepts_the_rendered_unit_without_a_word(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    unit = service.render_unit([sys.executable, "-m", "releaseosd", "run", "--config", str(config)])
    assert verify(unit, tmp_path) == ""


def test_systemd_finds_an_executable_in_an_awkward_path(tmp_path: Path) -> None:
    folder = tmp_path / "my apps 100% $HOME"
    folder.mkdir()
    program = folder / "releaseosd"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    config = '/music/My $HOME/50% "x" \\.yaml'
    unit = service.render_unit([str(program), "run", "--config", config])
    assert verify(unit, tmp_path) == ""


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "new\nline"])
def test_an_executable_path_systemd_cannot_run_is_refused(name: str) -> None:
    with pytest.raises(service.ServiceError, match="plain path"):
        service.render_unit([f"/opt/{name}/releaseosd", "run"])


def test_the_verify_check_does_catch_a_bad_unit(tmp_path: Path) -> None:
    # The check above is only worth something if a mistake makes systemd-analyze say something.
    unit = service.render_unit([sys.executable, "run"]).replace(
        "Restart=on-failure", "Restart=sometimes"
    )
    assert "sometimes" in verify(unit, tmp_path)


@pytest.mark.parametrize(
    ("word", "executable", "expected"),
    [
        ("/usr/bin/releaseosd", True, "/usr/bin/releaseosd"),
        ("/a b/c", True, '"/a b/c"'),
        ("/100%/x", True, "/100%%/x"),
        ("/$x/y", True, "/$x/y"),
        ("$HOME", False, "$$HOME"),
        ("50% off", False, '"50%% off"'),
        ('say "hi"\\', False, '"say \\"hi\\"\\\\"'),
        (";", False, '";"'),
        ("", False, '""'),
    ],
)
def test_exec_start_words_are_escaped_for_systemd(
    word: str, executable: bool, expected: str
) -> None:
    assert service._systemd_word(word, executable=executable) == expected


def test_rendering_replaces_only_exec_start() -> None:
    template = UNIT.read_text()
    rendered = service.render_unit(["/opt/releaseosd/bin/releaseosd", "run", "--config", "/c.yaml"])
    changed = [
        (old, new)
        for old, new in zip(template.splitlines(), rendered.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        (
            "ExecStart=%h/.local/bin/releaseosd run",
            "ExecStart=/opt/releaseosd/bin/releaseosd run --config /c.yaml",
        )
    ]


# --- launchd -------------------------------------------------------------------------------------


def test_plist_template_has_the_agent_keys() -> None:
    data = plistlib.loads(PLIST.read_bytes())
    assert data["Label"] == "com.releaseos.releaseosd"
    assert data["ProgramArguments"] == ["~/.local/bin/releaseosd", "run"]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["ProcessType"] == "Background"
    assert data["ThrottleInterval"] >= 10
    assert data["ExitTimeOut"] == 15
    assert data["Umask"] == 0o077
    assert data["StandardOutPath"] == "~/Library/Logs/releaseosd/releaseosd.log"
    assert data["StandardErrorPath"] == data["StandardOutPath"]


def test_plist_template_is_in_plistlib_form() -> None:
    # So a rendered plist differs from the template only where rendering changed something.
    data = plistlib.loads(PLIST.read_bytes())
    assert plistlib.dumps(data, sort_keys=False) == PLIST.read_bytes()


def test_rendered_plist_has_real_paths() -> None:
    home = Path("/Users/someone")
    command = [
        "/Users/someone/.local/bin/releaseosd",
        "run",
        "--config",
        "/Users/someone/c & d.yaml",
    ]
    data = plistlib.loads(service.render_plist(command, home=home))
    assert data["ProgramArguments"] == command
    assert data["StandardOutPath"] == "/Users/someone/Library/Logs/releaseosd/releaseosd.log"
    assert data["StandardErrorPath"] == "/Users/someone/Library/Logs/releaseosd/releaseosd.log"
    template = plistlib.loads(PLIST.read_bytes())
    unchanged = {"ProgramArguments", "StandardOutPath", "StandardErrorPath"}
    assert {k: v for k, v in data.items() if k not in unchanged} == {
        k: v for k, v in template.items() if k not in unchanged
    }


def test_the_templates_are_packaged(tmp_path: Path) -> None:
    # After `pip install` the repo's systemd/ and launchd/ folders are gone: service.py can only
    # read what setuptools put into the package, which needs package-data in pyproject.toml.
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(
        REPO / "releaseosd", tmp_path / "releaseosd", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "-d",
            "out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    built = tmp_path / "out" / "releaseosd" / "service_files"
    assert sorted(p.name for p in built.glob("*")) == [
        "com.releaseos.releaseosd.plist",
        "releaseosd.service",
    ], "add 'service_files/*' to [tool.setuptools.package-data] releaseosd in pyproject.toml"
