"""Track artwork: a waveform picture drawn from a scan, and checks on artwork a producer supplies."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw, ImageFont

from releaseosd.media.waveform import WaveformScan
from releaseosd.model.config import ArtworkConfig

# SoundCloud's API takes track[artwork_data] as GIF, JPEG or PNG (openapi.yaml); its help pages
# accept images "up to 2 MB" and recommend at least 800×800, square.
ARTWORK_FORMATS = ("PNG", "JPEG", "GIF")
ARTWORK_MAX_BYTES = 2 * 1024 * 1024
ARTWORK_MIN_EDGE = 100
ARTWORK_RECOMMENDED_EDGE = 800
_MAX_PIXELS = 10_000 * 10_000

_PADDING = 0.08  # of the edge, on every side
_BAR_FILL = 0.62  # of each bar's slot; the rest is the gap
_TITLE_SHARE = 0.07  # title cap height, of the edge

# Pillow loads its format plugins on the first open or save (~20 ms, most of a render): pay that
# once when the daemon imports this module, not inside the first track's build.
Image.preinit()


class ArtworkProblem(Exception):
    """Supplied artwork that cannot be used; the message names the file and the fix."""


def _supersample(size: int) -> int:
    # Pillow draws without anti-aliasing: draw large and shrink, while the mask stays ≤ ~9 MP.
    return max(1, min(3, 3000 // size))


def _draw_mask(
    peaks: tuple[float, ...], style: str, edge: int, box: tuple[int, int, int, int]
) -> Image.Image:
    """A greyscale mask, `edge` pixels square, of the waveform inside `box` (l, t, r, b)."""
    left, top, right, bottom = box
    canvas = Image.new("L", (edge, edge), 0)
    draw = ImageDraw.Draw(canvas)
    width, height = right - left, bottom - top
    slot = width / len(peaks)
    bar = max(1.0, slot * _BAR_FILL)
    radius = bar / 2
    centre = top + height / 2
    if style == "line":
        half = height / 2
        xs = [left + slot * (i + 0.5) for i in range(len(peaks))]
        upper = [(x, centre - max(p, 0.01) * half) for x, p in zip(xs, peaks, strict=True)]
        lower = [(x, centre + max(p, 0.01) * half) for x, p in zip(xs, peaks, strict=True)]
        draw.polygon(upper + lower[::-1], fill=80)
        line = max(2, round(slot * 0.35))
        draw.line(upper, fill=255, width=line, joint="curve")
        draw.line(lower, fill=255, width=line, joint="curve")
        return canvas
    for i, peak in enumerate(peaks):
        x0 = left + slot * i + (slot - bar) / 2
        if style == "mirror":
            half = max(peak * height / 2, radius)
            y0, y1 = centre - half, centre + half
        else:
            y1 = bottom
            y0 = bottom - max(peak * height, bar)
        if bar >= 4:
            draw.rounded_rectangle((x0, y0, x0 + bar, y1), radius=radius, fill=255)
        else:
            draw.rectangle((x0, y0, x0 + bar, y1), fill=255)
    return canvas


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):
        return ImageFont.load_default()


def _fit_title(draw: ImageDraw.ImageDraw, title: str, size: int, width: int) -> tuple[str, int]:
    """The title (shortened with … if need be) and a font size that fits `width`."""
    font_size = size
    while font_size > size // 2 and draw.textlength(title, font=_font(font_size)) > width:
        font_size = int(font_size * 0.9)
    text = title
    while text and draw.textlength(text, font=_font(font_size)) > width:
        text = text[:-2] + "…"
    return text, font_size


def _write_atomically(image: Image.Image, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            # Flat colour compresses nearly as well at level 3 as at 6, in a third of the time.
            image.save(f, format="PNG", compress_level=3)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _palette(background: tuple[int, ...], foreground: tuple[int, ...]) -> list[int]:
    """256 colours from background (0) to foreground (255): mask level i becomes colour i."""
    return [
        round(bg + (fg - bg) * level / 255)
        for level in range(256)
        for bg, fg in zip(background[:3], foreground[:3], strict=True)
    ]


def render_waveform(
    scan: WaveformScan, cfg: ArtworkConfig, out: Path, title: str | None = None
) -> Path:
    """Draw the scan's peaks as a square PNG of cfg.size pixels, in cfg.style; returns `out`.

    Styles: "bars" rise from a common baseline, "mirror" bars are symmetric about the middle,
    "line" traces the envelope above and below the middle over a faint fill.
    """
    peaks = scan.peaks or (0.0,)
    background = ImageColor.getrgb(cfg.background)
    foreground = ImageColor.getrgb(cfg.foreground)
    size = cfg.size
    pad = round(size * _PADDING)
    title_height = round(size * _TITLE_SHARE) if title else 0
    scale = _supersample(size)

    top = pad + (title_height + pad // 2 if title else 0)
    box = (pad * scale, top * scale, (size - pad) * scale, (size - pad) * scale)
    mask = _draw_mask(peaks, cfg.style, size * scale, box)
    if scale > 1:
        mask = mask.reduce(scale)  # box filter: each pixel the mean of scale×scale samples
    if title:
        draw = ImageDraw.Draw(mask)
        text, font_size = _fit_title(draw, title, title_height, size - 2 * pad)
        draw.text((pad, pad), text, font=_font(font_size), fill=255)

    if len(background) == 4 or len(foreground) == 4:
        image = Image.new("RGBA", (size, size), _rgba(background))
        image.paste(_rgba(foreground), (0, 0), mask)
    else:
        # Two colours and their blends fit a palette: a third of the bytes of RGB to compress,
        # which is most of the time spent here. putpalette turns the L mask into P in place.
        image = mask
        image.putpalette(_palette(background, foreground))
    _write_atomically(image, out)
    return out


def _rgba(colour: tuple[int, ...]) -> tuple[int, ...]:
    return colour if len(colour) == 4 else (*colour, 255)


def check_artwork(path: Path) -> list[str]:
    """Check artwork a sidecar names before it is sent as track[artwork_data].

    Fails (ArtworkProblem) unless the file really is a PNG, JPEG or GIF that decodes completely,
    is at most 2 MB (2 097 152 bytes) and at least 100×100 pixels. Returns warnings, not failures,
    for what SoundCloud only recommends: at least 800×800 and square (it crops to a square).
    """
    name = path.name
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ArtworkProblem(f"{name}: artwork not found at {path}") from exc
    if size == 0:
        raise ArtworkProblem(f"{name}: the artwork file is empty (0 bytes)")
    if size > ARTWORK_MAX_BYTES:
        raise ArtworkProblem(
            f"{name}: artwork is {size / 1024**2:.1f} MB; SoundCloud takes up to 2 MB: "
            "save it smaller (e.g. a 1400×1400 JPEG)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                kind = image.format
                dims = image.size
                if kind not in ARTWORK_FORMATS:
                    raise ArtworkProblem(
                        f"{name}: artwork is a {kind} image; SoundCloud takes PNG, JPEG or GIF"
                    )
                if dims[0] * dims[1] > _MAX_PIXELS:
                    raise ArtworkProblem(f"{name}: artwork is {dims[0]}×{dims[1]}, far too large")
                image.verify()
            with Image.open(path) as image:
                image.load()  # verify() skips pixel data; a cut-off JPEG only fails here
    except ArtworkProblem:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Warning) as exc:
        raise ArtworkProblem(
            f"{name}: not a readable PNG, JPEG or GIF image ({exc}); re-export the artwork"
        ) from exc
    width, height = dims
    if min(width, height) < ARTWORK_MIN_EDGE:
        raise ArtworkProblem(
            f"{name}: artwork is only {width}×{height} pixels; use at least "
            f"{ARTWORK_RECOMMENDED_EDGE}×{ARTWORK_RECOMMENDED_EDGE}"
        )
    notes = []
    if min(width, height) < ARTWORK_RECOMMENDED_EDGE:
        notes.append(
            f"{name}: artwork is {width}×{height}; SoundCloud recommends at least "
            f"{ARTWORK_RECOMMENDED_EDGE}×{ARTWORK_RECOMMENDED_EDGE}"
        )
    if width != height:
        notes.append(f"{name}: artwork is {width}×{height}, not square; SoundCloud crops it")
    return notes
