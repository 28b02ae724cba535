"""`releaseosd init`: first-run set-up — watch folder, default sharing, SoundCloud app, login,
service — ending in a commented config file.

The config is the generated example (`reference.example_config()`) with the answers put in, so
every key stays documented in the user's own file. The client secret goes to the keyring through
`auth.setup_secret` and never into the file.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import yaml

from releaseosd.model.config import Config, load_config

DEFAULT_WATCH = "~/Music/Exports"

Sharing = Literal["public", "private"]


class ConfigExists(Exception):
    """The config file is there already and --force was not given."""


@dataclass
class Answers:
    watch: list[str] = field(default_factory=lambda: [DEFAULT_WATCH])
    sharing: Sharing = "private"
    client_id: str = ""
    # Goes to the keyring only; never rendered, never printed.
    secret: str | None = field(default=None, repr=False)
    login: bool = True
    install_service: bool = True


# --- the file ---------------------------------------------------------------------------------------


def _scalar(value: str) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.strip().removesuffix("...").strip()


def _watch_value(path: str) -> str:
    """As typed when it starts with ~ or $ (portable between machines), else absolute: a relative
    path in the config would be relative to the config's folder, not to where init ran."""
    if path.startswith(("~", "$")):
        return path
    return str(Path(path).absolute())


def render_config(answers: Answers, example: str | None = None) -> str:
    """The example config with the answers in place; every comment kept."""
    if example is None:
        from releaseosd.model.reference import example_config

        example = example_config()
    lines = example.splitlines()
    lines = _replace_watch(lines, [_watch_value(p) for p in answers.watch])
    lines = _set_key(lines, "defaults", "sharing", _scalar(answers.sharing))
    lines = _set_key(lines, "soundcloud", "client_id", _scalar(answers.client_id.strip()))
    return "\n".join(lines) + "\n"


def _replace_watch(lines: list[str], paths: list[str]) -> list[str]:
    start = lines.index("watch:")
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    if not paths:
        return [*lines[:start], "watch: []", *lines[end:]]
    entries = []
    for path in paths:
        entries += [f"  - path: {_scalar(path)}", "    recursive: true", "    polling: false"]
    return [*lines[: start + 1], *entries, *lines[end:]]


def _set_key(lines: list[str], section: str, key: str, value: str) -> list[str]:
    start = lines.index(f"{section}:")
    pattern = re.compile(rf"^  {re.escape(key)}:")
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if line and not line.startswith(" "):
            break
        if pattern.match(line):
            return [*lines[:index], f"  {key}: {value}", *lines[index + 1 :]]
    raise ValueError(f"the example config has no {section}.{key}")


