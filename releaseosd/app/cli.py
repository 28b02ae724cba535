"""The command line: parse, call, print. Heavy modules are imported inside commands so that
`releaseosd --help` stays instant.

Exit codes: 0 success; 1 the command ran and found problems or failed (validation errors, an
upload that failed, a daemon that is not running); 2 bad usage or a bad config file;
3 a state directory owned by another releaseosd.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from releaseosd import __version__

if TYPE_CHECKING:
    from releaseosd.model.config import Config

EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
EXIT_BUSY = 3


class Context:
    def __init__(self, config_path: Path | None, rehearsal: bool = False) -> None:
        self.config_path = config_path
        self.rehearsal = rehearsal
        self._config: Config | None = None
        self.resolved_path: Path | None = None
        self.config_exists = False

    @property
    def raw_config(self) -> Config:
        """The configuration as the file (or the defaults) says."""
        if self._config is None:
            from releaseosd.model.config import load_config
            from releaseosd.model.yamlfile import FileProblems

            try:
                self._config, self.resolved_path, self.config_exists = load_config(self.config_path)
            except FileProblems as exc:
                fail(str(exc), EXIT_CONFIG)
        return self._config

    @property
    def config(self) -> Config:
        """The configuration commands act on: with --sandbox, the rehearsal's own state."""
        config = self.raw_config
        if self.rehearsal:
            from releaseosd.model.config import rehearsal_state_dir

            return config.model_copy(update={"state_dir": rehearsal_state_dir(config)})
        return config


def fail(message: str, code: int = EXIT_PROBLEMS) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


