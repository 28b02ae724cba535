from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from releaseosd.model.sidecar import (
    MAX_SIDECAR_BYTES,
    Sidecar,
    check_sidecar_file,
    json_schema_text,
    load_sidecar,
)
from releaseosd.model.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]

BAD_SIDECARS = [
    ("title: Night Drive\ntitel: x\n", 2, "titel", "did you mean 'title'"),
    ("title: ''\n", 1, "title", "must not be empty"),
    ("title: " + "x" * 101 + "\n", 1, "title", "too long"),
    ("bpm: fast\n", 1, "bpm", "number"),
    ("bpm: -120\n", 1, "bpm", "must be > 0"),
    ("bpm: true\n", 1, "bpm", "must be a number"),
    ("key: H minor\n", 1, "key", "not a musical key"),
    ("isrc: NOPE\n", 1, "isrc", "not an ISRC"),
    ("sharing: unlisted\n", 1, "sharing", "'public' or 'private'"),
    ("upload: half\n", 1, "upload", "'full' or 'preview'"),
    ("license: cc-0\n", 1, "license", "must be one of"),
    ("licence: cc-by\n", 1, "licence", "did you mean 'license'"),
    ("tags: techno house\n", 1, "tags", "must be a list"),
    ("tags:\n  - techno\n  - ''\n", 3, "tags[1]", "must not be empty"),
    ('tags:\n  - say "hi"\n', 1, "tags", "double quotes"),
    ("release_at: 2026-12-01\n", 1, "release_at", "needs a time"),
    ("release_at: next friday\n", 1, "release_at", "datetime"),
    ("release_at: 12\n", 1, "release_at", "not a number"),
    ("release_date: someday\n", 1, "release_date", "date"),
    ("preview:\n  start: -4\n", 2, "preview.start", "≥ 0"),
    ("preview:\n  lenght: 20\n", 2, "preview.lenght", "did you mean 'length'"),
    ("preview:\n  length: 0\n", 2, "preview.length", "must be > 0"),
    ("preview: 30\n", 1, "preview", "PreviewSpec"),
    ("permalink: Night Drive!\n", 1, "permalink", "does not look right"),
    ("downloadable: perhaps\n", 1, "downloadable", "bool"),
    ("quiet: 2\n", 1, "quiet", "bool"),
    ("playlist:\n  - ''\n", 2, "playlist[0]", "must not be empty"),
    ("artwork: cover.png\n", 1, "artwork", "not found"),
    ("artwork: cover.bmp\n", 1, "artwork", "PNG or JPEG"),
    ("genre: " + "g" * 101 + "\n", 1, "genre", "too long"),
    ("description: [a, b]\n", 1, "description", "string"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), BAD_SIDECARS)
def test_bad_sidecar_names_file_line_and_key(write, text, line, key, fragment):  # type: ignore[no-untyped-def]
    path = write("Night Drive.yaml", text)
    with pytest.raises(FileProblems) as info:
        load_sidecar(path, watch_root=path.parent)
    rendered = str(info.value)
    assert f"{path}:{line}: {key}: " in rendered, rendered
    assert fragment in rendered, rendered


def test_good_sidecar(write) -> None:  # type: ignore[no-untyped-def]
    write("cover.png", b"\x89PNG\r\n\x1a\n")
    path = write(
        "Night Drive.yaml",
        """
title: Night Drive
artist: Nova
genre: Techno
tags: [techno, "late night"]
bpm: 124
key: F# minor
isrc: GB-ABC-26-00001
release_at: 2026-12-01T18:00:00
sharing: public
playlist: Night Works
artwork: cover.png
quiet: true
license: cc-by-nc
permalink: night-drive
""",
    )
    sidecar = load_sidecar(path, watch_root=path.parent)
    assert sidecar.title == "Night Drive"
    assert sidecar.tags == ["techno", "late night"]
    assert sidecar.isrc == "GBABC2600001"
    assert sidecar.playlist == ["Night Works"]
    assert sidecar.release_at is not None and sidecar.release_at.tzinfo is not None
    # Without an offset the time is the producer's local wall-clock time.
    assert sidecar.release_at.replace(tzinfo=None) == dt.datetime(2026, 12, 1, 18, 0)
    assert sidecar.release_date == dt.date(2026, 12, 1)
    assert sidecar.artwork == (path.parent / "cover.png").resolve()


def test_release_at_with_offset_is_kept(write) -> None:  # type: ignore[no-untyped-def]
    path = write("a.yaml", "release_at: '2026-12-01T18:00:00+09:00'\n")
    sidecar = load_sidecar(path)
    assert sidecar.release_at is not None
    assert sidecar.release_at.utcoffset() == dt.timedelta(hours=9)


