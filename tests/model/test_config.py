from __future__ import annotations

import os
from pathlib import Path

import pytest

from releaseosd.model.config import Config, config_path, effective_dict, load_config
from releaseosd.model.yamlfile import FileProblems

# (file text, expected line, expected key path, a fragment of the message)
BAD_CONFIGS = [
    ("uploads:\n  concurrency: 0\n", 2, "uploads.concurrency", "must be ≥ 1, got 0"),
    ("uploads:\n  max_attempts: -3\n", 2, "uploads.max_attempts", "must be ≥ 1"),
    ("uploads:\n  concurency: 2\n", 2, "uploads.concurency", "did you mean 'concurrency'"),
    ("stabel_seconds: 3\n", 1, "stabel_seconds", "did you mean 'stable_seconds'"),
    ("stable_seconds: 0\n", 1, "stable_seconds", "must be > 0"),
    ("stable_seconds: soon\n", 1, "stable_seconds", "number"),
    (
        "watch:\n  - path: /music\n    recursiv: false\n",
        3,
        "watch[0].recursiv",
        "did you mean 'recursive'",
    ),
    ("watch:\n  - recursive: true\n", 2, "watch[0].path", "is required"),
    ("watch:\n  - path: /a\n  - path: /a\n", 1, "watch", "listed twice"),
    ("watch: /music\n", 1, "watch", "list"),
    ("watch:\n  - path: /m\n    polling: maybe\n", 3, "watch[0].polling", "bool"),
    ("soundcloud:\n  api_url: api.soundcloud.com\n", 2, "soundcloud.api_url", "http"),
    (
        "soundcloud:\n  redirect_uri: http://example.com/cb\n",
        2,
        "soundcloud.redirect_uri",
        "loopback",
    ),
    (
        "soundcloud:\n  redirect_uri: http://localhost/callback\n",
        2,
        "soundcloud.redirect_uri",
        "port",
    ),
    ("soundcloud:\n  client_secret: x\n", 2, "soundcloud.client_secret", "unknown key"),
    (
        "uploads:\n  backoff_base_seconds: 100\n  backoff_max_seconds: 10\n",
        1,
        "uploads",
        "backoff_max_seconds must be ≥",
    ),
    ("defaults:\n  sharing: unlisted\n", 2, "defaults.sharing", "'public' or 'private'"),
    ("defaults:\n  licence: cc-by\n", 2, "defaults.licence", "did you mean 'license'"),
    ("defaults:\n  tags: techno\n", 2, "defaults.tags", "must be a list"),
    ("preview:\n  length: 0\n", 2, "preview.length", "must be > 0"),
    ("preview:\n  start: -5\n", 2, "preview.start", "≥ 0"),
    ("preview:\n  bitrate: 1000\n", 2, "preview.bitrate", "≤ 320"),
    ("preview:\n  fade_in: -1\n", 2, "preview.fade_in", "≥ 0"),
    ("artwork:\n  size: 10\n", 2, "artwork.size", "≥ 800"),
    ("artwork:\n  background: red\n", 2, "artwork.background", "#rrggbb"),
    ("artwork:\n  style: spiral\n", 2, "artwork.style", "must be one of"),
    ("notifications:\n  released: sometimes\n", 2, "notifications.released", "bool"),
    ("notifications:\n  relased: false\n", 2, "notifications.relased", "did you mean 'released'"),
    ("uploads: 3\n", 1, "uploads", "UploadsConfig"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), BAD_CONFIGS)
