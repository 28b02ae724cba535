"""`releaseosd init`: the written config loads, carries the answers, keeps every comment of the
example, is never overwritten without --force, and never holds the client secret."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from daemon_harness import file_token_store, keyring_file
from setup_helpers import cli

from releaseosd.app.init_wizard import (
    Answers,
    ConfigExists,
    Given,
    gather,
    render_config,
    run_init,
    write_config,
)
from releaseosd.model.config import load_config
from releaseosd.model.reference import example_config

SECRET = "init-secret-Xy7Qp2"


def _comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def test_written_config_loads_with_the_answers_and_every_comment(tmp_path: Path) -> None:
    exports, live = tmp_path / "exports", tmp_path / "live sets"
    answers = Answers(
        watch=[str(exports), str(live)], sharing="public", client_id="abc123", secret=SECRET
    )
    path = write_config(answers, tmp_path / "conf" / "config.yaml")

    config, _, exists = load_config(path)
    assert exists
    assert [w.path for w in config.watch] == [exports, live]
    assert config.defaults.sharing == "public"
    assert config.soundcloud.client_id == "abc123"
    text = path.read_text(encoding="utf-8")
    assert _comments(text) == _comments(example_config())
    assert SECRET not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_tilde_paths_stay_portable_and_relative_ones_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = render_config(Answers(watch=["~/Music/Exports", "rel/dir"]))
    assert "  - path: ~/Music/Exports" in text
    assert f"  - path: {tmp_path / 'rel/dir'}" in text


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("stable_seconds: 5\n", encoding="utf-8")
    with pytest.raises(ConfigExists, match="--force"):
        write_config(Answers(), path)
    assert path.read_text(encoding="utf-8") == "stable_seconds: 5\n"
    write_config(Answers(sharing="public"), path, force=True)
    assert load_config(path)[0].defaults.sharing == "public"


def test_a_bad_answer_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "config.yaml"
    same = str(tmp_path / "x")
    code = run_init(Answers(watch=[same, same]), path, out=out)
    assert code == 2
    assert "listed twice" in out.getvalue()
    assert not path.exists() and list(tmp_path.glob(".config.yaml.*")) == []


def test_run_init_stores_the_secret_logs_in_and_installs_as_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = file_token_store(tmp_path / "keyring.cfg")
    monkeypatch.setattr("releaseosd.soundcloud.auth.TokenStore", lambda: store)
    logins: list[Any] = []
    installs: list[Path] = []

    def install(path: Path) -> int:
        installs.append(path)
        return 1  # e.g. no systemd here

    out = io.StringIO()
    answers = Answers(watch=[str(tmp_path / "new" / "exports")], client_id="cid", secret=SECRET)
    code = run_init(
        answers, tmp_path / "config.yaml", out=out, login=logins.append, install_service=install
    )

    assert code == 1 and "releaseosd service install" in out.getvalue()
    assert (tmp_path / "new" / "exports").is_dir()
    assert store.get_client_secret("cid") == SECRET
    assert [c.soundcloud.client_id for c in logins] == ["cid"]
    assert installs == [tmp_path / "config.yaml"]
    assert SECRET not in out.getvalue()


def test_interactive_prompts_fill_in_what_flags_did_not(tmp_path: Path) -> None:
    got: list[Answers] = []

    @click.command()
    def ask() -> None:
        got.append(gather(Given(no_service=True), interactive=True))

    typed = "\n".join([str(tmp_path / "a"), str(tmp_path / "b"), "", "public", "cid9", SECRET, "n"])
    result = CliRunner().invoke(ask, input=typed + "\n")
    assert result.exit_code == 0, result.output
    [answers] = got
    assert answers.watch == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert answers.sharing == "public" and answers.client_id == "cid9"
    assert answers.secret == SECRET and answers.login is False
    assert answers.install_service is False
    assert SECRET not in result.output and SECRET not in repr(answers)


# --- the command line (needs the `init` command from /tmp/cli_snippets.py wired in) ---------------


def test_cli_init_non_interactive_then_refuses_a_second_time(tmp_path: Path) -> None:
    config = tmp_path / "cfg" / "config.yaml"
    exports = tmp_path / "exports"
    args = ["--config", str(config), "init", "--yes", "--watch", str(exports)]
    flags = ["--sharing", "public", "--client-id", "cli-id", "--secret-stdin"]

    done = cli(tmp_path, *args, *flags, "--no-login", "--no-service", stdin=SECRET + "\n")

    assert done.returncode == 0, done.stdout + done.stderr
    loaded = load_config(config)[0]
    assert [w.path for w in loaded.watch] == [exports] and exports.is_dir()
    assert loaded.defaults.sharing == "public" and loaded.soundcloud.client_id == "cli-id"
    text = config.read_text(encoding="utf-8")
    assert SECRET not in text and _comments(text) == _comments(example_config())
    assert SECRET not in done.stdout + done.stderr
    assert file_token_store(keyring_file(tmp_path)).get_client_secret("cli-id") == SECRET

    again = cli(tmp_path, *args, "--no-login", "--no-service")
    assert again.returncode == 1
    assert "--force" in again.stderr + again.stdout
    assert config.read_text(encoding="utf-8") == text

    forced = cli(tmp_path, *args, "--sharing", "private", "--no-login", "--no-service", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert load_config(config)[0].defaults.sharing == "private"