def test_folder_defaults_are_overridden_by_the_track(write) -> None:  # type: ignore[no-untyped-def]
    defaults = write("release.yaml", "genre: House\nrelease: Night Works EP\nsharing: public\n")
    path = write("a.yaml", "genre: Techno\n")
    sidecar = load_sidecar(path, folder_defaults=defaults)
    assert sidecar.genre == "Techno"
    assert sidecar.release == "Night Works EP"
    assert sidecar.sharing == "public"


def test_problems_in_both_files_name_their_own_file(write) -> None:  # type: ignore[no-untyped-def]
    defaults = write("release.yaml", "genre: House\nsharing: nobody\n")
    path = write("a.yaml", "bpm: x\n")
    with pytest.raises(FileProblems) as info:
        load_sidecar(path, folder_defaults=defaults)
    rendered = str(info.value)
    assert f"{defaults}:2: sharing:" in rendered
    assert f"{path}:1: bpm:" in rendered


def test_oversized_sidecar_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write("big.yaml", "description: " + "x" * MAX_SIDECAR_BYTES + "\n")
    with pytest.raises(FileProblems, match="larger than 64 KiB"):
        load_sidecar(path)


def test_yaml_cannot_construct_objects(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "pwned"
    path = write("evil.yaml", f"title: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(FileProblems, match="not valid YAML"):
        load_sidecar(path)
    assert not marker.exists()


def test_artwork_symlink_outside_the_watched_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"\x89PNG")
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "cover.png").symlink_to(outside / "secret.png")
    path = watched / "a.yaml"
    path.write_text("artwork: cover.png\n")
    with pytest.raises(FileProblems) as info:
        load_sidecar(path, watch_root=watched)
    assert f"{path}:1: artwork:" in str(info.value)
    assert "outside the watched folder" in str(info.value)
    path.write_text("artwork: ../outside/secret.png\n")
    with pytest.raises(FileProblems, match="outside the watched folder"):
        load_sidecar(path, watch_root=watched)


def test_not_utf8_and_not_a_mapping(write) -> None:  # type: ignore[no-untyped-def]
    path = write("a.yaml", b"title: \xff\xfe\n")
    with pytest.raises(FileProblems, match="not UTF-8"):
        load_sidecar(path)
    path = write("b.yaml", "just a sentence\n")
    with pytest.raises(FileProblems, match="must be a mapping"):
        load_sidecar(path)


def test_empty_sidecar_is_fine(write) -> None:  # type: ignore[no-untyped-def]
    assert load_sidecar(write("a.yaml", "")) == Sidecar()


def test_check_sidecar_file_uses_folder_defaults(write) -> None:  # type: ignore[no-untyped-def]
    write("release.yaml", "sharing: nope\n")
    path = write("a.yaml", "title: A\n")
    with pytest.raises(FileProblems, match=r"release\.yaml:1: sharing"):
        check_sidecar_file(path)


def test_json_schema_has_not_drifted() -> None:
    committed = (REPO / "config" / "sidecar.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), (
        "config/sidecar.schema.json is out of date: run `python -m releaseosd.model.reference`"
    )


def test_example_sidecar_is_valid_and_shows_every_field() -> None:
    example = REPO / "config" / "sidecar.example.yaml"
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert set(data) == set(Sidecar.model_fields)
    load_sidecar(example, watch_root=example.parent)


def test_schema_accepts_what_the_model_accepts() -> None:
    schema = json.loads(json_schema_text())
    assert set(schema["properties"]) == set(Sidecar.model_fields)
    assert schema["additionalProperties"] is False


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from([*Sidecar.model_fields, "titel", "x", ""])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.dictionaries(field_names, yaml_values, max_size=6))
def test_no_structured_input_crashes_the_loader(tmp_path: Path, data: dict[str, object]) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        load_sidecar(path, watch_root=tmp_path)
    except FileProblems as exc:
        assert all(str(path) in str(p) for p in exc.problems)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=300)
    | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_no_bytes_crash_the_loader(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "h.yaml"
    path.write_bytes(raw)
    try:
        load_sidecar(path, watch_root=tmp_path)
    except FileProblems as exc:
        assert exc.problems and all(p.file == path for p in exc.problems)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.text(max_size=200))
def test_no_text_crashes_the_config_loader(tmp_path: Path, raw: str) -> None:
    from releaseosd.model.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text(raw, encoding="utf-8", errors="surrogatepass") if "\ud800" not in raw else None
    if not path.exists():
        return
    try:
        load_config(path)
    except FileProblems as exc:
        assert all(p.file == path for p in exc.problems)
    os.unlink(path)
