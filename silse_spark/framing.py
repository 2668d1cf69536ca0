"""Content framing: crop every avatar to a square around its drawing before it is resized for the model.

Shifts, crops, rescales and padding move or resize the drawing inside the
file without changing the drawing. A model that sees the whole frame must
learn to ignore that; framing removes most of it before the model runs. The
frame is found from the image's own content:

1. background = per-channel median of the outermost ring of pixels;
2. each pixel's content weight = how far its colour is from the background
   (largest channel difference, ramped from 0 at ``LOW`` to 1 at ``HIGH``,
   so antialiased edges and JPEG noise count little and smoothly);
3. the frame is the square centred on the weighted centroid whose side is
   ``SIDE_PER_RADIUS`` times the weighted radius of gyration (rotation-
   invariant, and moments move little under blur, noise or recompression),
   clamped to ``[MIN_SIDE, MAX_SIDE]`` times the image's longer side.

Images with almost no content (fewer than ``MIN_CONTENT`` of the pixels) are
not framed: the whole image is used. Parts of the frame outside the image are
filled with the background colour. Moments are computed on a copy of at most
``THUMBNAIL`` pixels a side, so the cost does not grow with the upload's size
(about 0.2 ms per avatar).

Which models use framing is part of each model version (``framing`` in
``silse_spark/models/registry.json``): the same version always sees the same
pixels, in training, evaluation and the Spark job.

Example
-------
>>> from PIL import Image, ImageDraw
>>> img = Image.new("RGB", (128, 128), "white")
>>> ImageDraw.Draw(img).ellipse((20, 30, 60, 70), fill="navy")
>>> moved = Image.new("RGB", (128, 128), "white")
>>> ImageDraw.Draw(moved).ellipse((50, 40, 90, 80), fill="navy")
>>> a, b = content_box(img), content_box(moved)
>>> round(b[0] - a[0], 3), round(b[1] - a[1], 3), round(b[2] - a[2], 3)   # moved by (30, 10), same size
(30.0, 10.0, 30.0)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

FRAMINGS = ("none", "moments")
"""Known framing methods: ``none`` (the whole image) and ``moments`` (this module)."""

LOW, HIGH = 40.0, 88.0
"""Colour distance from the background (0..255, largest channel) at which a pixel starts / fully counts."""

SIDE_PER_RADIUS = 2.5
"""Frame side / weighted radius of gyration (a filled disc of radius r: 2.5 x r / sqrt(2) = 1.77 r)."""

MIN_SIDE, MAX_SIDE = 0.25, 2.0
"""Frame side limits, as fractions of the image's longer side."""

MIN_CONTENT = 0.005
"""Below this share of fully weighted pixels the image is used whole."""

THUMBNAIL = 128
"""Moments are computed on a copy at most this many pixels a side."""


def background_colour(pixels: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost ring of an ``(h, w, 3)`` array."""
    ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(ring, axis=0)


def content_box(img: Image.Image) -> tuple[float, float, float, float] | None:
    """The frame ``(left, top, right, bottom)`` in ``img``'s pixel coordinates, or ``None`` (use it whole).

    ``img`` must be RGB.
    """
    scale = 1.0
    small = img
    if max(img.size) > THUMBNAIL:
        scale = max(img.size) / THUMBNAIL
        small = img.resize((max(1, round(img.width / scale)), max(1, round(img.height / scale))),
                           Image.Resampling.BILINEAR)
        scale_x, scale_y = img.width / small.width, img.height / small.height
    else:
        scale_x = scale_y = 1.0
    pixels = np.asarray(small, dtype=np.float32)
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 2:
        return None
    diff = np.abs(pixels - background_colour(pixels))
    distance = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])  # 20x faster than .max(-1)
    weight = np.clip((distance - LOW) / (HIGH - LOW), 0.0, 1.0)
    total = float(weight.sum())
    if total < MIN_CONTENT * weight.size:
        return None
    ys = (np.arange(weight.shape[0], dtype=np.float64) + 0.5) * scale_y
    xs = (np.arange(weight.shape[1], dtype=np.float64) + 0.5) * scale_x
    row_mass, col_mass = weight.sum(axis=1), weight.sum(axis=0)
    cy, cx = float(row_mass @ ys) / total, float(col_mass @ xs) / total
    spread = float(row_mass @ (ys - cy) ** 2 + col_mass @ (xs - cx) ** 2) / total
    longer = max(img.size)
    side = float(min(max(SIDE_PER_RADIUS * np.sqrt(spread), MIN_SIDE * longer), MAX_SIDE * longer))
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def frame(img: Image.Image, size: int, resample: Image.Resampling, framing: str = "moments") -> Image.Image:
    """``img`` (RGB) resized to ``size`` x ``size``, cropped to its content frame first if ``framing`` says so.

    Raises
    ------
    ValueError
        If ``framing`` is not one of :data:`FRAMINGS`.
    """
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; expected one of {FRAMINGS}")
    box = content_box(img) if framing == "moments" else None
    if box is None:
        return img.resize((size, size), resample)
    outside = max(0.0, -box[0], -box[1], box[2] - img.width, box[3] - img.height)
    if outside > 0:
        pad = int(np.ceil(outside)) + 1
        fill = tuple(int(round(v)) for v in background_colour(np.asarray(img)))
        img = ImageOps.expand(img, border=pad, fill=fill)
        box = (box[0] + pad, box[1] + pad, box[2] + pad, box[3] + pad)
    return img.resize((size, size), resample, box=box)