def write_config(answers: Answers, path: Path, force: bool = False) -> Path:
    """Render, check with the real loader, then write atomically (0600). Returns the path.

    Raises ConfigExists (no --force), FileProblems (the answers make a bad config: the message
    names the key), OSError (cannot write there).
    """
    if path.exists() and not force:
        raise ConfigExists(
            f"{path} exists already; edit it, or run 'releaseosd init --force' to replace it"
        )
    text = render_config(answers)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Loaded from the same folder, so relative paths resolve as they will from the real file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        load_config(Path(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- asking -----------------------------------------------------------------------------------------


@dataclass
class Given:
    """What the command line said; None (or empty) where the user is to be asked."""

    watch: tuple[str, ...] = ()
    sharing: Sharing | None = None
    client_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    no_login: bool = False
    no_service: bool = False


def gather(given: Given, interactive: bool) -> Answers:
    """Fill in what the flags left open: by asking (interactive) or with the defaults."""
    import click

    answers = Answers(login=not given.no_login, install_service=not given.no_service)
    if given.watch:
        answers.watch = list(given.watch)
    elif interactive:
        first = click.prompt("Folder your DAW exports into", default=DEFAULT_WATCH)
        folders = [first]
        while more := click.prompt(
            "Another folder to watch (Enter when done)", default="", show_default=False
        ):
            folders.append(more)
        answers.watch = folders
    if given.sharing is not None:
        answers.sharing = given.sharing
    elif interactive:
        answers.sharing = click.prompt(
            "Sharing for tracks whose sidecar does not say",
            type=click.Choice(["private", "public"]),
            default="private",
        )
    if given.client_id is not None:
        answers.client_id = given.client_id.strip()
    elif interactive:
        click.echo(
            "releaseosd uploads as your own SoundCloud app: register one at "
            "https://soundcloud.com/you/apps (redirect URI http://localhost:8765/callback)."
        )
        answers.client_id = click.prompt(
            "Client id (Enter to skip for now)", default="", show_default=False
        ).strip()
    answers.secret = given.secret
    if answers.client_id and answers.secret is None and interactive:
        secret = click.prompt(
            "Client secret (hidden; Enter to skip)",
            default="",
            show_default=False,
            hide_input=True,
        ).strip()
        answers.secret = secret or None
    if interactive and answers.client_id and not given.no_login:
        answers.login = click.confirm("Log in to SoundCloud now (opens your browser)?", True)
    if interactive and not given.no_service:
        answers.install_service = click.confirm(
            "Run releaseosd in the background, starting at every login?", True
        )
    return answers


def missing_folders(answers: Answers) -> list[Path]:
    paths = [Path(os.path.expandvars(os.path.expanduser(p))).absolute() for p in answers.watch]
    return [p for p in paths if not p.is_dir()]


# --- the whole set-up -------------------------------------------------------------------------------


def run_init(
    answers: Answers,
    path: Path,
    *,
    force: bool = False,
    create_folders: bool = True,
    out: TextIO | None = None,
    login: Callable[[Config], object] | None = None,
    install_service: Callable[[Path], int] | None = None,
) -> int:
    """Write the config, store the secret, log in and install the service, as answered.

    Returns the exit code: 0 when everything asked for worked; 1 when the config exists already
    or a later step failed (the config is written by then; the message says what to run to
    finish); 2 when the answers make a bad config or it cannot be written.
    """
    from releaseosd.model.yamlfile import FileProblems
    from releaseosd.soundcloud.auth import setup_secret
    from releaseosd.soundcloud.errors import SoundCloudError

    out = sys.stdout if out is None else out
    try:
        if create_folders:
            for folder in missing_folders(answers):
                folder.mkdir(parents=True, exist_ok=True)
                out.write(f"Created {folder}\n")
        write_config(answers, path, force)
    except ConfigExists as exc:
        out.write(f"{exc}\n")
        return 1
    except FileProblems as exc:
        out.write(f"not written, the answers make a bad config:\n{exc}\n")
        return 2
    except OSError as exc:
        out.write(f"could not write {path}: {exc.strerror or exc}\n")
        return 2
    out.write(f"Wrote {path} (every key is documented in it)\n")
    config = load_config(path)[0]
    code = 0
    if not answers.client_id:
        out.write(
            "No SoundCloud client id yet: add it as soundcloud.client_id in the config, then run "
            "'releaseosd auth setup' and 'releaseosd auth login'.\n"
        )
    elif answers.secret:
        try:
            setup_secret(answers.client_id, answers.secret)
        except SoundCloudError as exc:
            out.write(f"The client secret was not stored: {exc}\n")
            out.write("Fix that, then run: releaseosd auth setup\n")
            code = 1
        else:
            out.write("Stored the client secret in the keyring.\n")
    else:
        out.write("No client secret given: run 'releaseosd auth setup' to store it.\n")
    if answers.login and answers.client_id and code == 0:
        if not answers.secret:
            out.write("Log in once the secret is stored: releaseosd auth login\n")
        else:
            try:
                (login or _login)(config)
            except SoundCloudError as exc:
                out.write(f"Login failed: {exc}\nTry again with: releaseosd auth login\n")
                code = 1
    if answers.install_service:
        status = (install_service or _install_service)(path)
        if status != 0:
            out.write(
                "The service was not installed; see above. Retry: releaseosd service install\n"
            )
            code = 1
    out.write("Check everything with: releaseosd doctor\n")
    return code


def _login(config: Config) -> object:
    from releaseosd.soundcloud.auth import login

    return login(config.soundcloud)


def _install_service(path: Path) -> int:
    from releaseosd.app import service

    return service.install(config_path=path)
