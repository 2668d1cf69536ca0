"""Deliberate alterations of an avatar, as spam operators make them.

One function per variation family, all on ``PIL.Image`` in RGB, all driven
by an explicit ``numpy.random.Generator`` so every demo, training pair and
evaluation suite is reproducible from a seed.

Seed families (the design's): ``rotation`` (up to +-10 degrees), ``shift_h``
and ``shift_w`` (up to 10% of the side), ``channel_scale`` (each channel
times 0.9..1.1) and ``combined`` (all four). Extra families: ``jpeg``
(quality 30..90), ``rescale`` (0.5..2x), ``crop`` (up to 10%), ``border``,
``blur``, ``text``, ``hflip``, ``greyscale``.

Example
-------
>>> import numpy as np
>>> from PIL import Image
>>> img = Image.new("RGB", (128, 128), "red")
>>> vary(img, "rotation", np.random.default_rng(0)).size
(128, 128)
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

FILL = (255, 255, 255)
"""Colour of the area uncovered by a rotation or shift (white, as alpha is composited)."""

MAX_ROTATION_DEG = 10.0
MAX_SHIFT_FRACTION = 0.10
CHANNEL_SCALE_RANGE = (0.9, 1.1)


def rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    return img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=FILL)


def _shift(img: Image.Image, dx: int, dy: int) -> Image.Image:
    # Affine maps output (x, y) to input (x - dx, y - dy): content moves by (+dx, +dy).
    return img.transform(
        img.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy),
        resample=Image.Resampling.NEAREST, fillcolor=FILL,
    )


def _shift_amount(side: int, rng: np.random.Generator) -> int:
    limit = max(1, int(round(side * MAX_SHIFT_FRACTION)))
    amount = 0
    while amount == 0:
        amount = int(rng.integers(-limit, limit + 1))
    return amount


def shift_h(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shift in height (vertical), up to 10% of the image height."""
    return _shift(img, 0, _shift_amount(img.height, rng))


def shift_w(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shift in width (horizontal), up to 10% of the image width."""
    return _shift(img, _shift_amount(img.width, rng), 0)


def channel_scale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    scale = rng.uniform(*CHANNEL_SCALE_RANGE, size=3)
    arr = np.asarray(img, dtype=np.float32) * scale
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def combined(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """All four seed variations at once: rotation, shift in both axes, channel scaling."""
    img = rotate(img, rng)
    img = _shift(img, _shift_amount(img.width, rng), _shift_amount(img.height, rng))
    return channel_scale(img, rng)


def jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    quality = int(rng.integers(30, 91))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def rescale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    size = (max(8, round(img.width * factor)), max(8, round(img.height * factor)))
    return img.resize(size, Image.Resampling.BICUBIC)


def crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    fx, fy = rng.uniform(0.90, 0.99, size=2)
    cw, ch = max(1, int(w * fx)), max(1, int(h * fy))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def border(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    width = max(1, int(min(img.size) * rng.uniform(0.03, 0.08)))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    return ImageOps.expand(img, border=width, fill=colour)


def blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5))))


def text(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    label = "".join(letters[int(i)] for i in rng.integers(0, len(letters), size=int(rng.integers(3, 8))))
    x = int(rng.integers(0, max(1, img.width // 2)))
    y = int(rng.integers(0, max(1, img.height - 12)))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    draw.text((x, y), label, fill=colour)
    return out


def hflip(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(img)


def greyscale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.grayscale(img).convert("RGB")


Variation = Callable[[Image.Image, np.random.Generator], Image.Image]

SEED_FAMILIES: dict[str, Variation] = {
    "rotation": rotate,
    "shift_h": shift_h,
    "shift_w": shift_w,
    "channel_scale": channel_scale,
    "combined": combined,
}
EXTRA_FAMILIES: dict[str, Variation] = {
    "jpeg": jpeg,
    "rescale": rescale,
    "crop": crop,
    "border": border,
    "blur": blur,
    "text": text,
    "hflip": hflip,
    "greyscale": greyscale,
}
FAMILIES: dict[str, Variation] = {**SEED_FAMILIES, **EXTRA_FAMILIES}


def vary(img: Image.Image, family: str, rng: np.random.Generator) -> Image.Image:
    """Apply one variation family to an RGB image.

    Raises
    ------
    ValueError
        If ``family`` is not one of :data:`FAMILIES`.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown variation family {family!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[family](img.convert("RGB"), rng)


def encode(img: Image.Image, fmt: str = "PNG", quality: int = 90) -> bytes:
    """Serialise an image to bytes (``PNG`` or ``JPEG``)."""
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()
