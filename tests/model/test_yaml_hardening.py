"""YAML that is hostile or merely mistaken: alias bombs, impossible dates, keys given twice,
brackets never closed. Each is a Problem naming file, line and key, never a traceback, and the
work a file can cause is bounded by its size. Both PyYAML loaders (libyaml's and the pure-Python
one) are checked; they report some errors differently. Also: the sidecar JSON Schema accepts what
the loader accepts."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from releaseosd.model import yamlfile
from releaseosd.model.config import load_config
from releaseosd.model.sidecar import Sidecar, json_schema_text, load_sidecar
from releaseosd.model.yamlfile import MAX_EXPANDED_VALUES, FileProblems, parse_yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=sorted(yamlfile.LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with each loader PyYAML has here (libyaml's when it was built with it)."""
    monkeypatch.setattr(yamlfile, "_make_loader", yamlfile.LOADERS[request.param])
    yield request.param


def problems_of(path: Path, *, config: bool = False) -> str:
    with pytest.raises(FileProblems) as info:
        if config:
            load_config(path)
        else:
            load_sidecar(path, watch_root=path.parent)
    return str(info.value)


def bomb(levels: int = 9, width: int = 10) -> str:
    """The "billion laughs": each level is a list of `width` aliases of the one before."""
    names = [f"l{i}" for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * width)}]")
    return "\n".join(lines) + "\n"


# --- alias bombs -----------------------------------------------------------------------------


def test_billion_laughs_sidecar_is_refused_at_once(write, loader) -> None:  # type: ignore[no-untyped-def]
    text = bomb()
    assert len(text) < 600  # ~10**9 values once expanded
    path = write("Bomb.yaml", text)
    started = time.monotonic()
    rendered = problems_of(path)
    assert time.monotonic() - started < 2.0  # milliseconds in fact; seconds before the fix
    # Line 4 is `l3: &l3 [*l2, ...]`, the first key that is too big on its own (11,111 values).
    assert f"{path}:4: l3: too many aliases: expands to 11,111 values" in rendered, rendered
    assert "sidecars and configs do not need anchors like this" in rendered


def test_bomb_behind_a_real_field_names_that_field(write, loader) -> None:  # type: ignore[no-untyped-def]
    # Nested under a key the sidecar knows: tags: {l0: &l0 [...], ..., l3: &l3 [*l2, ...], l4: ...}
    lines = bomb(levels=5).splitlines()
    text = "title: Night\ntags:\n" + "\n".join(f"  {line}" for line in lines) + "\n"
    path = write("Nested.yaml", text)
    rendered = problems_of(path)
    assert f"{path}:6: tags.l3: too many aliases: expands to 11,111 values" in rendered, rendered


def test_counting_is_linear_in_the_text_not_the_expansion(write, loader) -> None:  # type: ignore[no-untyped-def]
    # 60 doublings: 2**60 values. Counting without memoising shared nodes would never finish.
    path = write("Doubling.yaml", bomb(levels=60, width=2))
    started = time.monotonic()
    rendered = problems_of(path)
    assert time.monotonic() - started < 2.0
    assert "too many aliases" in rendered, rendered


