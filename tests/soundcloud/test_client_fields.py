"""What an upload says: tag_list quoting, the machine tag, form fields, the asset's filename."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from releaseosd.soundcloud.client import TRACK_UPDATE_FIELDS, TrackFields, asset_filename
from releaseosd.soundcloud.tags import (
    format_tag_list,
    has_machine_tag,
    machine_tag,
    parse_tag_list,
)

SHA = "ab12" * 16
SPEC = Path(__file__).resolve().parents[3] / "shared" / "soundcloud" / "openapi.yaml"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["techno", "late night", "Techno"], 'techno "late night"'),
        (["  deep   house "], '"deep house"'),
        (['quo"ted', "“curly”"], "quoted curly"),
        (["", "  "], ""),
    ],
)
def test_tag_list_quoting(tags: list[str], expected: str) -> None:
    assert format_tag_list(tags) == expected


def test_machine_tag_goes_last_and_round_trips() -> None:
    text = format_tag_list(["late night", "techno"], machine_tag(SHA))
    assert text == f'"late night" techno releaseosd:sha256={SHA[:16]}'
    assert parse_tag_list(text) == ["late night", "techno", f"releaseosd:sha256={SHA[:16]}"]
    assert has_machine_tag(text, SHA.upper())
    assert not has_machine_tag(text, "cd" * 32)
    assert not has_machine_tag(None, SHA)


def test_parse_accepts_the_specs_typographic_quotes() -> None:
    assert parse_tag_list("geo:lat=43.555 “machine:tag=with space”") == [
        "geo:lat=43.555",
        "machine:tag=with space",
    ]


@pytest.mark.parametrize("bad", ["", "xyz", "ab12ab12ab12ab1"])
def test_machine_tag_rejects_non_digests(bad: str) -> None:
    with pytest.raises(ValueError):
        machine_tag(bad)


def full_fields(**changes: object) -> TrackFields:
    values: dict[str, object] = {
        "title": "Night Drive",
        "description": "Created with Release OS\nBPM: 124",
        "genre": "Techno",
        "tags": ("techno", "late night"),
        "sharing": "private",
        "release_date": dt.date(2026, 12, 1),
        "label_name": "Night Label",
        "release": "Night EP",
        "isrc": "GBABC2600001",
        "license": "cc-by",
        "downloadable": False,
        "streamable": True,
        "commentable": False,
        "quiet": True,
        "permalink": "night-drive",
    }
    values.update(changes)
    return TrackFields(**values)  # type: ignore[arg-type]


def test_to_form_sends_every_field_in_soundclouds_terms() -> None:
    form = dict(full_fields().to_form(SHA))
    assert form == {
        "track[title]": "Night Drive",
        "track[sharing]": "private",
        "track[description]": "Created with Release OS\nBPM: 124",
        "track[genre]": "Techno",
        "track[label_name]": "Night Label",
        "track[release]": "Night EP",
        "track[isrc]": "GBABC2600001",
        "track[license]": "cc-by",
        "track[permalink]": "night-drive",
        "track[release_date]": "2026-12-01",
        "track[tag_list]": f'techno "late night" releaseosd:sha256={SHA[:16]}',
        "track[downloadable]": "false",
        "track[streamable]": "true",
        "track[commentable]": "false",
        "track[reveal_stats]": "false",
        "track[reveal_comments]": "false",
    }


def test_every_form_field_is_in_the_upload_schema() -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    allowed = set(spec["components"]["schemas"]["TrackDataRequest"]["properties"])
    names = {name for name, _ in full_fields().to_form(SHA)}
    assert names <= allowed
    assert not any("bpm" in name or "key_signature" in name for name in names)
    metadata = spec["components"]["schemas"]["TrackMetadataRequest"]["properties"]["track"]
    assert set(metadata["properties"]) == TRACK_UPDATE_FIELDS


def test_unset_fields_are_left_out() -> None:
    form = dict(TrackFields(title="Sketch").to_form())
    assert form == {"track[title]": "Sketch", "track[sharing]": "private"}


def test_not_quiet_reveals_stats_and_comments() -> None:
    meta = full_fields(quiet=False).metadata()
    assert meta["reveal_stats"] is True and meta["reveal_comments"] is True


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Night Drive.wav", "Night-Drive.wav"),
        ("Ñoño — Ümlaut (final v3).WAV", "Nono-Umlaut-final-v3.wav"),
        ("夜のドライブ.flac", "track.flac"),
        ("x" * 400 + ".aiff", "x" * 80 + ".aiff"),
        ("no-extension", "no-extension"),
    ],
)
def test_asset_filename_is_short_ascii_with_the_extension(name: str, expected: str) -> None:
    result = asset_filename(Path("/exports") / name)
    assert result == expected
    assert result.isascii() and len(result) <= 255
