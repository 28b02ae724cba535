"""Install, remove and inspect releaseosd as a per-user background service.

Linux: a systemd user unit in ~/.config/systemd/user (or $XDG_CONFIG_HOME/systemd/user).
macOS: a LaunchAgent in ~/Library/LaunchAgents, logging to ~/Library/Logs/releaseosd/.

The files come from the templates packaged in releaseosd/service_files/ (copies of the repo's
systemd/ and launchd/ files, kept identical by a test). Rendering changes only what differs per
machine: in the unit, the ExecStart= line; in the plist, ProgramArguments and the "~/" that starts
its log paths (launchd does not expand "~"). Everything else is the template, comments included.

Each command returns an exit status and writes what it did, or would do with `dry_run`, to `out`;
problems go to `err` as a sentence that says what to do.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

UNIT_NAME = "releaseosd.service"
LABEL = "com.releaseos.releaseosd"
PLIST_NAME = f"{LABEL}.plist"
EXIT_OK = 0
EXIT_ERROR = 1
# systemctl and LSB init scripts answer "status" with 3 for "not running".
EXIT_NOT_RUNNING = 3


class ServiceError(Exception):
    """Something the user has to fix before the service can be installed or managed."""


@dataclass(frozen=True)
class Plan:
    """What `install` writes and runs; dry-run prints it, a real run carries it out."""

    platform: str
    path: Path
    content: bytes
    program: list[str]
    commands: list[list[str]]
    logs: str
    directories: list[Path] = field(default_factory=list)


# --- where things are ----------------------------------------------------------------------------


def normalise_platform(platform: str | None = None) -> str:
    name = sys.platform if platform is None else platform
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    raise ServiceError(
        f"cannot install a service on {name!r}: releaseosd knows systemd (Linux) and launchd "
        "(macOS); start `releaseosd run` from your system's autostart instead"
    )


def unit_path() -> Path:
    configured = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(configured) if os.path.isabs(configured) else Path.home() / ".config"
    return base / "systemd" / "user" / UNIT_NAME


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / PLIST_NAME


def launchd_log_dir() -> Path:
    return Path.home() / "Library" / "Logs" / "releaseosd"


def journal_command() -> str:
    return "journalctl --user -u releaseosd"


def service_path(platform: str) -> Path:
    return unit_path() if platform == "linux" else plist_path()


def template(name: str) -> bytes:
    return (resources.files("releaseosd") / "service_files" / name).read_bytes()


# --- what to run ------------------------------------------------------------------------------------


def daemon_command(executable: Path | None = None) -> list[str]:
    """How the service starts releaseosd, before "run --config ...".

    The console script next to this interpreter is what pip, pipx and venvs install; without one
    (e.g. running from a checkout) the interpreter runs the package. The interpreter path is not
    resolved: in a venv it is a symlink whose location is what selects the venv.
    """
    if executable is not None:
        return [str(executable.expanduser().absolute())]
    if not sys.executable:
        raise ServiceError(
            "cannot tell which Python runs releaseosd (sys.executable is empty); "
            "pass the releaseosd executable explicitly"
        )
    interpreter = Path(sys.executable)
    script = interpreter.parent / "releaseosd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(interpreter), "-m", "releaseosd"]


def resolve_config(config_path: Path | None) -> Path:
    if config_path is None:
        from releaseosd.model.config import config_path as default_config_path

        config_path = default_config_path(None)
    return config_path.expanduser().absolute()


# --- rendering ----------------------------------------------------------------------------------


def _systemd_word(word: str, *, executable: bool) -> str:
    """One ExecStart= word, quoted and escaped the way systemd.service(5) reads it back."""
    # '%' starts a specifier everywhere; '$' starts a variable in arguments but not in the
    # executable's path, where "$$" would stay two dollars.
    escaped = word.replace("%", "%%")
    if not executable:
        escaped = escaped.replace("$", "$$")
    if word and not any(c in word for c in " \t\n\"'\\;"):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("\t", "\\t")
    return f'"{escaped}"'


def render_unit(command: list[str], base: str | None = None) -> str:
    text = base if base is not None else template(UNIT_NAME).decode("utf-8")
    # systemd refuses to run an executable whose path holds quotes, backslashes or control
    # characters ("Executable name contains special characters"), however it is quoted.
    if any(c in command[0] for c in "\"'\\") or not command[0].isprintable():
        raise ServiceError(
            f"systemd cannot run {command[0]!r}: its path contains quotes, backslashes or control "
            "characters; install releaseosd somewhere with a plain path"
        )
    words = [_systemd_word(command[0], executable=True)]
    words += [_systemd_word(word, executable=False) for word in command[1:]]
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    if len(starts) != 1:
        raise ServiceError(f"the packaged {UNIT_NAME} template must have exactly one ExecStart=")
    lines[starts[0]] = f"ExecStart={' '.join(words)}\n"
    return "".join(lines)


def render_plist(command: list[str], home: Path | None = None, base: bytes | None = None) -> bytes:
    home = Path.home() if home is None else home
    data: dict[str, Any] = plistlib.loads(base if base is not None else template(PLIST_NAME))
    data["ProgramArguments"] = list(command)
    for key in ("StandardOutPath", "StandardErrorPath", "WorkingDirectory"):
        value = data.get(key)
        if isinstance(value, str) and value.startswith("~/"):
            data[key] = str(home / value[2:])
    return plistlib.dumps(data, sort_keys=False)


def plan_install(
    platform: str, executable: Path | None = None, config_path: Path | None = None
) -> Plan:
    platform = normalise_platform(platform)
    config = resolve_config(config_path)
    command = [*daemon_command(executable), "run", "--config", str(config)]
    if platform == "linux":
        path = unit_path()
        commands = [["systemctl", "--user", "daemon-reload"]]
        if path.exists():
            # enable --now leaves a running service alone; restart it so it runs the new file.
            commands.append(["systemctl", "--user", "try-restart", UNIT_NAME])
        commands.append(["systemctl", "--user", "enable", "--now", UNIT_NAME])
        content = render_unit(command).encode("utf-8")
        return Plan(platform, path, content, command, commands, journal_command())
    path = plist_path()
    domain = f"gui/{os.getuid()}"
    commands = []
    if path.exists():
        # bootstrap refuses a label that is already loaded: take the old one out first.
        commands.append(["launchctl", "bootout", f"{domain}/{LABEL}"])
    # A service once switched off with `launchctl disable` stays off until enabled again.
    commands.append(["launchctl", "enable", f"{domain}/{LABEL}"])
    commands.append(["launchctl", "bootstrap", domain, str(path)])
    logs = launchd_log_dir()
    return Plan(
        platform,
        path,
        render_plist(command),
        command,
        commands,
        f"{logs / 'releaseosd.log'}",
        # launchd does not create the log folder; without it the agent's output is lost.
        directories=[logs],
    )


# --- commands -----------------------------------------------------------------------------------


def install(
    *,
    dry_run: bool = False,
    platform: str | None = None,
    executable: Path | None = None,
    config_path: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Write the unit/plist for this releaseosd and config, then enable and start it."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        plan = plan_install(normalise_platform(platform), executable, config_path)
        config = resolve_config(config_path)
        if dry_run:
            _print_plan(plan, out)
            if not config.exists():
                out.write(f"\nNote: {config} does not exist yet; the service needs it to start.\n")
            return EXIT_OK
        if not config.is_file():
            raise ServiceError(
                f"config file {config} does not exist: the service would fail at every start. "
                "Create it first, or name another one"
            )
        program = Path(plan.program[0])
        if not (program.is_file() and os.access(program, os.X_OK)):
            raise ServiceError(
                f"{program} is not an executable file; the service could not start it"
            )
        _require_tool(plan.commands[0][0], plan.platform)
        for directory in plan.directories:
            directory.mkdir(parents=True, exist_ok=True)
        _write(plan.path, plan.content)
        out.write(f"Wrote {plan.path}\n")
        for command in plan.commands:
            _run(command, out, ignore_failure=command[1] == "bootout")
    except ServiceError as exc:
        err.write(f"releaseosd: {exc}\n")
        return EXIT_ERROR
    out.write(f"releaseosd runs in the background now. Logs: {plan.logs}\n")
    return EXIT_OK


def uninstall(
    *,
    dry_run: bool = False,
    platform: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Stop and disable the service and remove its file; a missing service is not an error."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        platform = normalise_platform(platform)
        path = service_path(platform)
        if not path.exists():
            out.write(f"Not installed: {path} does not exist.\n")
            return EXIT_OK
        if platform == "linux":
            before = [["systemctl", "--user", "disable", "--now", UNIT_NAME]]
            after = [["systemctl", "--user", "daemon-reload"]]
        else:
            before = [["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"]]
            after = []
        if dry_run:
            out.write("Would run:\n")
            _print_commands(before, out)
            out.write(f"Would remove {path}\n")
            if after:
                out.write("Would run:\n")
                _print_commands(after, out)
            return EXIT_OK
        _require_tool(before[0][0], platform)
        for command in before:
            # Not running or not loaded is fine: the goal is that it is gone.
            _run(command, out, ignore_failure=True)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ServiceError(f"could not remove {path}: {exc.strerror}") from exc
        out.write(f"Removed {path}\n")
        for command in after:
            _run(command, out)
    except ServiceError as exc:
        err.write(f"releaseosd: {exc}\n")
        return EXIT_ERROR
    return EXIT_OK


def status(
    *,
    platform: str | None = None,
    executable: Path | None = None,
    config_path: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Say whether the service is installed and running, and where its logs are.

    Exit status: 0 running, 3 installed but not running or not installed, 1 on errors.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        plan = plan_install(normalise_platform(platform), executable, config_path)
    except ServiceError as exc:
        err.write(f"releaseosd: {exc}\n")
        return EXIT_ERROR
    installed = plan.path.exists()
    out.write(f"service file: {plan.path}{'' if installed else ' (not installed)'}\n")
    if installed and plan.path.read_bytes() != plan.content:
        out.write(
            "              differs from what `install` would write now (another releaseosd or "
            "config?); install again to update it\n"
        )
    state, running = _state(plan.platform)
    out.write(f"state:        {state}\n")
    out.write(f"logs:         {plan.logs}\n")
    if not installed:
        out.write("Install it with: releaseosd service install\n")
    return EXIT_OK if running else EXIT_NOT_RUNNING


def _state(platform: str) -> tuple[str, bool]:
    if platform == "linux":
        result = _query(["systemctl", "--user", "is-active", UNIT_NAME])
        if result is None:
            return "unknown (systemctl not found)", False
        word = result.stdout.strip()
        if not word:
            return f"unknown (systemctl: {result.stderr.strip() or 'no answer'})", False
        return word, word == "active"
    result = _query(["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"])
    if result is None:
        return "unknown (launchctl not found)", False
    if result.returncode != 0:
        return "not loaded", False
    fields: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" = ")
        # Nested sections repeat keys such as "state"; the first one is the service's own.
        fields.setdefault(key.strip(), value.strip())
    state = fields.get("state", "loaded")
    pid = fields.get("pid")
    return (f"{state} (pid {pid})" if pid else state), state == "running"


# --- side effects -------------------------------------------------------------------------------


def _require_tool(tool: str, platform: str) -> None:
    if shutil.which(tool) is not None:
        return
    if platform == "linux":
        raise ServiceError(
            "systemctl not found: this system does not run systemd, so releaseosd cannot install "
            "itself as a user service; start `releaseosd run` from your session's autostart instead"
        )
    raise ServiceError("launchctl not found on PATH; is this macOS?")


def _write(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ServiceError(f"could not write {path}: {exc.strerror or exc}") from exc


def _query(command: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None


def _run(command: list[str], out: TextIO, *, ignore_failure: bool = False) -> None:
    shown = shlex.join(command)
    out.write(f"$ {shown}\n")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise ServiceError(f"{command[0]} not found on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"`{shown}` did not finish within 60 s") from exc
    if result.returncode != 0 and not ignore_failure:
        detail = (result.stderr or result.stdout).strip()
        raise ServiceError(
            f"`{shown}` failed with exit status {result.returncode}"
            + (f": {detail}" if detail else "")
        )


def _print_commands(commands: list[list[str]], out: TextIO) -> None:
    for command in commands:
        out.write(f"  {shlex.join(command)}\n")


def _print_plan(plan: Plan, out: TextIO) -> None:
    for directory in plan.directories:
        out.write(f"Would create {directory}/\n")
    out.write(f"Would write {plan.path}:\n\n")
    out.write(plan.content.decode("utf-8"))
    out.write("\nWould run:\n")
    _print_commands(plan.commands, out)
