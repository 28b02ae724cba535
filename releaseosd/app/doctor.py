"""`releaseosd doctor`: is everything in place for uploads? One check per thing that can be
missing, each with the fix; the exit code says whether anything that blocks uploads failed.

Every outside dependency is a parameter of `run_checks`, so each failure can be shown in a test
without breaking the machine; the defaults ask the real thing.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaseosd.model.config import Config, SoundCloudConfig

if TYPE_CHECKING:
    from releaseosd.media.ffmpeg import Ffmpeg
    from releaseosd.soundcloud.tokens import TokenStore

MIN_FREE_BYTES = 1 << 30  # below this, a few WAVs and their previews no longer fit
NOTIFICATIONS_NAME = "org.freedesktop.Notifications"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    # False: a failure is worth knowing about, but tracks still go up (notifications, service).
    blocks_uploads: bool = True

    @property
    def blocking_failure(self) -> bool:
        return not self.ok and self.blocks_uploads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServiceState:
    installed: bool
    running: bool
    path: Path
    state: str  # systemd's or launchd's word for it, e.g. "active", "inactive", "not loaded"


# --- the checks ------------------------------------------------------------------------------------


def check_ffmpeg(find: Callable[[], Ffmpeg] | None = None) -> Check:
    from releaseosd.media.ffmpeg import FfmpegMissing, find_ffmpeg

    try:
        found = (find or find_ffmpeg)()
    except FfmpegMissing as exc:
        return Check(
            "ffmpeg",
            False,
            str(exc),
            "sudo apt install ffmpeg   (macOS: brew install ffmpeg; "
            "or: pip install imageio-ffmpeg)",
        )
    where = "system" if found.source == "system" else "bundled with the imageio-ffmpeg package"
    return Check("ffmpeg", True, f"{found.ffmpeg} (version {found.version}, {where})")


def check_keyring(store: TokenStore | None = None) -> Check:
    from releaseosd.soundcloud.errors import KeyringUnavailable
    from releaseosd.soundcloud.tokens import TokenStore

    try:
        backend = (store or TokenStore()).check()
    except KeyringUnavailable as exc:
        # The message already carries the exact fix for this machine (headless, locked, …).
        return Check("keyring", False, "SoundCloud secrets cannot be stored or read", str(exc))
    return Check("keyring", True, backend)


def notification_service(address: str | None, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether something on the session bus at `address` shows desktop notifications."""
    if address is None:
        return False, (
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set and there is no "
            "$XDG_RUNTIME_DIR/bus): headless, or started outside a desktop session"
        )
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    bus = DBusAddress(
        "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
    )
    try:
        connection = open_dbus_connection(bus=address, auth_timeout=timeout)
    except Exception as exc:
        return False, f"cannot connect to the D-Bus session bus at {address}: {exc}"
    try:
        owned = unwrap_msg(
            connection.send_and_get_reply(
                new_method_call(bus, "NameHasOwner", "s", (NOTIFICATIONS_NAME,)), timeout=timeout
            )
        )[0]
        if owned:
            return True, f"{NOTIFICATIONS_NAME} answers on {address}"
        # A notification daemon that D-Bus starts on the first message counts as present.
        names = unwrap_msg(
            connection.send_and_get_reply(
                new_method_call(bus, "ListActivatableNames"), timeout=timeout
            )
        )[0]
    except Exception as exc:
        return False, f"the session bus at {address} did not answer: {exc}"
    finally:
        connection.close()
    if NOTIFICATIONS_NAME in names:
        return True, f"{NOTIFICATIONS_NAME} starts on demand on {address}"
    return False, f"nothing on the session bus {address} shows notifications ({NOTIFICATIONS_NAME})"


def check_notifications(
    config: Config,
    bus_address: Callable[[], str | None] | None = None,
    probe: Callable[[str | None], tuple[bool, str]] = notification_service,
    platform: str = sys.platform,
) -> Check:
    settings = config.notifications
    if not any(getattr(settings, name) for name in type(settings).model_fields):
        return Check("notifications", True, "all switched off in the config", None, False)
    if not platform.startswith("linux"):
        return Check("notifications", True, "shown through notify-py", None, False)
    from releaseosd.listeners.desktop import session_bus_address

    ok, detail = probe((bus_address or session_bus_address)())
    fix = None
    if not ok:
        fix = (
            "Tracks still upload; you just will not see desktop notifications (check "
            "'releaseosd status' instead). On a desktop, start releaseosd from your session "
            "(the service does); on a headless box this is expected."
        )
    return Check("notifications", ok, detail, fix, blocks_uploads=False)


