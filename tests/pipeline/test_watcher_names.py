"""Which names are exports, sidecars, or noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from releaseosd.media.formats import is_audio
from releaseosd.pipeline.watch import is_ignored, is_sidecar

ROOT = Path("/music/exports")


@pytest.mark.parametrize(
    "name",
    ["a.wav", "a.WAV", "a.wave", "a.aif", "a.AIFF", "a.flac", "a.mp3", "a.ogg", "a.oga", "a.m4a",
     "a.aac", "Night Drive (master).Wav"],
)  # fmt: skip
def test_audio_names(name: str) -> None:
    assert is_audio(ROOT / name)
    assert not is_sidecar(ROOT / name)
    assert not is_ignored(ROOT / name, ROOT)


@pytest.mark.parametrize("name", ["a.yaml", "a.YML", "release.yaml", "release.yml"])
def test_sidecar_names(name: str) -> None:
    assert is_sidecar(ROOT / name)
    assert not is_audio(ROOT / name)
    assert not is_ignored(ROOT / name, ROOT)


@pytest.mark.parametrize("name", ["a.txt", "a.als", "a.rpp", "a.mid", "a.wav.zip", "wav"])
def test_other_names_are_neither(name: str) -> None:
    assert not is_audio(ROOT / name)
    assert not is_sidecar(ROOT / name)


@pytest.mark.parametrize(
    "name",
    ["a.wav.part", "a.WAV.PART", "a.wav.tmp", "a.mp3.crdownload", "~a.wav", "~$a.yaml", ".a.wav",
     ".DS_Store", "._a.wav", "a.wav.asd", "a.wav.reapeaks", "a.pkf", "a.wav.peak", "a.wav.bak",
     "a.yaml.bak", "a.sfk", "a.gpk", "a.wav.ovw", ".a.yaml.swp"],
)  # fmt: skip
def test_ignored_names(name: str) -> None:
    assert is_ignored(ROOT / name)
    assert is_ignored(ROOT / name, ROOT)


@pytest.mark.parametrize(
    "rel",
    [".hidden/a.wav", "sub/.cache/a.wav", "@eaDir/a.wav", "__MACOSX/x/a.wav", "#recycle/a.wav"],
)
def test_files_in_hidden_or_system_folders_are_ignored(rel: str) -> None:
    assert is_ignored(ROOT / rel, ROOT)


def test_a_hidden_watch_root_itself_is_fine() -> None:
    root = Path("/home/me/.exports")
    assert not is_ignored(root / "sub" / "a.wav", root)
    assert is_ignored(root / ".sub" / "a.wav", root)
