"""Content framing: crop every avatar to a square around its drawing before it is resized for the model.

Shifts, crops, rescales and padding move or resize the drawing inside the
file without changing the drawing. A model that sees the whole frame must
learn to ignore that; framing removes most of it before the model runs. The
frame is found from the image's own content:

1. uniform outer rings (a plain margin, a coloured border added around the
   file) are set aside, and the background is the colour of the innermost
   of them (or the outermost ring's median when it is not uniform);
2. each pixel's content weight = how far its colour is from the background
   (largest channel difference, ramped from 0 at ``LOW`` to 1 at ``HIGH``,
   so antialiased edges and JPEG noise count little and smoothly);
3. the frame is the square centred on the weighted centroid whose side is
   ``SIDE_PER_RADIUS`` times the weighted radius of gyration (rotation-
   invariant, and moments move little under blur, noise or recompression),
   clamped to ``[MIN_SIDE, MAX_SIDE]`` times the image's longer side.

``moments-fill`` adds one step for images whose outermost ring is not
uniform: a shift or rotation of a picture on a coloured (or full-bleed)
background brings in the copying tool's fill colour along the edges, which
``moments`` counts as content and so moves the frame (on 220 validation
images with a non-white background, silse-v1f's seed-family exact recall is
0.079 with ``moments`` and 0.413 with ``moments-fill``). Thin regions
reaching a corner in another colour than the background are set aside and
the background is taken from the region around the drawing
(:func:`corner_fill`). Where the outermost ring is uniform (a drawing on a
plain background, a fill matching it) both give the same frame.

``moments-bleed`` adds one more: a full-bleed picture (a photograph, a
drawing on a gradient) has no background, and weights measured against a
made-up one move with every copy. When the outermost ring is not uniform,
the background covers less than ``BLEED_SHARE`` of it and little of the
picture is flat (:func:`_full_bleed`), the frame is the whole picture,
moved by the strips of one-colour fill a shift brought in
(:func:`_bleed_box`); a rotation about the centre keeps the whole frame in
place. With silse-v1f's weights (seed families, exact code, moments-fill ->
moments-bleed): 456 photographs cropped from Debian wallpapers and
scikit-image's samples 0.188 -> 0.387 (silse-v1 without framing: 0.378),
538 validation drawings put on noisy gradients 0.124 -> 0.304, 220
validation drawings on plain non-white backgrounds 0.413 -> 0.409, all
1,408 validation images 0.469 -> 0.468, the 69 demo avatars 0.449 -> 0.449
(``work/photos``, 2026-11-30; the thresholds were chosen on these sets;
``make eval-photos``, other crops of the same wallpapers through the Spark
job: 0.142 -> 0.376; see docs/training-log.md). Elsewhere it gives ``moments-fill``'s frame.

``moments-bleed-levels`` then stretches each colour channel of the framed
108x108 result so that its top level (99.5th percentile) becomes 255
(:func:`levels`): a copy whose channels were scaled (a colour cast, the
seed family ``channel_scale``) gets its white background, and the rest
of its range, back wherever the scaled channel was not clipped at 255.
Levels after framing, not before: stretched before, the copying tool's
white fill moves the frame of shifted copies (validation, 1,408 images,
seed exact recall: 0.511 after, 0.500 before, 0.468 without).

``moments-bleed-white`` instead stretches each channel by ``255 / level``, the level being the
background's as the framing measured it, and only for a near-white background (every channel
at least ``WHITE_FLOOR``) in a picture that is not full-bleed (:func:`white_balance`): a crop, a
recompression or a rotation's fill moves the picture's brightest pixels but not its background,
and photographs and drawings on coloured backgrounds are left as ``moments-bleed`` leaves them.
Validation (1,408 images, silse-v1f's weights, seed families, exact code): 0.468 -> 0.498
(channel_scale 0.293 -> 0.434), extra families within 0.01 (jpeg 0.610 -> 0.607, blur 0.286 ->
0.277).

``moments-bleed-white-orient`` first turns the framed drawing (before the white balance) towards the
nearest position where its principal axis is upright (:func:`orient`): the axis comes from the
second moments of the weights the frame was found with, so a copy rotated by up to 10 degrees (the
seed family ``rotation``) is turned back to where its original is turned. The turn is ramped in
with the drawing's anisotropy (``ORIENT_FROM`` to ``ORIENT_FULL``): a round drawing has no axis to
follow. Photographs (full-bleed) are not turned. Validation (1,408 images, silse-v1f's weights,
exact code): seed families 0.498 -> 0.513 (rotation 0.381 -> 0.447, combined 0.163 -> 0.188),
extra families 0.491 -> 0.487; 0.07 ms more per image to decode (bench images, 75% of them turned).
On ``make eval`` (the demo avatars) it gained seed-family exact recall (0.456 -> 0.479) but lost
recall within 2 bits, the extra families (jpeg 0.554 -> 0.467: nearest-neighbour turns make a
recompressed copy's small axis change a whole-pixel jump) and cluster-job F1, so the model
version using it (``silse-v1f-r6``) is registered but not the default (see docs/training-log.md).

``moments-bleed-white-mirror`` instead flips the framed drawing left to right when its horizontal
skew (third moment of the framing's weights) is below ``-MIRROR_SKEW``: a mirror image has the
opposite skew, so a lopsided drawing and its mirrored copy reach the model the same way round.
``make eval``: mirrored copies 0.275 -> 0.551 exact, extra families 0.466 -> 0.481, but the cluster
job's precision fell (0.916 -> 0.888) and a demo campaign whose drawing is skewed near the
threshold split, so its model version (``silse-v1f-r7``) is not the default (see docs/training-log.md).

``moments-margin-white`` (the default model's framing since 2026-12-02, ``silse-v1f-r11``) is ``moments-bleed-white``
for drawings that fill their canvas, found on held-out icons (``make eval-icons``: Tango, GNOME and Moka themes) where
``moments-bleed-white`` framed 0.20 of shifted and 0.32 of combined copies whole while framing their originals around
the drawing, and white-balanced 109 of 357 originals against a light drawing body that ring peeling had taken for the
background. Two changes: a thin ground covering more than ``MARGIN_RING`` of the outermost ring is a margin, so still
the background in the full-bleed test (:func:`_full_bleed`), and the white balance is measured on the outermost ring
when it is uniform. With silse-v1f-r10's weights (seed families, exact code): that icon suite 0.333 -> 0.467, 400
validation drawings cropped tight onto plain colours 0.412 -> 0.412, 300 validation images 0.461 -> 0.464, 200 crops
of MATE wallpapers 0.333 -> 0.333 (scratch ``work/bf16``). A turn's fill covering more of the edge than the margin
still passes for the ground, so some turned copies are still framed whole.

Images with almost no content (fewer than ``MIN_CONTENT`` of the pixels) are
not framed: the whole image is used. Parts of the frame outside the image are
filled with the background colour. Moments are computed on a copy of at most
``THUMBNAIL`` pixels a side, so the cost does not grow with the upload's size.
The per-pixel loops (colour distances, ring medians and uniformity, the
corner regions' flood fills, the most common colour) are compiled
(:mod:`silse_spark.framing_kernels`, numba; integers and exact medians, so
the frames are the same bit for bit as the numpy code they replaced): what
framing adds per 128x128 avatar to ``none``'s one resize (~0.15 ms) fell
from 0.57-0.61 to 0.28 ms (``frame`` on 3,000 decoded bench images, one
core, best of 4 interleaved passes, two runs, 2026-12-02), and the hash
job over 24,000 images took 49 s instead of 58 s with the same codes.
The moments stay numpy: their float sums must add up in numpy's order.

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

import functools
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from silse_spark import framing_kernels

FRAMINGS = ("none", "moments", "moments-fill", "moments-bleed", "moments-bleed-levels", "moments-bleed-white",
            "moments-bleed-white-orient", "moments-bleed-white-mirror", "moments-margin", "moments-margin-white")
"""Known framing methods: ``none`` (the whole image), ``moments`` (this module), ``moments-fill``
(``moments``, with the fill of a shift or rotation set aside when it differs from the background),
``moments-bleed`` (``moments-fill``, with full-bleed pictures framed whole), ``moments-bleed-levels``
(``moments-bleed``, then each colour channel's levels stretched to full range, :func:`levels`),
``moments-bleed-white`` (``moments-bleed``, then a near-white background's colour cast undone, :func:`white_balance`),
``moments-bleed-white-orient`` (``moments-bleed-white``, with an elongated drawing first turned towards the
nearest position where its principal axis is upright, :func:`orient`) and ``moments-bleed-white-mirror``
(``moments-bleed-white``, with a lopsided drawing flipped left to right so that its mass trails off to the right,
``MIRROR_SKEW``). ``moments-margin`` is ``moments-bleed`` where a plain margin thinner than ``MAX_PEEL`` that
covers more than ``MARGIN_RING`` of the outermost ring still counts as background in the full-bleed test, and
``moments-margin-white`` adds the white balance, measured on the outermost ring when that ring is uniform (the
margin's own colour)."""

LEVELS_SUFFIX = "-levels"
WHITE_SUFFIX = "-white"
ORIENT_SUFFIX = "-orient"
MIRROR_SUFFIX = "-mirror"

MIRROR_SKEW = 0.15
"""``-mirror`` flips a drawing left to right when its horizontal skew (``mu30 / mu20 ** 1.5`` of the framing's
weights) is below minus this, so that a mirrored copy (skew negated) and its original reach the model the same way
round. Drawings skewed less either way are left as they are: their skew's sign moves with a rotation or a shift.
Validation (1,408 images, silse-v1f's weights, exact code, seed / extra families): without 0.498 / 0.491 (hflip
0.409); as built (skew of the framing's weights over the whole drawing) 0.1: 0.494 / 0.521 (hflip 0.635), 0.15:
0.497 / 0.516 (hflip 0.588), 0.2: 0.497 / 0.507 (hflip 0.543); first measured on the framed 108x108 image, 0.05:
0.491 / 0.531 (hflip 0.720), 0.08: 0.494 / 0.520, 0.1: 0.495 / 0.516, 0.15: 0.497 / 0.509, 0.3: 0.498 / 0.499."""

ORIENT_RESAMPLE = Image.Resampling.NEAREST
""":func:`orient`'s resampling. Pillow's bilinear rotation of a 108x108 RGB image takes ~0.38 ms on this 2-core
machine (cProfile of 1,500 bench images, 75% of them turned), about a third of all the rest of decoding and framing;
nearest takes ~0.05 ms (``timeit`` of one rotation). Validation (1,408 images, silse-v1f's weights, exact code /
within 2): seed families 0.515 / 0.793 bilinear, 0.513 / 0.791 nearest (0.498 / 0.782 without turning); extra
families 0.494 / 0.780 bilinear, 0.487 / 0.776 nearest (0.491 / 0.778 without): jpeg and border lose 0.016 with
nearest."""

ORIENT_FROM, ORIENT_FULL = 0.1, 0.5
""":func:`orient` turns a drawing whose anisotropy ``|(mu20 - mu02, 2 mu11)| / (mu20 + mu02)`` (0: as long as it is
wide in every direction, 1: a line) is above ``ORIENT_FROM``, by a share of the turn to its nearest upright position
that grows linearly to all of it at ``ORIENT_FULL``: the axis of a nearly round drawing moves with every copy, so it
is turned little, and a copy and its original near a threshold are not turned one fully and the other not at all.
Validation (1,408 images, silse-v1f's weights, seed families, exact code / within 2): no turn 0.498 / 0.782, all
of the turn from anisotropy 0.2 on 0.509 / 0.779, ramps 0.1-0.3 0.512 / 0.785, 0.1-0.4 0.512 / 0.790, 0.05-0.35
0.513 / 0.786, 0.2-0.5 0.507 / 0.787, 0.1-0.5 0.515 / 0.791 (these with the axis measured on the 108x108 frame and
bilinear turns; as built, the axis from the framing's own weights and nearest turns, 0.513 / 0.791). Leaving turns
under 0.5 / 1.5 degrees undone (bilinear): 0.514 / 0.791, 0.514 / 0.790 against 0.515 / 0.793."""

WHITE_FLOOR = 216
""":func:`white_balance` stretches only channels of a background at or above this level (255 x 0.85: a white
background whose channels were scaled by 0.9 is at about 230)."""

WHITE_TOP = 251
""":func:`white_balance` leaves channels of the background at or above this level as they are: a recompressed white
lands at 252..255, and a scaling by less than 2% is within JPEG's noise (validation, 1,408 images, jpeg exact recall
0.600 without this dead zone, 0.607 with it; seed families 0.499 / 0.498)."""

LEVELS_PERCENTILE = 99.5
""":func:`levels`: a channel's top level is the value at or below which this share of its pixels lie (nearest rank)."""

LEVELS_FLOOR = 64
""":func:`levels` leaves a channel whose top level is below this as it is (a dark channel is not stretched)."""

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

MAX_PEEL = 0.15
"""Uniform outer rings (borders, plain margins) are set aside up to this share of the shorter side."""

RING_UNIFORM = 0.98
"""Share of a ring's pixels within ``LOW`` of its median colour for it to count as uniform."""


BLEED_SHARE = 0.9
"""``moments-bleed``: a picture is full-bleed only if its background covers less than this share of the outermost
ring (the tool's fill aside) ..."""

BLEED_FLAT = 0.2
"""... and fewer than this share of its pixels (the fill aside) are within ``FLAT_LEVELS`` of the background colour."""

BLEED_DOMINANT = 0.25
"""... and fewer than this share are within ``FLAT_LEVELS`` of the most common colour (a card's body)."""

FLAT_LEVELS = 3
"""Largest channel difference (0..255) of a flat area: a plain background or a tool's fill, not a photograph."""

FLAT_SHARE = 0.75
"""A thin corner region is the tool's fill (one colour) when at least this share of it is flat."""

MARGIN_RING = 0.5
"""``moments-margin``: a thin ground covering more than this share of the outermost ring is a margin (the background
of a drawing that fills its canvas); less, and it may be the tool's fill of a shifted or turned picture."""


def check_framing(framing: str) -> None:
    """Raise ``ValueError`` naming ``framing`` unless it is one of :data:`FRAMINGS`."""
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; expected one of {FRAMINGS}")


def _ring(pixels: np.ndarray, inset: int) -> np.ndarray:
    inner = pixels[inset : pixels.shape[0] - inset, inset : pixels.shape[1] - inset]
    return np.concatenate([inner[0], inner[-1], inner[:, 0], inner[:, -1]])


def _first_ring_with(mask: np.ndarray) -> int:
    """The outermost ring (0 = the edge) holding a pixel of ``mask``; ``min(h, w)`` when there is none.

    The smallest ring index over the set pixels, read from the rows and columns
    that hold one: a pixel's ring is ``min(y, x, h - 1 - y, w - 1 - x)``, so the
    smallest over the pixels is the smallest of the first and last such row and column.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return min(mask.shape)
    height, width = mask.shape
    return int(min(rows[0], cols[0], height - 1 - rows[-1], width - 1 - cols[-1]))


def _median(ring: np.ndarray) -> np.ndarray:
    """Per-channel median of uint8 ``ring`` ``(n, 3)`` as float32: ``np.median(ring.astype(np.float32), axis=0)``."""
    return framing_kernels.median(ring)


# Content weight of each colour distance, indexed by twice the distance (pixels are integers and the
# background a median of integers, so distances are multiples of 1/2): the ramp from LOW to HIGH.
_WEIGHT = np.clip((np.arange(511, dtype=np.float32) / np.float32(2) - LOW) / (HIGH - LOW), 0.0, 1.0)


def _twice_distance(pixels: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Twice the largest channel difference between each pixel and ``colour``, as int16 ``(h, w)``.

    ``pixels``: the uint8 image ``(h, w, 3)``; ``colour`` a multiple of 1/2
    (a pixel, or a median of pixels), so the result is exact.
    """
    return framing_kernels.twice_distance(pixels, np.rint(np.asarray(colour, dtype=np.float64) * 2).astype(np.int64))


class _Region(NamedTuple):
    thin: bool  # stays within MAX_PEEL of the edges
    at_corner: bool  # reaches a corner
    flat: bool  # thin, at a corner, not a margin, at least FLAT_SHARE of it within FLAT_LEVELS of its seed's colour
    mask: np.ndarray  # (h, w) bool
    on_ring: np.ndarray  # the mask along the outermost ring, in _ring's order


class _Edge(NamedTuple):
    """What :func:`_edge_regions` finds along a non-uniform outermost ring."""

    regions: list[_Region]
    ground: _Region  # the background region
    background: np.ndarray  # its colour (float32 RGB)


def _edge_regions(pixels: np.ndarray) -> _Edge:
    """The regions around the corners and edges' middles of an image whose outermost ring is not uniform.

    Regions are the 4-connected areas within ``LOW / 2`` of the colour of a
    corner or of the middle of an edge. A region is thin when it stays within
    ``MAX_PEEL`` of the edges: a tool's fill (a shift brings in a strip
    reaching two corners, a rotation four corner triangles) is thin; a plain
    background surrounds the drawing and is not. The ground is the region
    covering most of the outermost ring among those that are not thin (among
    all when every one is), and its colour there is the background colour.
    """
    height, width = pixels.shape[:2]
    # Rings at least MAX_PEEL of the shorter side deep (the interior rectangle): beyond a thin region's reach.
    k = int(np.ceil(MAX_PEEL * min(height, width)))
    corners = ((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1))
    seeds = corners + ((0, width // 2), (height - 1, width // 2), (height // 2, 0), (height // 2, width - 1))
    seed_array = np.array(seeds, np.int64)
    regions: list[_Region] = []
    covered = np.zeros((height, width), bool)
    for y, x in seeds:
        if covered[y, x]:
            continue
        # The 4-connected areas within LOW / 2 of this seed's colour holding a seed not yet covered, whether one
        # of them is a margin (one connected flat area around all four corners: not a tool's fill, which reaches
        # two or three corners for a shift's strip, one each for a rotation's triangles) and how much is flat.
        mask, thin, margin, flat_pixels, size = framing_kernels.seed_region(
            pixels, y, x, seed_array, covered, int(LOW), 2 * FLAT_LEVELS, k)
        covered |= mask
        at_corner = any(mask[cy, cx] for cy, cx in corners)
        flat = thin and at_corner and not margin and flat_pixels / size >= FLAT_SHARE
        regions.append(_Region(thin=thin, at_corner=at_corner, flat=flat, mask=mask, on_ring=_ring(mask, 0)))
    # Not thin first, then the largest share of the outermost ring.
    ground = max(regions, key=lambda r: (not r.thin, int(r.on_ring.sum())))
    return _Edge(regions, ground, _median(_ring(pixels, 0)[ground.on_ring]))


def corner_fill(pixels: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """``(fill, background)`` of an image whose outermost ring is not uniform: what a shift or rotation brought in.

    The background is the ground's colour (:func:`_edge_regions`); the fill
    is every thin region reaching a corner in a colour more than ``LOW``
    from the background (``None`` when there is none).

    >>> img = np.full((40, 40, 3), (30, 90, 200), np.uint8); img[:, :4] = 255   # a strip of white fill
    >>> img[:5, 30:] = 255                                                      # and another, 5 deep
    >>> fill, background = corner_fill(img)
    >>> int(fill.sum()), background.tolist()
    (210, [30.0, 90.0, 200.0])
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    edge = _edge_regions(pixels)
    return _fill_of(edge, pixels), edge.background


def _fill_of(edge: _Edge, pixels: np.ndarray) -> np.ndarray | None:
    """:func:`corner_fill`'s fill from the regions :func:`_edge_regions` found."""
    outer = _ring(pixels, 0)
    fill = [r.mask for r in edge.regions if r.thin and r.at_corner and r is not edge.ground
            and np.abs(_median(outer[r.on_ring]) - edge.background).max() > LOW]
    return np.logical_or.reduce(fill) if fill else None


def _full_bleed(edge: _Edge, pixels: np.ndarray, to_background: np.ndarray,
                margin: bool = False) -> tuple[bool, np.ndarray | None]:
    """``(full_bleed, tool_fill)``: whether a picture with a non-uniform outermost ring fills its frame.

    The tool's fill is every flat thin region reaching a corner (a shift's
    strip, a rotation's corner triangles: one colour, whatever the
    picture's). Full-bleed: outside that fill, the ground covers less than
    ``BLEED_SHARE`` of the outermost ring (none when every region is thin)
    and fewer than ``BLEED_FLAT`` of the pixels are within ``FLAT_LEVELS``
    of the background colour (a drawing on a plain background that reaches
    the edges has a large flat area; a photograph or gradient has little).

    ``margin`` (framing ``moments-margin``): a thin ground that covers more
    than ``MARGIN_RING`` of the outermost ring is a margin around the
    drawing, still the background, neither "no background" nor a tool's
    fill (a shift's strip covers one side, a turn's triangles the corners).
    An icon that fills its canvas has a plain margin thinner than
    ``MAX_PEEL``; shifted or turned, its outermost ring stops being
    uniform, and without this the copy was framed whole while its original
    was framed around the drawing (``make eval-icons``: 0.20 of shifted copies).
    """
    if margin and edge.ground.thin and edge.ground.on_ring.mean() > MARGIN_RING:
        ground = edge.ground._replace(thin=False, flat=False)
        edge = edge._replace(ground=ground, regions=[ground if r is edge.ground else r for r in edge.regions])
    masks = [r.mask for r in edge.regions if r.flat]
    tool_fill = np.logical_or.reduce(masks) if masks else None
    free = ~tool_fill if tool_fill is not None else np.ones(to_background.shape, bool)
    free_ring = _ring(free, 0)
    share = 0.0 if edge.ground.thin else int((edge.ground.on_ring & free_ring).sum()) / max(int(free_ring.sum()), 1)
    if share >= BLEED_SHARE:
        return False, tool_fill
    flat = int(((to_background <= 2 * FLAT_LEVELS) & free).sum()) / max(int(free.sum()), 1)
    if flat >= BLEED_FLAT:
        return False, tool_fill
    return _dominant_flat(pixels, free) < BLEED_DOMINANT, tool_fill


def _dominant_flat(pixels: np.ndarray, free: np.ndarray) -> float:
    """Share of the ``free`` pixels within ``FLAT_LEVELS`` of the most common colour (a card's body, a badge's disc)."""
    near, total = framing_kernels.dominant_flat(pixels, free, 2 * FLAT_LEVELS)
    return near / max(total, 1)


def _peel(pixels: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, bool]:
    """:func:`peel_uniform_rings` on uint8 ``pixels``, plus twice each pixel's distance to the corner's colour
    and whether the outermost ring is uniform.

    Exactly the ring-by-ring definition, without testing each ring: every
    ring whose pixels all lie within ``LOW / 2`` of the corner pixel's
    colour is uniform (its range is within ``LOW``) and close enough to any
    background near that colour not to count as a border, so the per-ring
    test (a median and a count) only runs from the first ring that differs.
    """
    limit = int(MAX_PEEL * min(pixels.shape[:2]))
    corner = pixels[0, 0].astype(np.float32)
    to_corner = _twice_distance(pixels, corner)
    if limit == 0:  # an image too small to peel anything
        return 0, _median(_ring(pixels, 0)), to_corner, True
    far = to_corner > LOW  # more than LOW / 2 from the corner's colour
    near_rings = min(limit, _first_ring_with(far))
    # Rings near_rings, near_rings + 1, ... tested until one is not uniform (their medians come with them).
    stop, medians = framing_kernels.peel_rings(pixels, near_rings, limit, LOW, RING_UNIFORM)
    if stop == 0:
        return 0, medians[0], to_corner, False  # the outermost ring is not uniform

    def colour(k: int) -> np.ndarray:
        """Ring k's median: computed by the test above from near_rings on; nearer the edge only when needed."""
        return medians[k] if k >= near_rings else framing_kernels.ring_median(pixels, k)

    background = colour(stop - 1)  # the innermost uniform ring's
    # Rings near the corner's colour are within LOW of a background near it: none is a border.
    offset = near_rings if np.abs(background - corner).max() <= LOW / 2 else 0
    # Set aside only the outer rings of another colour (a border); rings of the background's own colour
    # stay, so that a drawing reaching into the margin counts the same with or without a shift.
    other = [k for k in range(offset, stop) if np.abs(colour(k) - background).max() > LOW]
    return (other[-1] + 1 if other else 0), background, to_corner, True


def peel_uniform_rings(pixels: np.ndarray) -> tuple[int, np.ndarray]:
    """``(inset, background)``: how many outer rings to set aside (a border), and the background colour.

    ``pixels``: uint8 ``(h, w, 3)``. A ring is uniform when at least
    ``RING_UNIFORM`` of its pixels are within ``LOW`` of its median colour.
    Uniform rings are peeled from the outside in (at most ``MAX_PEEL`` of
    the shorter side); the background is the innermost one's colour, and
    the outer rings of another colour (a coloured border added around the
    file) are set aside. A drawing on a plain background sets nothing
    aside. Images whose outermost ring is not uniform (full-bleed pictures,
    shifted copies whose fill differs from the background) peel nothing,
    and the background is the outermost ring's median.

    >>> a = np.full((40, 40, 3), 255, np.uint8); a[:3] = a[-3:] = a[:, :3] = a[:, -3:] = (200, 0, 0)
    >>> a[15:25, 15:25] = 0
    >>> inset, bg = peel_uniform_rings(a)
    >>> inset, bg.tolist()   # the 3-pixel red border is set aside, the white margin kept
    (3, [255.0, 255.0, 255.0])
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    inset, background, _, _ = _peel(pixels)
    return inset, background


class _Frame(NamedTuple):
    box: tuple[float, float, float, float] | None  # None: the whole image
    fill: tuple[int, int, int]  # the colour of the frame's parts outside the image
    background: np.ndarray | None  # the background colour (float32 RGB); None when none was measured
    full_bleed: bool  # framed whole as a full-bleed picture (no background)
    axis: tuple[float, float] | None = None  # the drawing's (angle, anisotropy), :func:`principal_axis`; if asked
    skew_x: float = 0.0  # the drawing's horizontal skew (:class:`_Moments`); if asked


def content_frame(img: Image.Image, fill_aware: bool = False, bleed: bool = False
                  ) -> tuple[tuple[float, float, float, float] | None, tuple[int, int, int]]:
    """``(box, background)``: the frame in ``img``'s pixel coordinates (``None``: use it whole) and the fill.

    ``img`` must be RGB. ``fill_aware`` (framing ``moments-fill``): when the
    outermost ring is not uniform, regions reaching a corner in a colour
    other than the background (what a shift or rotation of a picture on a
    coloured or full-bleed background brings in) are set aside, see
    :func:`corner_fill`. ``bleed`` (framing ``moments-bleed``): the same, and
    a full-bleed picture is framed whole, moved by the fill's strips.
    """
    found = _content_frame(img, fill_aware, bleed)
    return found.box, found.fill


def _content_frame(img: Image.Image, fill_aware: bool, bleed: bool, axis: bool = False, skew: bool = False,
                   margin: bool = False) -> _Frame:
    """:func:`content_frame`, with the background colour, whether the picture was framed whole as full-bleed and,
    if asked, the drawing's principal axis (:func:`_axis`) and horizontal skew from the same weights."""
    small = img
    if max(img.size) > THUMBNAIL:
        scale = max(img.size) / THUMBNAIL
        small = img.resize((max(1, round(img.width / scale)), max(1, round(img.height / scale))),
                           Image.Resampling.BILINEAR)
    scale_x, scale_y = img.width / small.width, img.height / small.height
    pixels = np.asarray(small)
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 2:
        return _Frame(None, (255, 255, 255), None, False)
    inset, background, to_corner, uniform_edge = _peel(pixels)
    outside = edge = None
    bleed = bleed or margin
    if (fill_aware or bleed) and not uniform_edge:
        edge = _edge_regions(pixels)
        outside, background = _fill_of(edge, pixels), edge.background
    fill = (int(round(background[0])), int(round(background[1])), int(round(background[2])))
    same = np.array_equal(background, pixels[0, 0])  # a plain margin: distances to it are already known
    to_background = to_corner if same else _twice_distance(pixels, background)
    if bleed and edge is not None:
        full_bleed, tool_fill = _full_bleed(edge, pixels, to_background, margin)
        if full_bleed:
            return _Frame(_bleed_box(tool_fill, img.width, img.height, scale_x, scale_y), fill, background, True)
    weight = _WEIGHT.take(to_background)
    if outside is not None:
        weight = np.where(outside, np.float32(0), weight)
    if inset:
        inside = np.zeros_like(weight)
        inside[inset:-inset, inset:-inset] = weight[inset:-inset, inset:-inset]
        weight = inside
    box, moments = _moments_box(weight, img.width, img.height, scale_x, scale_y, axis, skew)
    if margin and uniform_edge:
        # Ring peeling may walk through a thin margin into a light drawing and take it for the background; the
        # white balance is measured on the margin itself, which a crop or a shift's fill does not recolour.
        background = _median(_ring(pixels, 0))
    if moments is None:
        return _Frame(box, fill, background, False)
    return _Frame(box, fill, background, False, _axis(moments.mu20, moments.mu02, moments.mu11) if axis else None,
                  moments.skew_x)


class _Moments(NamedTuple):
    """Weighted central moments: second along x and y, and (when asked for) the cross and the horizontal skew."""

    mu20: float
    mu02: float
    mu11: float = 0.0
    skew_x: float = 0.0  # mu30 / mu20 ** 1.5: < 0 when the drawing's mass trails off to the left


def _moments(weight: np.ndarray, scale_x: float = 1.0, scale_y: float = 1.0, cross: bool = False, skew: bool = False
             ) -> tuple[float, float, _Moments] | None:
    """``(cx, cy, moments)`` of ``weight`` in pixel-centre coordinates scaled by ``scale_x`` / ``scale_y`` (``mu11``
    only if ``cross``, ``skew_x`` only if ``skew``, else 0); ``None`` below ``MIN_CONTENT`` fully weighted pixels."""
    total = float(weight.sum())
    if total < MIN_CONTENT * weight.size:
        return None
    ys = (np.arange(weight.shape[0], dtype=np.float64) + 0.5) * scale_y
    xs = (np.arange(weight.shape[1], dtype=np.float64) + 0.5) * scale_x
    row_mass, col_mass = weight.sum(axis=1), weight.sum(axis=0)
    cy, cx = float(row_mass @ ys) / total, float(col_mass @ xs) / total
    dx = xs - cx
    mu20, mu02 = float(col_mass @ dx**2) / total, float(row_mass @ (ys - cy) ** 2) / total
    mu11 = float((ys - cy) @ weight @ dx) / total if cross else 0.0
    skew_x = float(col_mass @ dx**3) / total / mu20**1.5 if skew and mu20 > 0 else 0.0
    return cx, cy, _Moments(mu20, mu02, mu11, skew_x)


def _moments_box(weight: np.ndarray, width: int, height: int, scale_x: float, scale_y: float,
                 cross: bool = False, skew: bool = False
                 ) -> tuple[tuple[float, float, float, float] | None, _Moments | None]:
    """The frame around ``weight``'s centroid, sized by its radius of gyration, and the moments."""
    found = _moments(weight, scale_x, scale_y, cross, skew)
    if found is None:
        return None, None
    cx, cy, moments = found
    longer = max(width, height)
    side = float(min(max(SIDE_PER_RADIUS * np.sqrt(moments.mu20 + moments.mu02), MIN_SIDE * longer), MAX_SIDE * longer))
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), moments


def _axis(mu20: float, mu02: float, mu11: float) -> tuple[float, float]:
    """``(angle, anisotropy)`` of the principal axis of second moments, as :func:`principal_axis` gives them."""
    anisotropy = float(np.hypot(mu20 - mu02, 2 * mu11) / (mu20 + mu02)) if mu20 + mu02 > 0 else 0.0
    # Rows grow downwards: the axis' angle as displayed (counter-clockwise) is minus the one in pixel coordinates.
    angle = float(np.degrees(-0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
    return (90.0 if angle == -90.0 else angle + 0.0), anisotropy  # + 0.0: no negative zero


def _strip(cover: np.ndarray) -> int:
    """How many leading entries of ``cover`` (share of fill per column or row) are at least half fill."""
    short = cover < 0.5
    return int(np.argmax(short)) if short.any() else len(cover)


def _bleed_box(outside: np.ndarray | None, width: int, height: int, scale_x: float, scale_y: float
               ) -> tuple[float, float, float, float] | None:
    """The whole image, moved by the strips of fill a shift brought in (``None``: no strip, the whole image)."""
    if outside is None:
        return None
    cols, rows = outside.mean(axis=0), outside.mean(axis=1)
    dx = (_strip(cols) - _strip(cols[::-1])) * scale_x
    dy = (_strip(rows) - _strip(rows[::-1])) * scale_y
    if dx == 0 and dy == 0:
        return None
    return (dx, dy, width + dx, height + dy)


def content_box(img: Image.Image) -> tuple[float, float, float, float] | None:
    """The frame ``(left, top, right, bottom)`` in ``img``'s pixel coordinates, or ``None`` (use it whole)."""
    return content_frame(img)[0]


@functools.lru_cache(maxsize=256)
def _stretch_table(top: int) -> np.ndarray:
    """Pixel values 0..255 stretched by ``255 / top``, rounded and clipped (uint8, read-only)."""
    table = np.clip(np.rint(np.arange(256) * (255.0 / top)), 0, 255).astype(np.uint8)
    table.flags.writeable = False
    return table


def levels(img: Image.Image) -> Image.Image:
    """Stretch each channel of an RGB image so that its top level (``LEVELS_PERCENTILE``) becomes 255.

    Undoes a per-channel scaling (a colour cast, the seed family
    ``channel_scale``: each channel times 0.9..1.1) wherever the scaled
    channel's top is not clipped: a white background scaled by 0.9 is white
    again, while a channel already reaching 255 is left as it is. Channels
    whose top level is below ``LEVELS_FLOOR`` are not stretched (noise would be
    amplified). The top levels are read from the image's histogram.

    >>> img = Image.new("RGB", (10, 10), (230, 255, 204)); img.putpixel((0, 0), (23, 0, 20))
    >>> levels(img).getpixel((5, 5)), levels(img).getpixel((0, 0))
    ((255, 255, 255), (26, 0, 25))
    """
    histogram = np.asarray(img.histogram(), dtype=np.int64).reshape(3, 256)
    # Per channel, the smallest level with at least LEVELS_PERCENTILE of the pixels at or below it.
    tops = (histogram.cumsum(axis=1) < LEVELS_PERCENTILE / 100 * img.width * img.height).sum(axis=1)
    return _stretch_channels(img, np.flatnonzero((tops >= LEVELS_FLOOR) & (tops < 255)), tops)


def _stretch_channels(img: Image.Image, bands: np.ndarray, tops: np.ndarray) -> Image.Image:
    """``img`` (RGB) with each channel in ``bands`` stretched by ``255 / tops[band]``; ``img`` itself when none is."""
    if bands.size == 0:
        return img
    pixels = np.array(img)  # a writable copy, (h, w, 3) uint8
    for band in bands:
        np.take(_stretch_table(int(tops[band])), pixels[..., band], out=pixels[..., band])
    return Image.fromarray(pixels, "RGB")


def white_balance(img: Image.Image, background: np.ndarray) -> Image.Image:
    """Stretch each channel of ``img`` (RGB) by ``255 / level``, ``level`` the background's, if the background is near white.

    Undoes a per-channel scaling down (a colour cast, the seed family
    ``channel_scale``) of a picture on a white background: the background is
    measured by the framing (the colour around the drawing, never the
    picture's own brightest pixels), so a crop, a recompression or a rotation's
    fill does not move it. Only when every channel of the background is at
    least ``WHITE_FLOOR``; channels at ``WHITE_TOP`` or above are left as
    they are (a channel scaled up clips the white background at 255 and
    cannot be undone).

    >>> img = Image.new("RGB", (10, 10), (230, 255, 204)); img.putpixel((0, 0), (23, 0, 20))
    >>> white_balance(img, np.array([230.0, 255.0, 230.0], np.float32)).getpixel((0, 0))
    (26, 0, 22)
    >>> white_balance(img, np.array([230.0, 255.0, 204.0], np.float32)) is img   # blue below the floor: not white
    True
    """
    level = np.rint(np.asarray(background, dtype=np.float64)).astype(int)
    if level.min() < WHITE_FLOOR:
        return img
    return _stretch_channels(img, np.flatnonzero(level < WHITE_TOP), level)


def principal_axis(img: Image.Image, background: np.ndarray) -> tuple[float, float] | None:
    """``(angle, anisotropy)`` of the drawing in ``img`` (RGB) against ``background``; ``None`` if it has no content.

    From the weighted second moments, each pixel weighted as the framing
    weighs it against ``background``: ``angle`` (degrees, in ``(-90, 90]``,
    counter-clockwise as displayed) is the principal axis', ``anisotropy``
    ``|(mu20 - mu02, 2 mu11)| / (mu20 + mu02)`` is 0 for a drawing as long as
    it is wide in every direction and 1 for a line. ``None`` below
    ``MIN_CONTENT`` fully weighted pixels.

    >>> from PIL import ImageDraw
    >>> img = Image.new("RGB", (108, 108), "white")
    >>> ImageDraw.Draw(img).rectangle((14, 44, 94, 64), fill="navy")
    >>> white = np.array([255.0, 255.0, 255.0], np.float32)
    >>> angle, anisotropy = principal_axis(img, white)
    >>> angle, round(anisotropy, 2)
    (0.0, 0.87)
    >>> round(principal_axis(img.rotate(30, fillcolor="white"), white)[0])
    30
    """
    pixels = np.asarray(img)
    found = _moments(_WEIGHT.take(_twice_distance(pixels, background)),
                     cross=True)
    return None if found is None else _axis(found[2].mu20, found[2].mu02, found[2].mu11)


def orient(img: Image.Image, axis: tuple[float, float] | None, fill: tuple[int, int, int]) -> Image.Image:
    """``img`` (RGB) turned towards the nearest position where its drawing's principal ``axis`` is upright.

    ``axis`` is ``(angle, anisotropy)`` as :func:`principal_axis` gives them
    (the framing measures it on the same weights it frames with). The turn to
    the nearest multiple of 90 degrees (at most 45 degrees either way) times a
    share ramped from 0 at anisotropy ``ORIENT_FROM`` to 1 at ``ORIENT_FULL``:
    a rotated copy (the seed family ``rotation``, up to 10 degrees either way)
    of an elongated drawing is turned back to where its original is turned,
    so both reach the model alike. About the centre (the frame is centred on
    the drawing), corners filled with ``fill``; ``img`` itself when there is
    nothing to turn.
    A drawing whose axis lies near 45 degrees can be turned one way and its
    copy the other.

    >>> from PIL import ImageDraw
    >>> img = Image.new("RGB", (108, 108), "white")
    >>> ImageDraw.Draw(img).rectangle((14, 44, 94, 64), fill="navy")
    >>> white = np.array([255.0, 255.0, 255.0], np.float32)
    >>> copy = img.rotate(8, resample=Image.Resampling.BILINEAR, fillcolor="white")
    >>> turned = orient(copy, principal_axis(copy, white), (255, 255, 255))
    >>> abs(principal_axis(turned, white)[0]) < 1
    True
    """
    if axis is None or axis[1] <= ORIENT_FROM:
        return img
    angle, anisotropy = axis
    turn = ((angle + 45.0) % 90.0 - 45.0) * min(1.0, (anisotropy - ORIENT_FROM) / (ORIENT_FULL - ORIENT_FROM))
    if turn == 0:
        return img
    return img.rotate(-turn, resample=ORIENT_RESAMPLE, fillcolor=fill)


def frame(img: Image.Image, size: int, resample: Image.Resampling, framing: str = "moments") -> Image.Image:
    """``img`` (RGB) resized to ``size`` x ``size``, cropped to its content frame first if ``framing`` says so.

    Raises
    ------
    ValueError
        If ``framing`` is not one of :data:`FRAMINGS`.
    """
    check_framing(framing)
    if framing.endswith(LEVELS_SUFFIX):
        return levels(frame(img, size, resample, framing[: -len(LEVELS_SUFFIX)]))
    method, steps = framing, frozenset[str]()
    for suffix in (ORIENT_SUFFIX, MIRROR_SUFFIX, WHITE_SUFFIX):  # outermost first, as FRAMINGS spells them
        if method.endswith(suffix):
            method, steps = method[: -len(suffix)], steps | {suffix}
    oriented, mirrored = ORIENT_SUFFIX in steps, MIRROR_SUFFIX in steps
    if method == "none":
        found = _Frame(None, (255, 255, 255), None, False)
    else:
        found = _content_frame(img, fill_aware=method == "moments-fill", bleed=method == "moments-bleed",
                               axis=oriented, skew=mirrored, margin=method == "moments-margin")
    box = found.box
    if box is None:
        out = img.resize((size, size), resample)
    else:
        outside = max(0.0, -box[0], -box[1], box[2] - img.width, box[3] - img.height)
        if outside > 0:
            pad = int(np.ceil(outside)) + 1
            img = ImageOps.expand(img, border=pad, fill=found.fill)
            box = (box[0] + pad, box[1] + pad, box[2] + pad, box[3] + pad)
        out = img.resize((size, size), resample, box=box)
    if found.background is not None and not found.full_bleed:
        if oriented and found.box is not None:
            out = orient(out, found.axis, found.fill)
        if mirrored and found.box is not None and found.skew_x < -MIRROR_SKEW:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if WHITE_SUFFIX in steps:
            out = white_balance(out, found.background)
    return out