def test_bomb_in_a_config_file_is_refused(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write("config.yaml", "stable_seconds: 2\n" + bomb())
    rendered = problems_of(path, config=True)
    assert f"{path}:5: l3: too many aliases" in rendered, rendered


def test_an_alias_that_contains_itself_is_refused(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write("Loop.yaml", "title: A\ntags: &t [x, *t]\n")
    rendered = problems_of(path)
    assert f"{path}:2: tags: refers to itself through an alias" in rendered, rendered


def test_modest_aliases_and_merges_still_work(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write(
        "Fine.yaml",
        "artist: &who Nova Lights\nlabel: *who\n"
        "tags: &t [techno, house]\npreview: {<<: {start: 10, length: 20}, length: 30}\n",
    )
    sidecar = load_sidecar(path)
    assert sidecar.label == "Nova Lights" and sidecar.tags == ["techno", "house"]
    assert sidecar.preview is not None and sidecar.preview.length == 30
    assert sidecar.preview.start == 10
    # Just under the limit is fine too: a few hundred values, each written once.
    many = write("Many.yaml", "description: |\n" + "".join(f"  line {i}\n" for i in range(300)))
    assert load_sidecar(many).description is not None
    assert MAX_EXPANDED_VALUES >= 10_000


def test_data_is_built_from_the_one_parse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def twice(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the text was parsed a second time")

    monkeypatch.setattr(yaml, "load", twice)
    monkeypatch.setattr(yaml, "compose", twice)
    data, lines = parse_yaml("title: A\ntags: [x, y]\n", tmp_path / "a.yaml")
    assert data == {"title": "A", "tags": ["x", "y"]}
    assert lines.line(("tags",)) == 2


class _Counted:
    calls = 0

    def __repr__(self) -> str:
        _Counted.calls += 1
        return "v"


def test_values_in_messages_are_described_without_a_full_repr() -> None:
    item = _Counted()
    row = [item] * 1000
    value = [row] * 1000  # a million items, the way aliases share them
    _Counted.calls = 0
    text = yamlfile._describe(value)
    assert len(text) <= 40
    assert _Counted.calls <= 16, _Counted.calls
    assert len(yamlfile._describe("x" * 10_000_000)) <= 40
    assert yamlfile._describe("fast") == "'fast'"
    assert yamlfile._describe(10**4000).endswith("...")


# --- values PyYAML cannot build --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        ("title: A\nrelease_at: 2026-13-01T10:00:00\n", 2, "release_at", "month"),
        ("release_at: 2026-02-30 18:00:00\n", 1, "release_at", "day"),
        ("release_date: 2026-13-01\n", 1, "release_date", "month"),
        ("release_at: !!timestamp 2026-13-01T10:00:00\n", 1, "release_at", "not a real date"),
        ("title: A\nbpm: " + "1" * 5000 + "\n", 2, "bpm", "too many digits"),
        ("description: !!binary 'not base64!'\n", 1, "description", "not valid YAML"),
        ("preview:\n  start: !!float nope\n", 2, "preview.start", "cannot be read"),
    ],
)
def test_values_that_cannot_be_built_are_problems(write, loader, text, line, key, fragment):  # type: ignore[no-untyped-def]
    path = write("Odd.yaml", text)
    rendered = problems_of(path)
    assert f"{path}:{line}: {key}: " in rendered, rendered
    assert fragment in rendered, rendered
    assert "Traceback" not in rendered


@pytest.mark.parametrize(
    ("written", "field"),
    [
        ("2026-12-01T18:00", "release_at"),
        ("2026-12-01 18:00:00", "release_at"),
        ("2026-12-01T18:00:00", "release_at"),
        ("2026-12-01T18:00:00+02:00", "release_at"),
        ("2026-12-01T18:00:00Z", "release_at"),
        ("2026-12-01", "release_date"),
    ],
)
def test_dates_load_as_they_did_before(write, loader, written: str, field: str) -> None:  # type: ignore[no-untyped-def]
    path = write("When.yaml", f"{field}: {written}\n")
    # Before: PyYAML made datetimes of these (the last three), pydantic took the rest as text.
    before = Sidecar.model_validate(yaml.safe_load(path.read_text()))
    after = load_sidecar(path)
    assert getattr(after, field) == getattr(before, field)
    assert after.release_date == before.release_date


def test_a_date_without_a_time_still_says_so(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write("When.yaml", "release_at: 2026-12-01\n")
    assert f"{path}:1: release_at: needs a time as well as a date" in problems_of(path)


def test_date_like_text_stays_text(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write("Dated.yaml", "title: 2026-12-01\ntags: [2026-12-01]\n")
    sidecar = load_sidecar(path)
    assert sidecar.title == "2026-12-01" and sidecar.tags == ["2026-12-01"]
    assert sidecar.release_at is None


def test_nesting_deeper_than_the_parser_can_take(write, loader) -> None:  # type: ignore[no-untyped-def]
    for text in ("[" * 20_000 + "]" * 20_000, "[" * 30_000, "- " * 20_000 + "x"):
        path = write("Deep.yaml", f"title: {text}\n")
        started = time.monotonic()
        rendered = problems_of(path)
        assert time.monotonic() - started < 5.0
        assert str(path) in rendered and "Traceback" not in rendered


def test_control_characters_are_a_problem_not_a_crash(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write("Ctl.yaml", "title: a\x00b\x07\n")
    assert "not valid YAML" in problems_of(path)


_FRAGMENTS = [
    "title: ", "tags: ", "release_at: ", "bpm: ", "preview:\n  ", "\n", "  ", "- ", "[", "]",
    "{", "}", ", ", ": ", "&a ", "*a", "&b ", "*b", "<<: ", "!!timestamp ", "!!int ", "!!binary ",
    "!!float ", "!!set ", "!!omap ", "!!pairs ", "!!str ", "? ", '"', "'", "#", "2026-13-01",
    "2026-12-01T18:00:00", "99999999999999999999", "x", "~", "|\n", "---\n", "%YAML 1.1\n",
]  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(st.sampled_from(_FRAGMENTS), max_size=25))
def test_no_tag_or_alias_combination_crashes_the_loader(tmp_path: Path, parts: list[str]) -> None:
    text = "".join(parts)
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    for name in sorted(yamlfile.LOADERS):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(yamlfile, "_make_loader", yamlfile.LOADERS[name])
            try:
                load_sidecar(path, watch_root=tmp_path)
            except FileProblems as exc:
                assert exc.problems and all(p.file == path for p in exc.problems), name


# --- keys given twice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        ("title: A\nartist: B\ntitle: C\n", 3, "title", 1),
        ("title: A\n'title': C\n", 2, "title", 1),
        ("preview:\n  length: 3\n  start: 1\n  length: 4\n", 4, "preview.length", 2),
        ("preview: {length: 3, length: 4}\n", 1, "preview.length", 1),
    ],
)
def test_a_key_given_twice_in_a_sidecar(write, loader, text, line, key, first):  # type: ignore[no-untyped-def]
    path = write("Twice.yaml", text)
    rendered = problems_of(path)
    assert f"{path}:{line}: {key}: given twice (first on line {first})" in rendered, rendered


def test_a_key_given_twice_in_a_config_or_release_yaml(write, loader) -> None:  # type: ignore[no-untyped-def]
    config = write(
        "config.yaml",
        "watch:\n  - path: /a\n    recursive: true\n    path: /b\n"
        "uploads:\n  concurrency: 1\nuploads:\n  concurrency: 2\n",
    )
    rendered = problems_of(config, config=True)
    assert f"{config}:4: watch[0].path: given twice (first on line 2)" in rendered, rendered
    assert f"{config}:7: uploads: given twice (first on line 5)" in rendered, rendered
    defaults = write("release.yaml", "genre: House\ngenre: Techno\n")
    track = write("a.yaml", "title: A\n")
    with pytest.raises(FileProblems) as info:
        load_sidecar(track, folder_defaults=defaults)
    assert f"{defaults}:2: genre: given twice (first on line 1)" in str(info.value)


def test_merged_keys_may_be_overridden(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write("config.yaml", "defaults: {<<: {sharing: public, genre: X}, sharing: private}\n")
    config, _, _ = load_config(path)
    assert config.defaults.sharing == "private" and config.defaults.genre == "X"


# --- brackets and quotes never closed --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        (
            "title: A\nartist: B\ntags: [techno, house\ngenre: Techno\nbpm: 120\n",
            3,
            "tags",
            "the list opened here is never closed ('[' without ']')",
        ),
        ("title: A\ntags: [\n", 2, "tags", "the list opened here is never closed"),
        ("title: A\ntags: &t [a, b\nlabel: x\n", 2, "tags", "the list opened here is never closed"),
        ("- [a, b\n- c\n", 1, "[0]", "the list opened here is never closed"),
        (
            "title: Nüit ☃ 🎧\ntags: [a, b\nx: 1\n",
            2,
            "tags",
            "the list opened here is never closed",
        ),
        (
            'title: A\ntags: ["deep]", house\nplaylist: [x]\ngenre: Techno\n',
            2,
            "tags",
            "the list opened here is never closed",
        ),
        (
            "title: A\npreview: {start: 3, length: 20\nbpm: 120\n",
            2,
            "preview",
            "the mapping opened here is never closed ('{' without '}')",
        ),
        (
            "preview: {start: [1, 2, length: 3}\nbpm: 1\n",
            1,
            "preview.start",
            "the list opened here is never closed",
        ),
        (
            'title: A\ndescription: "Late night\nbpm: 120\n',
            2,
            "description",
            'the quoted text opened here never ends (no closing ")',
        ),
    ],
)
def test_unclosed_bracket_is_reported_where_it_opened(write, loader, text, line, key, fragment):  # type: ignore[no-untyped-def]
    path = write("Open.yaml", text)
    rendered = problems_of(path)
    assert f"{path}:{line}: {key}: {fragment}" in rendered, rendered