def test_bad_config_names_file_line_and_key(write, text, line, key, fragment):  # type: ignore[no-untyped-def]
    path = write("config.yaml", text)
    with pytest.raises(FileProblems) as info:
        load_config(path)
    rendered = str(info.value)
    expected_prefix = f"{path}:{line}: {key}: "
    assert expected_prefix in rendered, rendered
    assert fragment in rendered, rendered


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("watch: [\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
        ("1: x\n", "keys must be words"),
    ],
)
def test_structurally_bad_config(write, text, fragment):  # type: ignore[no-untyped-def]
    path = write("config.yaml", text)
    with pytest.raises(FileProblems) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_every_problem_is_reported_at_once(write):  # type: ignore[no-untyped-def]
    path = write("config.yaml", "uploads:\n  concurrency: 0\nstable_seconds: -1\n")
    with pytest.raises(FileProblems) as info:
        load_config(path)
    keys = [p.key for p in info.value.problems]
    assert keys == ["uploads.concurrency", "stable_seconds"]


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, path, exists = load_config()
    assert not exists
    assert path.is_relative_to(Path(os.environ["XDG_CONFIG_HOME"]))
    assert config.stable_seconds == 2.0
    assert config.uploads.concurrency == 1 and config.uploads.max_attempts == 10
    assert config.soundcloud.api_url == "https://api.soundcloud.com"
    assert config.soundcloud.auth_url == "https://secure.soundcloud.com"
    assert config.soundcloud.redirect_uri == "http://localhost:8765/callback"
    assert config.defaults.sharing == "private"
    assert config.defaults.description_template.splitlines() == [
        "Created with Release OS",
        "BPM: {bpm}",
        "Key: {key}",
    ]
    assert config.watch == []


def test_discovery_order(write, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    env_file = write("env.yaml", "stable_seconds: 5\n")
    flag_file = write("flag.yaml", "stable_seconds: 7\n")
    monkeypatch.setenv("RELEASEOSD_CONFIG", str(env_file))
    assert load_config()[0].stable_seconds == 5
    assert load_config(flag_file)[0].stable_seconds == 7
    monkeypatch.delenv("RELEASEOSD_CONFIG")
    assert config_path().name == "config.yaml"
    assert "releaseosd" in str(config_path())


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileProblems, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_relative_paths_resolve_beside_the_config(write) -> None:  # type: ignore[no-untyped-def]
    path = write("sub/config.yaml", "watch:\n  - path: exports\nstate_dir: state\n")
    config, _, _ = load_config(path)
    assert config.watch[0].path == path.parent / "exports"
    assert config.state_dir == path.parent / "state"


def test_effective_dict_is_plain_data() -> None:
    data = effective_dict(Config())
    assert data["uploads"]["concurrency"] == 1
    assert isinstance(data["state_dir"], str)


REPO = Path(__file__).resolve().parents[2]


def test_example_config_has_not_drifted_and_loads() -> None:
    from releaseosd.model.reference import example_config

    example = REPO / "config" / "releaseosd.example.yaml"
    assert example.read_text(encoding="utf-8") == example_config(), (
        "config/releaseosd.example.yaml is out of date: run `python -m releaseosd.model.reference`"
    )
    config, _, _ = load_config(example)
    assert config.watch and config.uploads.concurrency == 1


def test_readme_reference_tables_have_not_drifted() -> None:
    from releaseosd.model.reference import render_readme

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == render_readme(readme), (
        "README is out of date: run `python -m releaseosd.model.reference`"
    )


def test_root_for_is_the_watched_folder_else_the_recorded_one_else_its_own(tmp_path: Path) -> None:
    """One rule bounds an export's sidecar, artwork and links, for the daemon, `upload` and
    `build` alike."""
    watched, dropped, elsewhere = tmp_path / "watched", tmp_path / "dropped", tmp_path / "else"
    for folder in (watched, dropped, elsewhere / "sub"):
        folder.mkdir(parents=True)
    (tmp_path / "link").symlink_to(watched)
    config = Config(watch=[{"path": str(watched)}])
    assert config.watch_root_of(watched / "a" / "Song.wav") == watched.resolve()
    assert config.root_for(watched / "a" / "Song.wav") == watched.resolve()
    assert config.root_for(tmp_path / "link" / "Song.wav") == watched.resolve()
    assert config.watch_root_of(dropped / "Song.wav") is None
    assert config.root_for(dropped / "Song.wav", recorded=str(dropped)) == dropped
    # A recorded root the file no longer lies in does not count: its own folder bounds it.
    assert (
        config.root_for(elsewhere / "sub" / "Song.wav", recorded=str(dropped))
        == (elsewhere / "sub").resolve()
    )
    assert config.root_for(elsewhere / "Song.wav") == elsewhere.resolve()
