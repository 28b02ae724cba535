"""Waveform artwork and the checks on artwork a producer supplies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from releaseosd.media.artwork import ArtworkProblem, check_artwork, render_waveform
from releaseosd.media.waveform import WaveformScan
from releaseosd.model.config import ArtworkConfig

# a quiet start, a loud middle and a fade: easy to see where bars must be tall
PEAKS = tuple([0.1] * 40 + [1.0] * 40 + [i / 40 for i in range(40, 0, -1)])
SCAN = WaveformScan(peaks=PEAKS, loudest_start=40.0, duration=120.0)


def _rgb(hex_colour: str) -> npt.NDArray[np.int16]:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)


def _pixels(path: Path) -> npt.NDArray[np.int16]:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _near(pixels: npt.NDArray[np.int16], colour: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    close: npt.NDArray[np.bool_] = (np.abs(pixels - colour) <= 40).all(axis=-1)
    return close


def _column_coverage(pixels: npt.NDArray[np.int16], x: int, colour: npt.NDArray[np.int16]) -> float:
    """Share of a pixel column within ±40 levels of `colour`."""
    return float(_near(pixels[:, x], colour).mean())


def _bar_centre(cfg: ArtworkConfig, index: int) -> int:
    pad = round(cfg.size * 0.08)
    slot = (cfg.size - 2 * pad) / cfg.bars
    return round(pad + slot * (index + 0.5))


@pytest.mark.parametrize("style", ["bars", "mirror", "line"])
@pytest.mark.parametrize("size", [800, 1400])
def test_every_style_draws_a_square_waveform(tmp_path: Path, style: str, size: int) -> None:
    cfg = ArtworkConfig(size=size, style=style, bars=len(PEAKS))
    out = render_waveform(SCAN, cfg, tmp_path / "art.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (size, size)
    rgb = _pixels(out)
    background, foreground = _rgb(cfg.background), _rgb(cfg.foreground)
    assert rgb[2, 2].tolist() == background.tolist()
    loud = _column_coverage(rgb, _bar_centre(cfg, 60), foreground)
    quiet = _column_coverage(rgb, _bar_centre(cfg, 20), foreground)
    gap = _column_coverage(rgb, 1, foreground)
    assert gap == 0.0
    if style == "line":  # the outline crosses each column twice; the fill is a faint tint
        assert loud > 0 and quiet > 0
    else:
        assert loud > 0.6, loud  # a full-height bar spans the drawing area (84% of the image)
        assert 0 < quiet < 0.2, quiet
    if style == "mirror":
        assert _near(rgb[size // 2, _bar_centre(cfg, 20)], foreground)


def test_colours_title_and_no_leftover_temp_files(tmp_path: Path) -> None:
    cfg = ArtworkConfig(background="#ffffff", foreground="#0000ff", bars=120)
    out = render_waveform(SCAN, cfg, tmp_path / "sub" / "art.png", title="Night Drive " * 12)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["art.png"]
    rgb = _pixels(out)
    pad = round(1400 * 0.08)
    title_band = rgb[pad : pad + 98, pad : 1400 - pad]
    assert _near(title_band, _rgb("#0000ff")).sum() > 1000  # blue text drawn in the band
    assert rgb[1399, 1399].tolist() == [255, 255, 255]


def test_translucent_colours_make_an_rgba_png(tmp_path: Path) -> None:
    cfg = ArtworkConfig(background="#00000000", foreground="#ff5500cc")
    with Image.open(render_waveform(SCAN, cfg, tmp_path / "a.png")) as image:
        assert image.mode == "RGBA"
        assert image.getpixel((0, 0)) == (0, 0, 0, 0)


# --- supplied artwork ----------------------------------------------------------------------


def _image(path: Path, size: tuple[int, int], fmt: str) -> Path:
    Image.new("RGB", size, (200, 30, 30)).save(path, format=fmt)
    return path


def test_good_artwork_passes_and_mere_recommendations_only_warn(tmp_path: Path) -> None:
    assert check_artwork(_image(tmp_path / "a.png", (1000, 1000), "PNG")) == []
    assert check_artwork(_image(tmp_path / "a.jpg", (800, 800), "JPEG")) == []
    notes = check_artwork(_image(tmp_path / "wide.jpg", (1600, 900), "JPEG"))
    assert notes == ["wide.jpg: artwork is 1600×900, not square; SoundCloud crops it"]
    (small,) = check_artwork(_image(tmp_path / "small.gif", (300, 300), "GIF"))
    assert "recommends at least 800×800" in small


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b""), "the artwork file is empty"),
        (lambda p: p.write_text("not an image\n"), "not a readable PNG, JPEG or GIF image"),
        (lambda p: _image(p, (64, 64), "PNG"), "only 64×64 pixels"),
        (lambda p: _image(p, (900, 900), "WEBP"), "artwork is a WEBP image"),
        (lambda p: _image(p, (300, 300), "BMP"), "artwork is a BMP image"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3), "not a readable"),
    ],
)
def test_bad_artwork_is_refused(
    tmp_path: Path, make: Callable[[Path], object], fragment: str
) -> None:
    path = tmp_path / "Cover.png"
    make(path)
    with pytest.raises(ArtworkProblem) as caught:
        check_artwork(path)
    assert str(caught.value).startswith("Cover.png: ")
    assert fragment in str(caught.value)


def test_cut_off_and_oversized_artwork_is_refused(tmp_path: Path) -> None:
    import os

    full = _image(tmp_path / "full.jpg", (1200, 1200), "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ArtworkProblem, match=r"cut\.jpg: not a readable"):
        check_artwork(cut)
    noisy = tmp_path / "huge.png"
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(noisy)  # incompressible
    with pytest.raises(
        ArtworkProblem, match=r"huge.png: artwork is 2\.\d MB; SoundCloud takes up to 2 MB"
    ):
        check_artwork(noisy)
    with pytest.raises(ArtworkProblem, match="artwork not found"):
        check_artwork(tmp_path / "missing.png")