def test_brackets_that_do_close_are_not_blamed(write, loader) -> None:  # type: ignore[no-untyped-def]
    fine = write("Fine.yaml", "tags: [techno,\n  house, 'late ] night']\ngenre: Techno\n")
    assert load_sidecar(fine).tags == ["techno", "house", "late ] night"]
    wrong = write("Wrong.yaml", 'title: A\ntags: [a, "b" c]\n')
    rendered = problems_of(wrong)
    assert f"{wrong}:2: not valid YAML" in rendered, rendered
    assert "never closed" not in rendered


def test_unclosed_bracket_in_a_config(write, loader) -> None:  # type: ignore[no-untyped-def]
    path = write(
        "config.yaml", "stable_seconds: 2\nwatch: [\n  /music\nuploads:\n  concurrency: 2\n"
    )
    rendered = problems_of(path, config=True)
    assert f"{path}:2: watch: the list opened here is never closed" in rendered, rendered


# --- the JSON Schema accepts what the loader accepts -----------------------------------------


def _schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(json_schema_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    # Check formats as editors do (where jsonschema can check them here).
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


ACCEPTED = [
    "playlist: Night EP\n",
    "playlist: [Night EP, Best of 2026]\n",
    "playlist:\n  - Night EP\n",
    "release_at: 2026-12-01T18:00:00\n",
    "release_at: 2026-12-01T18:00\n",
    "release_at: 2026-12-01 18:00:00\n",
    "release_at: 2026-12-01T18:00:00+02:00\n",
    "release_at: 2026-12-01T18:00:00.5-03:30\n",
    "release_at: 2026-12-01T18:00:00Z\n",
    "release_date: 2026-12-01\n",
    "preview: {start: auto, length: 30}\n",
    "preview: {start: 12.5}\n",
    "tags: [techno, late night]\nbpm: 124\nkey: Am\n",
    "sharing: private\nupload: preview\nlicense: cc-by-nc\nquiet: true\n",
    "",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_schema_accepts_sidecars_the_loader_accepts(write, text: str) -> None:  # type: ignore[no-untyped-def]
    path = write("Good.yaml", text)
    load_sidecar(path, watch_root=path.parent)
    data, _ = parse_yaml(text, path)
    errors = [e.message for e in _schema_validator().iter_errors(data or {})]
    assert errors == [], errors


def test_schema_accepts_every_field_of_the_example_sidecar() -> None:
    example = REPO / "config" / "sidecar.example.yaml"
    load_sidecar(example, watch_root=example.parent)
    data, _ = parse_yaml(example.read_text(encoding="utf-8"), example)
    assert set(data) == set(Sidecar.model_fields)
    errors = [f"{list(e.path)}: {e.message}" for e in _schema_validator().iter_errors(data)]
    assert errors == [], errors


REJECTED = [
    "playlist: ''\n",
    "playlist: ['']\n",
    "playlist: [Night EP, 3]\n",
    "playlist: {name: Night EP}\n",
    "release_at: next friday\n",
    "release_at: 2026-12-01\n",
    "release_at: 2026-13-01T10:00:00\n",
    "release_at: 2026-12-01T25:00\n",
    "release_date: someday\n",
    "sharing: unlisted\n",
    "bpm: fast\n",
    "bpm: -120\n",
    "titel: Night Drive\n",
    "tags: techno house\n",
    "title: ''\n",
    "preview: {start: -4}\n",
    "preview: {lenght: 20}\n",
    "permalink: Night Drive!\n",
    "upload: half\n",
    "license: cc-0\n",
]


@pytest.mark.parametrize("text", REJECTED)
def test_schema_rejects_sidecars_the_loader_rejects(write, text: str) -> None:  # type: ignore[no-untyped-def]
    path = write("Bad.yaml", text)
    with pytest.raises(FileProblems):
        load_sidecar(path, watch_root=path.parent)
    data, _ = parse_yaml(text, path)
    assert list(_schema_validator().iter_errors(data)), f"the schema accepts {text!r}"