pass_ctx = click.make_pass_decorator(Context)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  releaseosd run --sandbox          rehearse everything against a local SoundCloud
  releaseosd validate ~/Music/Exports/*.yaml
  releaseosd status --json | jq '.[] | select(.state == "failed")'
""",
)
@click.version_option(__version__, "-V", "--version", prog_name="releaseosd")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RELEASEOSD_CONFIG",
    help="Config file (default: $RELEASEOSD_CONFIG, else the user config dir).",
)
@click.option(
    "--sandbox",
    "rehearsal",
    is_flag=True,
    help="Act on the rehearsal that 'run --sandbox' keeps apart from your real tracks.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, rehearsal: bool) -> None:
    """releaseosd watches your DAW export folders and releases finished tracks to SoundCloud:
    preview, artwork, scheduled release, upload, notification."""
    ctx.obj = Context(config_path, rehearsal)


# --- validate -----------------------------------------------------------------------------------


def _is_config_file(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(("config.", "releaseosd")) or ".config." in name


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_ctx
def validate(obj: Context, paths: tuple[Path, ...]) -> None:
    """Check sidecars (and config files) and report every problem with file, line and key.

    A folder is searched for sidecars. Exits 1 when anything is wrong.

    \b
    Example:
      releaseosd validate "Night Drive.yaml" release.yaml ~/.config/releaseosd/config.yaml
    """
    from releaseosd.model.config import Config
    from releaseosd.model.sidecar import SIDECAR_SUFFIXES, check_sidecar_file
    from releaseosd.model.yamlfile import FileProblems, load_model

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SIDECAR_SUFFIXES))
        else:
            files.append(path)
    if not files:
        fail("no sidecars found in " + ", ".join(str(p) for p in paths))
    bad = 0
    for file in files:
        try:
            if _is_config_file(file):
                load_model(Config, file, max_bytes=1024 * 1024, context={"base_dir": file.parent})
            else:
                check_sidecar_file(file, watch_root=_watch_root_for(obj, file))
        except FileProblems as exc:
            bad += 1
            click.echo(str(exc), err=True)
        else:
            click.echo(f"ok  {file}")
    if bad:
        fail(f"{bad} of {len(files)} file(s) have problems")


def _watch_root_for(obj: Context, file: Path) -> Path | None:
    """The watched folder a sidecar given to `validate` lies in (its artwork must stay there),
    or None; a config that does not load leaves it unbounded."""
    try:
        config = obj.config
    except SystemExit:
        return None
    return config.watch_root_of(file)


# --- config ------------------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@pass_ctx
def config_show(obj: Context, as_json: bool) -> None:
    """Print the effective configuration (defaults filled in, secrets masked)."""
    import yaml

    from releaseosd.model.config import effective_dict

    data = effective_dict(obj.config)
    where = obj.resolved_path
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    origin = f"{where}" if obj.config_exists else f"{where} (not present: built-in defaults)"
    click.echo(f"# effective configuration from {origin}")
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


# --- status ------------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array, one object per track.")
@pass_ctx
def status(obj: Context, as_json: bool) -> None:
    """Show every track and where it is in the pipeline.

    \b
    Example:
      releaseosd status --json | jq '.[] | select(.state == "failed") | .error'
    """
    from releaseosd.app.control import ControlSocketError, status_json
    from releaseosd.model.store import StoreError

    try:
        # One track a line, as the daemon or the store's files give it: ten thousand tracks
        # are printed without decoding and encoding each row again.
        text = status_json(obj.config)
    except (ControlSocketError, StoreError) as exc:
        fail(str(exc))
    if as_json:
        click.echo(text)
        return
    rows = json.loads(text)
    _print_table(rows)
    click.echo(f"\n{_ffmpeg_line()}")


def _ffmpeg_line() -> str:
    from releaseosd.media.ffmpeg import FfmpegMissing, find_ffmpeg

    try:
        ffmpeg = find_ffmpeg()
    except FfmpegMissing as exc:
        return f"ffmpeg: missing: {exc}"
    return f"ffmpeg: {ffmpeg.ffmpeg} ({ffmpeg.source}, {ffmpeg.version})"


def _print_table(rows: list[dict[str, Any]]) -> None:
    from releaseosd.model.track import status_note

    if not rows:
        click.echo("no tracks yet")
        return
    color = sys.stdout.isatty()
    colours = {
        "released": "green",
        "published": "green",
        "scheduled": "cyan",
        "failed": "red",
        "invalid": "red",
        "needs_login": "yellow",
    }
    headers = ("ID", "STATE", "TITLE", "RELEASE", "NOTE")
    table = []
    for row in rows:
        note = status_note(row) or (row["soundcloud"] or {}).get("permalink_url") or ""
        release = (row.get("release_at") or "")[:16].replace("T", " ")
        table.append((row["id"][:8], row["state"], row["title"][:40], release, note))
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers[:-1])]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + "  NOTE")
    for r in table:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
        if color and r[1] in colours:
            cells[1] = click.style(cells[1], fg=colours[r[1]])
        click.echo("  ".join(cells) + "  " + r[-1])


# --- daemon ------------------------------------------------------------------------------------


def _print_dashboard(url: str, signed_in: str) -> None:
    """`run` in a terminal ends with a link that opens the dashboard signed in; anywhere else
    (a service's journal) the secret stays out of the output and `releaseosd ui` opens it."""
    if sys.stdout.isatty():
        click.echo(f"Dashboard: {signed_in}")
    else:
        click.echo(f"Dashboard: {url} (open it with 'releaseosd ui')")
    sys.stdout.flush()


@main.command()
@click.option("--no-browser", is_flag=True, help="Print the address instead of opening it.")
@pass_ctx
def ui(obj: Context, no_browser: bool) -> None:
    """Open the dashboard in your browser, signed in.

    \b
    Examples:
      releaseosd ui
      releaseosd --sandbox ui      the rehearsal's dashboard ('run --sandbox')
      releaseosd ui --no-browser   print the address (it signs in whoever opens it)
    """
    import webbrowser

    from releaseosd.app.control import ControlSocketError, DaemonNotRunning, request
    from releaseosd.dashboard.access import SecretUnsafe
    from releaseosd.dashboard.server import DashboardNotRunning, login_url, opener_page

    config = obj.config
    try:
        request(config, "GET", "/status", raw=True)
    except DaemonNotRunning:
        start = "releaseosd run --sandbox" if obj.rehearsal else "releaseosd run"
        fail(f"the daemon is not running, so there is no dashboard: start it with '{start}'")
    except ControlSocketError as exc:
        fail(str(exc))
    try:
        if no_browser:
            click.echo(login_url(config.state_dir))
            return
        opener = opener_page(config.state_dir)
    except (DashboardNotRunning, SecretUnsafe, OSError) as exc:
        fail(str(exc))
    # The browser gets a private file that leads on, never the secret on its command line.
    click.echo("Opening the dashboard in your browser. If it does not open, open this file:")
    click.echo(opener.as_uri())
    if not webbrowser.open(opener.as_uri()):
        click.echo("(No browser could be started; open the file above, or run 'ui --no-browser'.)")


@main.command()
@click.option("--sandbox", is_flag=True, help="Rehearse against a local SoundCloud sandbox.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@pass_ctx
def run(obj: Context, sandbox: bool, log_level: str) -> None:
    """Run the daemon in the foreground (what the service runs).

    \b
    Examples:
      releaseosd run --sandbox     no SoundCloud account needed; nothing leaves this machine
      releaseosd run --log-level DEBUG
    """
    from releaseosd.app.control import ControlSocketError
    from releaseosd.app.daemon import Daemon, setup_logging
    from releaseosd.model.store import StateDirBusy, StoreError

    setup_logging(log_level)
    config = obj.raw_config  # the rehearsal sets up its own state dir and SoundCloud
    try:
        daemon = Daemon(config, obj.config_path, sandbox=sandbox or obj.rehearsal)
        daemon.on_dashboard = _print_dashboard
        code = daemon.run()
    except StateDirBusy as exc:
        fail(str(exc), EXIT_BUSY)
    except StoreError as exc:
        # The store's files cannot be used as they are: its message says which and what to do.
        fail(str(exc))
    except ControlSocketError as exc:
        # Daemon.run makes the socket before it starts the watcher and scheduler; the owner
        # lock (an flock) and its daemon threads end with this process.
        fail(f"cannot start the control socket: {exc}")
    sys.exit(code)


@main.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--sidecar", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Where to write the preview and artwork.",
)
@pass_ctx
def build(obj: Context, file: Path, sidecar: Path | None, out: Path) -> None:
    """Build the preview MP3 and artwork for one file, without the daemon, to check the look.

    \b
    Example:
      releaseosd build "Night Drive.wav" --out /tmp/check
    """
    from releaseosd.media.build import build_assets
    from releaseosd.media.probe import AudioProblem
    from releaseosd.model.sidecar import Sidecar, load_track_sidecar
    from releaseosd.model.yamlfile import FileProblems

    config = obj.config
    try:
        meta = load_track_sidecar(file, config.root_for(file), sidecar) or Sidecar()
        out.mkdir(parents=True, exist_ok=True)
        built = build_assets(file, meta, config, out)
    except FileProblems as exc:
        fail(str(exc))
    except AudioProblem as exc:
        fail(str(exc))
    info = built.info
    click.echo(
        f"{file}: {info.format}, {info.duration:.2f} s, {info.sample_rate} Hz, "
        f"{info.channels} channel(s)"
    )
    click.echo(f"title    {built.title}")
    click.echo(f"preview  {built.preview}  (from {built.preview_start:.1f} s)")
    click.echo(f"artwork  {built.artwork}  ({built.artwork_source})")
    click.echo(f"sha256   {built.sha256}")


@main.command()
@click.option("--port", type=int, default=8766, show_default=True)
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None)
def sandbox(port: int, data: Path | None) -> None:
    """Serve a local SoundCloud-compatible API on 127.0.0.1 for rehearsals and tests."""
    from releaseosd.rehearsal.sandbox import serve_forever

    serve_forever(port, data)


# --- set-up: doctor, init, upload ------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array, one object per check.")
@pass_ctx
def doctor(obj: Context, as_json: bool) -> None:
    """Check that everything uploads need is in place, and say how to fix what is not.

    Exits 1 when something that stops uploads is wrong (✗); warnings (!) do not count.
    """
    from releaseosd.app.doctor import exit_code, format_checks, run_checks

    config = obj.config
    where = obj.resolved_path or obj.config_path or Path("config.yaml")
    checks = run_checks(config, where, config_exists=obj.config_exists)
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2, ensure_ascii=False))
    else:
        click.echo(format_checks(checks, color=sys.stdout.isatty()))
    sys.exit(exit_code(checks))


@main.command()
@click.option(
    "--watch",
    "watch",
    multiple=True,
    metavar="PATH",
    help="A folder your DAW exports into (repeatable; created if missing).",
)
@click.option("--sharing", type=click.Choice(["private", "public"]), default=None)
@click.option("--client-id", default=None, help="Your SoundCloud app's client id.")
@click.option(
    "--secret-stdin",
    is_flag=True,
    help="Read the client secret from the first line of standard input (never an argument).",
)
@click.option("--no-login", is_flag=True, help="Do not log in to SoundCloud now.")
@click.option("--no-service", is_flag=True, help="Do not install the background service.")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option("--yes", is_flag=True, help="Ask nothing: defaults for whatever no flag gives.")
@pass_ctx
def init(
    obj: Context,
    watch: tuple[str, ...],
    sharing: str | None,
    client_id: str | None,
    secret_stdin: bool,
    no_login: bool,
    no_service: bool,
    force: bool,
    yes: bool,
) -> None:
    """First-run set-up: watch folder, default sharing, SoundCloud app, login, service.

    Writes a commented config (every key documented) to --config, $RELEASEOSD_CONFIG or the user
    config dir. The client secret goes to the keyring, never into the file.

    \b
    Examples:
      releaseosd init
      pass show soundcloud/secret | releaseosd init --yes --watch ~/Music/Exports \\
          --client-id abc123 --secret-stdin --no-login --no-service
    """
    from releaseosd.app.init_wizard import ConfigExists, Given, gather, run_init
    from releaseosd.model.config import config_path

    path = config_path(obj.config_path)
    if path.exists() and not force:
        fail(str(ConfigExists(f"{path} exists already; edit it, or run 'releaseosd init --force'")))
    secret = None
    if secret_stdin:
        secret = sys.stdin.readline().strip() or None
        if secret is None:
            fail("--secret-stdin: standard input held no secret", EXIT_CONFIG)
    interactive = not yes and not secret_stdin and sys.stdin.isatty()
    given = Given(
        watch=watch,
        sharing=sharing,  # type: ignore[arg-type]
        client_id=client_id,
        secret=secret,
        no_login=no_login,
        no_service=no_service,
    )
    answers = gather(given, interactive)
    sys.exit(run_init(answers, path, force=force))


@main.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--sidecar",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Metadata file (default: FILE's own .yaml beside it, and its folder's release.yaml).",
)
@click.option(
    "--at",
    "at",
    help="Go public at this time (ISO 8601, local unless offset); until then it is private.",
)
@pass_ctx
def upload(obj: Context, file: Path, sidecar: Path | None, at: str | None) -> None:
    """Upload one file now, without the daemon: build, upload, wait for SoundCloud, publish.

    With --at (or the sidecar's release_at) in the future it goes up privately, and the daemon
    makes it public at that time. Audio releaseosd uploaded before is never sent again.

    \b
    Examples:
      releaseosd upload "Night Drive.wav"
      releaseosd upload take3.wav --sidecar "Night Drive.yaml" --at 2026-12-04T18:00
    """
    from releaseosd.app.oneshot import run_upload
    from releaseosd.model.localtime import parse as parse_when

    when = None
    if at:
        try:
            when = parse_when(at)
        except ValueError:
            fail(f"--at {at!r}: not an ISO 8601 time such as 2026-12-04T18:00", EXIT_CONFIG)
    outcome = run_upload(obj.config, file, sidecar, when)
    if outcome.code == 0:
        click.echo(outcome.message)
    else:
        click.echo(outcome.message, err=True)
    sys.exit(outcome.code)


# --- control -----------------------------------------------------------------------------------


def _control(obj: Context, name: str, body: dict[str, Any], ask: bool = False) -> Any:
    """Run a command (through the daemon when it runs) and print what it said; with `ask`,
    return its answer instead."""
    from releaseosd.app.commands import CommandError
    from releaseosd.app.control import ControlSocketError, run_command
    from releaseosd.app.control import ask as ask_daemon
    from releaseosd.model.store import StateDirBusy, StoreError

    try:
        if ask:
            return ask_daemon(obj.config, name, body)
        click.echo(run_command(obj.config, name, body))
    except (CommandError, ControlSocketError) as exc:
        fail(str(exc))
    except StateDirBusy as exc:
        fail(f"the daemon seems to be starting or stuck: {exc}", EXIT_BUSY)
    except StoreError as exc:
        fail(str(exc))


@main.command()
@click.argument("track")
@pass_ctx
def retry(obj: Context, track: str) -> None:
    """Try a failed (or waiting) track again now. TRACK: an id, id prefix, title or path."""
    _control(obj, "retry", {"track": track})


@main.command()
@click.argument("track")
@click.option("--now", "now", is_flag=True, help="Make it public now.")
@click.option("--at", "at", help="Make it public at this time (ISO 8601, local unless offset).")
@pass_ctx
def release(obj: Context, track: str, now: bool, at: str | None) -> None:
    """Set when a track goes public.

    \b
    Examples:
      releaseosd release "Night Drive" --now
      releaseosd release 3fa2 --at 2026-12-04T18:00
    """
    from releaseosd.model.localtime import parse as parse_when

    if now == bool(at):
        fail("give exactly one of --now or --at TIME", EXIT_CONFIG)
    body: dict[str, Any] = {"track": track}
    if at:
        try:
            body["at"] = parse_when(at).isoformat()
        except ValueError:
            fail(f"--at {at!r}: not an ISO 8601 time such as 2026-12-04T18:00", EXIT_CONFIG)
    _control(obj, "release", body)


@main.command()
@click.argument("track")
@click.option("--remote", is_flag=True, help="Also delete it on SoundCloud.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def remove(obj: Context, track: str, remote: bool, yes: bool) -> None:
    """Stop handling a track (its files stay); with --remote, delete it on SoundCloud too."""
    if remote and not yes:
        # Named as it resolved, and removed by that id: what is confirmed is what is deleted.
        found = _control(obj, "show", {"track": track}, ask=True)
        click.confirm(
            f"Delete {found['description']} on SoundCloud? This cannot be undone", abort=True
        )
        track = str(found["id"])
    _control(obj, "remove", {"track": track, "remote": remote})


@main.command()
@pass_ctx
def pause(obj: Context) -> None:
    """Pause uploads (releases still happen at their time)."""
    _control(obj, "pause", {})


@main.command()
@pass_ctx
def resume(obj: Context) -> None:
    """Resume uploads."""
    _control(obj, "resume", {})


# --- auth --------------------------------------------------------------------------------------


@main.group("auth")
def auth_group() -> None:
    """Connect releaseosd to your SoundCloud account (tokens live only in the OS keyring)."""


def _soundcloud_errors() -> tuple[type[BaseException], ...]:
    from releaseosd.soundcloud.errors import SoundCloudError

    return (SoundCloudError,)


@auth_group.command("setup")
@pass_ctx
def auth_setup(obj: Context) -> None:
    """Store your SoundCloud app's client secret in the keyring.

    The secret is read from a hidden prompt, or from standard input when that is not a terminal
    (never from the command line, where other users could see it in `ps`).

    \b
    Example:
      pass show soundcloud/secret | releaseosd auth setup
    """
    from releaseosd.soundcloud.auth import setup_secret

    client_id = obj.config.soundcloud.client_id
    if not client_id:
        fail(
            f"{obj.resolved_path}: soundcloud.client_id is not set; add your SoundCloud app's "
            "client id there first (or run 'releaseosd init')",
            EXIT_CONFIG,
        )
    if sys.stdin.isatty():
        secret = click.prompt("Client secret", hide_input=True)
    else:
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        fail("no client secret given")
    try:
        setup_secret(client_id, secret)
    except _soundcloud_errors() as exc:
        fail(str(exc))
    click.echo(f"client secret for {client_id} stored in the keyring")


@auth_group.command("login")
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait.")
@pass_ctx
def auth_login(obj: Context, no_browser: bool, timeout: float) -> None:
    """Log in to SoundCloud in your browser (OAuth 2.1 with PKCE)."""
    from releaseosd.soundcloud.auth import login

    try:
        tokens = login(
            obj.config.soundcloud,
            open_browser=not no_browser,
            timeout=timeout,
            state_dir=obj.config.state_dir,
        )
    except _soundcloud_errors() as exc:
        fail(str(exc))
    import time

    minutes = max(0, int((tokens.expires_at - time.time()) / 60))
    click.echo(f"logged in; the access token renews itself (current one: {minutes} min left)")


@auth_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def auth_status(obj: Context, as_json: bool) -> None:
    """Who releaseosd is logged in as, and when the token expires."""
    from releaseosd.soundcloud.auth import status as login_status

    try:
        info = login_status(obj.config.soundcloud, state_dir=obj.config.state_dir)
    except _soundcloud_errors() as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    elif info.get("logged_in"):
        click.echo(
            f"logged in as {info.get('username') or '?'}; token expires {info.get('expires_at')}"
        )
        if info.get("error"):
            click.echo(f"but: {info['error']}")
    else:
        click.echo(info.get("error") or "not logged in: run 'releaseosd auth login'")
    if not info.get("logged_in"):
        sys.exit(EXIT_PROBLEMS)


@auth_group.command("logout")
@pass_ctx
def auth_logout(obj: Context) -> None:
    """Sign out at SoundCloud and delete every stored secret of this app."""
    from releaseosd.soundcloud.auth import logout

    try:
        signed_out = logout(obj.config.soundcloud, state_dir=obj.config.state_dir)
    except _soundcloud_errors() as exc:
        fail(str(exc))
    click.echo("signed out and forgot the tokens" if signed_out else "forgot the tokens")


# --- service -----------------------------------------------------------------------------------


@main.group("service")
def service_group() -> None:
    """Install releaseosd as a systemd user service (Linux) or a launchd agent (macOS)."""


def _platform_option(f: Any) -> Any:
    return click.option(
        "--platform",
        type=click.Choice(["linux", "darwin"]),
        default=None,
        help="Act as on this platform (default: this machine's).",
    )(f)


@service_group.command("install")
@click.option("--dry-run", is_flag=True, help="Print the file and the commands; change nothing.")
@_platform_option
@pass_ctx
def service_install(obj: Context, dry_run: bool, platform: str | None) -> None:
    """Install and start the service; it then starts at every login."""
    from releaseosd.app import service

    obj.config  # noqa: B018 - refuse to install a service around a broken config
    sys.exit(service.install(dry_run=dry_run, platform=platform, config_path=obj.resolved_path))


@service_group.command("uninstall")
@click.option("--dry-run", is_flag=True, help="Print the commands; change nothing.")
@_platform_option
def service_uninstall(dry_run: bool, platform: str | None) -> None:
    """Stop the service and remove it."""
    from releaseosd.app import service

    sys.exit(service.uninstall(dry_run=dry_run, platform=platform))


@service_group.command("status")
@_platform_option
@pass_ctx
def service_status(obj: Context, platform: str | None) -> None:
    """Whether the service is installed and running, and where its logs are."""
    from releaseosd.app import service

    sys.exit(service.status(platform=platform, config_path=obj.config_path))


if __name__ == "__main__":  # pragma: no cover
    main()