def check_watch_folders(config: Config, config_path: Path) -> list[Check]:
    if not config.watch:
        return [
            Check(
                "watch folders",
                False,
                "no folder to watch is configured, so exports are never noticed",
                f"add one to {config_path}:\n  watch:\n    - path: ~/Music/Exports\n"
                "or run 'releaseosd init'",
            )
        ]
    checks = []
    for folder in config.watch:
        path = folder.path
        name = f"watch {path}"
        if not path.exists():
            checks.append(
                Check(
                    name,
                    False,
                    f"{path} does not exist",
                    f"mkdir -p '{path}'  (or fix the path in {config_path})",
                )
            )
        elif not path.is_dir():
            checks.append(
                Check(
                    name,
                    False,
                    f"{path} is not a folder",
                    f"point watch.path in {config_path} at the folder your DAW exports into",
                )
            )
        elif not os.access(path, os.R_OK | os.X_OK):
            checks.append(
                Check(name, False, f"{path} is not readable by this user", f"chmod u+rx '{path}'")
            )
        else:
            how = "polling" if folder.polling else "OS events"
            scope = "and below" if folder.recursive else "only"
            checks.append(Check(name, True, f"readable folder ({scope}; {how})"))
    return checks


def check_soundcloud(
    config: SoundCloudConfig,
    config_path: Path,
    status: Callable[[SoundCloudConfig], dict[str, Any]] | None = None,
) -> Check:
    from releaseosd.soundcloud.errors import KeyringUnavailable

    if not config.client_id:
        return Check(
            "SoundCloud",
            False,
            "soundcloud.client_id is not set",
            f"register an app at https://soundcloud.com/you/apps and put its client id in "
            f"{config_path} (soundcloud.client_id), or run 'releaseosd init'",
        )
    if status is None:
        from releaseosd.soundcloud.auth import status as login_status

        status = login_status
    try:
        info = status(config)
    except KeyringUnavailable:
        return Check(
            "SoundCloud",
            False,
            "the login cannot be read because the keyring does not work",
            "fix the keyring first (see above)",
        )
    where = config.api_url
    if not info.get("secret_stored"):
        return Check(
            "SoundCloud",
            False,
            f"no client secret stored for client id {config.client_id}",
            "releaseosd auth setup   (then: releaseosd auth login)",
        )
    if info.get("logged_in") is None:
        return Check(
            "SoundCloud",
            False,
            f"{where} could not be reached: {info.get('error')} (a login is stored{_expiry(info)})",
            "check the network connection; releaseosd retries uploads by itself once "
            "SoundCloud answers again",
        )
    if not info.get("logged_in"):
        return Check(
            "SoundCloud",
            False,
            str(info.get("error") or "not logged in"),
            "releaseosd auth login",
        )
    user = info.get("username") or "?"
    detail = f"logged in as {user} at {where}{_expiry(info)}"
    left = info.get("upload_seconds_left")
    if left is not None and not info.get("unlimited_upload_quota"):
        detail += f"; {int(left) // 60} min of upload time left"
    return Check("SoundCloud", True, detail)


def _expiry(info: dict[str, Any]) -> str:
    expires_in = info.get("expires_in")
    if expires_in is None:
        return ""
    minutes = int(expires_in) // 60
    if minutes < 0:
        return "; the access token has expired and renews on the next request"
    return f"; access token valid for {minutes} min more (renews itself)"


def read_service_state(config_path: Path, platform: str | None = None) -> ServiceState:
    """What `releaseosd service status` reports, read through its own code."""
    from releaseosd.app import service

    name = service.normalise_platform(platform)
    out = io.StringIO()
    code = service.status(platform=name, config_path=config_path, out=out, err=out)
    state = "unknown"
    for line in out.getvalue().splitlines():
        if line.startswith("state:"):
            state = line.partition(":")[2].strip()
    path = service.service_path(name)
    return ServiceState(path.exists(), code == 0, path, state)


def check_service(config_path: Path, read: Callable[[Path], ServiceState] | None = None) -> Check:
    from releaseosd.app.service import ServiceError

    try:
        state = (read or read_service_state)(config_path)
    except ServiceError as exc:
        return Check("service", False, str(exc), None, blocks_uploads=False)
    if not state.installed:
        return Check(
            "service",
            False,
            "not installed: releaseosd runs only while 'releaseosd run' is open",
            "releaseosd service install   (starts it now and at every login)",
            blocks_uploads=False,
        )
    if not state.running:
        return Check(
            "service",
            False,
            f"installed at {state.path} but not running ({state.state})",
            "releaseosd service status   (shows where the logs are); "
            "then: releaseosd service install",
            blocks_uploads=False,
        )
    return Check("service", True, f"running ({state.state}); {state.path}", None, False)


def check_disk(
    state_dir: Path,
    min_free: int = MIN_FREE_BYTES,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
) -> Check:
    # The state dir may not exist before the first run; its nearest existing parent is the disk.
    probe = state_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if state_dir.exists() and not os.access(state_dir, os.W_OK | os.X_OK):
        return Check(
            "disk", False, f"{state_dir} is not writable by this user", f"chmod u+rwx '{state_dir}'"
        )
    try:
        free = int(disk_usage(probe).free)
    except OSError as exc:
        return Check("disk", False, f"cannot read free space of {probe}: {exc.strerror}", None)
    shown = f"{_size(free)} free for {state_dir}"
    if free < min_free:
        return Check(
            "disk",
            False,
            f"only {shown}; previews and uploads need at least {_size(min_free)}",
            "free some space on that disk, or move state_dir in the config to a disk with room",
        )
    return Check("disk", True, shown)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    raise AssertionError("unreachable")


def check_dashboard(config: Config) -> Check:
    """Whether the dashboard is set up to listen safely, and answers where it says it does."""
    import httpx

    from releaseosd.dashboard.listen import non_loopback
    from releaseosd.dashboard.server import DashboardNotRunning, running_url

    settings = config.dashboard
    if not settings.enabled:
        return Check("dashboard", True, "switched off in the config", None, False)
    wide = non_loopback(settings)
    if wide and not settings.allow_non_loopback:
        return Check(
            "dashboard",
            False,
            f"dashboard.bind names {', '.join(wide)}: it would be refused (loopback only)",
            "remove those addresses from dashboard.bind",
            blocks_uploads=False,
        )
    try:
        url = running_url(config.state_dir)
    except DashboardNotRunning:
        return Check(
            "dashboard",
            False,
            "not running (it starts with the daemon)",
            "releaseosd run   (or: releaseosd service install)",
            blocks_uploads=False,
        )
    try:
        # Without the session cookie a live dashboard answers 401: that it answers is the check.
        answer = httpx.get(url, timeout=3.0)
    except httpx.HTTPError as exc:
        return Check(
            "dashboard",
            False,
            f"{url} does not answer ({exc}); the daemon may have stopped",
            "releaseosd run   (or: releaseosd service status)",
            blocks_uploads=False,
        )
    if answer.status_code != 401:
        return Check(
            "dashboard",
            False,
            f"{url} answered {answer.status_code}: something else listens there",
            "set dashboard.port to a free port and restart the daemon",
            blocks_uploads=False,
        )
    warning = f"; reachable from other machines on {', '.join(wide)}" if wide else ""
    return Check("dashboard", True, f"{url} (open it with 'releaseosd ui'){warning}", None, False)


# --- all of them -----------------------------------------------------------------------------------


def run_checks(
    config: Config,
    config_path: Path,
    *,
    config_exists: bool = True,
    find_ffmpeg: Callable[[], Ffmpeg] | None = None,
    token_store: TokenStore | None = None,
    bus_address: Callable[[], str | None] | None = None,
    soundcloud_status: Callable[[SoundCloudConfig], dict[str, Any]] | None = None,
    service_state: Callable[[Path], ServiceState] | None = None,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
    min_free_bytes: int = MIN_FREE_BYTES,
    platform: str = sys.platform,
) -> list[Check]:
    """Every check, in the order a producer would fix them."""
    if soundcloud_status is None:
        from releaseosd.soundcloud.auth import status as login_status

        def soundcloud_status(sc: SoundCloudConfig) -> dict[str, Any]:
            return login_status(sc, store=token_store, state_dir=config.state_dir)

    checks = [
        Check(
            "config",
            config_exists,
            str(config_path)
            if config_exists
            else f"{config_path} (not present: built-in defaults)",
            None if config_exists else "releaseosd init   (writes a commented config)",
            blocks_uploads=False,
        ),
        check_ffmpeg(find_ffmpeg),
        check_keyring(token_store),
        check_notifications(config, bus_address, platform=platform),
        *check_watch_folders(config, config_path),
        check_soundcloud(config.soundcloud, config_path, soundcloud_status),
        check_service(config_path, service_state),
        check_dashboard(config),
        check_disk(config.state_dir, min_free_bytes, disk_usage),
    ]
    return checks


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.blocking_failure for c in checks) else 0


def format_checks(checks: list[Check], color: bool) -> str:
    """✓ fine, ✗ blocks uploads, ! worth fixing but tracks still go up; the fix under each."""

    def paint(text: str, fg: str) -> str:
        if not color:
            return text
        import click

        return click.style(text, fg=fg, bold=True)

    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        if check.ok:
            mark = paint("✓", "green")
        elif check.blocks_uploads:
            mark = paint("✗", "red")
        else:
            mark = paint("!", "yellow")
        lines.append(f"{mark} {check.name.ljust(width)}  {check.detail}")
        if not check.ok and check.fix:
            pad = " " * (width + 4)
            fix_lines = check.fix.splitlines()
            lines.append(f"{pad}fix: {fix_lines[0]}")
            lines.extend(f"{pad}     {line}" for line in fix_lines[1:])
    blocking = sum(c.blocking_failure for c in checks)
    warnings = sum(not c.ok and not c.blocks_uploads for c in checks)
    if blocking:
        lines.append(f"\n{blocking} problem(s) stop uploads; fix the ✗ lines above.")
    elif warnings:
        lines.append("\nReady to upload (the ! lines are worth a look).")
    else:
        lines.append("\nEverything is ready.")
    return "\n".join(lines)
