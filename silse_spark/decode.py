"""Bytes of a stored avatar -> the model's 108x108 RGB input, or a status.

Decoding is the attack surface of a job over user uploads, so it is strict
and it never raises for bad input: :func:`decode_avatar` always returns a
:class:`DecodedAvatar` whose ``status`` says what happened.

Steps, in order:

1. Empty input -> ``empty``.
2. A JPEG, PNG or GIF whose container holds more markers, chunks or blocks than
   any encoder writes -> ``too_large``, from the bytes alone
   (:mod:`silse_spark.containers`: Pillow parses those one at a time in Python).
   Pillow then opens the header only; the format is detected from the content,
   not the file name. Formats outside ``allowed_formats`` -> ``unsupported_format``.
3. Width x height above ``max_pixels``, or a longer side above
   :func:`max_side` (4 x its square root: strips) -> ``too_large`` (checked
   before any pixel is decoded; Pillow's own decompression-bomb warning is
   raised as an error too).
4. The first frame of an animation; EXIF orientation applied; any mode
   (palette, grey, 16-bit, CMYK, with or without alpha) converted to RGB with
   transparency composited on white.
5. Resized to 108x108 with Pillow's antialiased ``BILINEAR`` filter (the
   aspect ratio is not kept: avatars are near-square, and squashing keeps
   every pixel of content). With a content framing (``moments``,
   ``moments-fill``, ``moments-bleed``, ``moments-bleed-levels``, ``moments-bleed-white``,
   ``moments-bleed-white-orient``, ``moments-bleed-white-mirror``; models registered with it), the image
   is first cropped to a square around its drawing (:mod:`silse_spark.framing`; ``-levels`` then
   stretches each channel's levels, ``-white`` undoes a near-white background's colour cast,
   ``-orient`` first turns an elongated drawing towards upright, ``-mirror`` flips a drawing whose
   mass trails off to the left). Large JPEGs are first reduced by the decoder
   (``draft``) to no less than twice the target size, which is faster and
   gives the same image up to rounding.

Anything Pillow fails on -> ``decode_error`` with the exception text.

Example
-------
>>> from silse_spark.variations import encode
>>> from PIL import Image
>>> d = decode_avatar(encode(Image.new("RGB", (64, 32), "blue")))
>>> d.status, d.pixels.shape, (d.width, d.height)
('ok', (108, 108, 3), (64, 32))
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from silse_spark.containers import structure_error
from silse_spark.framing import check_framing, frame
from silse_spark.model import INPUT_SIZE

STATUS_OK = "ok"
STATUS_EMPTY = "empty"
STATUS_DECODE_ERROR = "decode_error"
STATUS_TOO_LARGE = "too_large"
STATUS_UNSUPPORTED = "unsupported_format"
STATUS_READ_ERROR = "read_error"
STATUS_NO_ACCOUNT = "no_account_id"
"""An input row (manifest or avatar table) whose ``account_id`` is null or blank: not read, not hashed."""
STATUSES = (
    STATUS_OK, STATUS_EMPTY, STATUS_DECODE_ERROR, STATUS_TOO_LARGE, STATUS_UNSUPPORTED, STATUS_READ_ERROR,
    STATUS_NO_ACCOUNT,
)

MAX_JPEG_SCANS = 100
"""Most start-of-scan markers a JPEG may have. libjpeg decodes every scan over the whole coefficient buffer,
and the standard lets a scan be a few bytes (EOB runs), so a small file of thousands of scans costs minutes
of CPU (libjpeg-turbo's "LJT-01-003"; measured here: a 264 KB 4096x4096 JPEG with one scan repeated 5,000
times, 71 s against 0.10 s without the repeats; at this limit 1.1 s, see docs/reliability.md). Encoders
write about 10 (libjpeg's default progression) and rarely more than 20; DALI's decoder refuses more than
500. Counted as the bytes ``FF DA``, which entropy-coded data never contains (a 0xFF there is followed by
0x00 or a restart marker), so an embedded thumbnail's scans are counted too: an upper bound."""
SOS_MARKER = b"\xff\xda"

DEFAULT_MAX_PIXELS = 16_777_216
"""Largest accepted width x height (4096 x 4096): generous for avatars; one such image is 64 MiB decoded, and its
decode peaks at 66-275 MiB depending on the format (``scripts/decode_limits.py``, docs/reliability.md)."""

MAX_SIDE_PER_ROOT = 4
"""The longer side may be at most this many times the square root of ``max_pixels`` (16,384 at the default).

The pixel limit is an area, and a strip of that area costs far more than a square: Pillow keeps one row pointer
per line in each copy of an image, so a 1x16,777,216 PNG (32 KB) took 1.9 s and 736 MiB of resident memory
to decode, a transparent one (80 KB) 2.7 s and 1.1 GiB (``scripts/decode_limits.py`` with the decoder before
this limit, 2026-12-03; docs/reliability.md). No avatar is 16,384 pixels long."""

DEFAULT_ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP"})
"""Formats decoded by default, as Pillow names them after sniffing the content."""

RESAMPLE = Image.Resampling.BILINEAR
WHITE = (255, 255, 255)


class AvatarDecodeError(Exception):
    """Raised by :func:`decode_avatar_or_raise` for input that cannot be hashed."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DecodedAvatar:
    """Result of decoding one file. ``pixels`` is ``None`` unless ``status == 'ok'``."""

    status: str
    error: str | None = None
    pixels: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None


def max_side(max_pixels: int) -> int:
    """The longest side :func:`decode_avatar` accepts under ``max_pixels``: ``MAX_SIDE_PER_ROOT`` x its square root.

    >>> max_side(DEFAULT_MAX_PIXELS), max_side(1024 * 1024)
    (16384, 4096)
    """
    return MAX_SIDE_PER_ROOT * math.isqrt(max(max_pixels, 0))


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _clean_message(exc: BaseException) -> str:
    """Exception text without memory addresses, so reruns write identical rows."""
    return _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")[:500]


def sniff_format(prefix: bytes) -> str | None:
    """The image format whose signature ``prefix`` carries, by Pillow's prefix checks only.

    No parser runs: this only names what a disallowed file claims to be.
    """
    Image.init()
    return next((fmt for fmt in Image.ID if _accepts(Image.OPEN[fmt][1], prefix)), None)


def _accepts(accept: object, prefix: bytes) -> bool:
    """Pillow's prefix check for one format; one that trips on odd bytes is simply no match."""
    if not callable(accept):
        return False
    try:
        return bool(accept(prefix))
    except Exception:  # noqa: BLE001
        return False


GREY_BLOCK = 1 << 20
"""Pixels converted at a time from 16/32-bit grey to 8 bits: the float64 working copy of a 4096x4096 image
would be 128 MiB, and three of them were alive at once (448 MiB more resident memory for a 41 KB file)."""


def _grey8(values: np.ndarray, top: float | None) -> np.ndarray:
    """``values`` as float64, divided by ``top`` and times 255 (unless ``top`` is None), clipped to 0..255 and
    rounded, as uint8: computed in blocks of rows of about ``GREY_BLOCK`` pixels, each exactly as on the whole."""
    grey = np.empty(values.shape, np.uint8)
    rows = max(1, GREY_BLOCK // max(values.shape[1], 1))
    for start in range(0, values.shape[0], rows):
        block = values[start : start + rows].astype(np.float64)
        if top is not None:
            block = block / top * 255.0
        grey[start : start + rows] = np.clip(block, 0, 255).round()
    return grey


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, alpha composited on white; ``img`` itself when it is RGB already (no copy)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit grey: scale to 8 bits by the type's range instead of clipping.
        arr = np.asarray(img)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(_grey8(arr, top), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_grey8(np.asarray(img), None), "L").convert("RGB")
    if mode == "P" or mode == "PA" or (mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    elif mode == "LA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        background = Image.new("RGB", img.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


_TURNING_ORIENTATIONS = frozenset(range(2, 9))
"""EXIF orientations that flip or turn the stored pixels (1 is upright)."""


def oriented_rgb(img: Image.Image) -> Image.Image:
    """A loaded image turned upright by its EXIF orientation, as RGB (:func:`_to_rgb`); malformed EXIF is ignored.

    No full-size copy is made where nothing changes: ``ImageOps.exif_transpose``
    copies an image it does not turn, and at 4096x4096 each copy is 64 MiB. The
    result may be ``img`` itself, so it lives only as long as ``img`` does.
    """
    try:
        turned = img.getexif().get(ExifTags.Base.Orientation, 1) in _TURNING_ORIENTATIONS
        oriented = ImageOps.exif_transpose(img) if turned else img
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose an otherwise good image
        oriented = img
    return _to_rgb(oriented)  # type: ignore[arg-type]


def decode_avatar(
    data: bytes | bytearray | memoryview | None,
    *,
    size: int = INPUT_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: frozenset[str] = DEFAULT_ALLOWED_FORMATS,
    framing: str = "none",
) -> DecodedAvatar:
    """Decode image bytes into a ``(size, size, 3)`` uint8 array, never raising for bad input.

    Parameters
    ----------
    data
        The file's bytes.
    size
        Output side in pixels (the model's input size).
    max_pixels
        Largest width x height accepted; larger images get ``too_large``.
    allowed_formats
        Pillow format names to decode; others get ``unsupported_format``.
    framing
        One of :data:`silse_spark.framing.FRAMINGS` (``none``, ``moments``, ``moments-fill``,
        ``moments-bleed``, ``moments-bleed-levels``, ``moments-bleed-white``, ``moments-bleed-white-orient``,
        ``moments-bleed-white-mirror``, ``moments-margin``, ``moments-margin-white``): the model version's
        preprocessing.
        An unknown value is a programming error and raises ``ValueError``.
    """
    check_framing(framing)  # a programming error: raised here, not turned into a decode_error below
    if data is None or len(data) == 0:
        return DecodedAvatar(STATUS_EMPTY, "file is empty (0 bytes)")
    raw = bytes(data)
    refused = structure_error(raw, allowed_formats)
    if refused is not None:
        return DecodedAvatar(STATUS_TOO_LARGE, refused)
    try:
        with warnings.catch_warnings():
            # Pillow warns on stderr about odd metadata (one line per bad EXIF tag: 65,535 from one crafted file);
            # the row's status is the record of a file, so none reach the executor's log.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the allowed formats' parsers ever see the bytes (formats=...).
            with Image.open(io.BytesIO(raw), formats=sorted(allowed_formats)) as img:
                fmt = img.format or "unknown"
                width, height = img.size
                if width * height > max_pixels or width < 1 or height < 1:
                    return DecodedAvatar(
                        STATUS_TOO_LARGE,
                        f"image is {width}x{height} = {width * height} pixels; the limit is "
                        f"{max_pixels} pixels (max_pixels)",
                        width=width, height=height, format=fmt,
                    )
                longest = max_side(max_pixels)
                if max(width, height) > longest:
                    return DecodedAvatar(
                        STATUS_TOO_LARGE,
                        f"image is {width}x{height}; its longer side is above {longest} pixels "
                        f"({MAX_SIDE_PER_ROOT} x the square root of max_pixels): a strip this long costs a square "
                        "image's time and memory many times over",
                        width=width, height=height, format=fmt,
                    )
                img.seek(0)
                if fmt in ("JPEG", "MPO"):
                    scans = raw.count(SOS_MARKER)
                    if scans > MAX_JPEG_SCANS:
                        return DecodedAvatar(
                            STATUS_TOO_LARGE,
                            f"JPEG has {scans} scans; the limit is {MAX_JPEG_SCANS} (a progressive JPEG has about "
                            "10): decoding cost grows with every scan, so this is refused as a CPU-time bomb",
                            width=width, height=height, format=fmt,
                        )
                if fmt == "JPEG":
                    img.draft("RGB", (2 * size, 2 * size))
                img.load()
                rgb = oriented_rgb(img)
                resized = frame(rgb, size, RESAMPLE, framing)
                pixels = np.asarray(resized, dtype=np.uint8).copy()
    except Image.DecompressionBombError as exc:
        return DecodedAvatar(STATUS_TOO_LARGE, f"decompression bomb: {exc}")
    except Image.DecompressionBombWarning as exc:
        return DecodedAvatar(STATUS_TOO_LARGE, f"decompression bomb: {exc}")
    except MemoryError:
        return DecodedAvatar(STATUS_TOO_LARGE, "ran out of memory while decoding")
    except UnidentifiedImageError:
        sniffed = sniff_format(raw[:64])
        if sniffed is not None and sniffed not in allowed_formats:
            return DecodedAvatar(
                STATUS_UNSUPPORTED,
                f"detected format {sniffed} is not allowed; allowed: {sorted(allowed_formats)}",
                format=sniffed,
            )
        return DecodedAvatar(
            STATUS_DECODE_ERROR,
            "not a recognised image: the content matches no allowed image format signature",
        )
    except Exception as exc:  # any Pillow/codec failure is a bad record, not a crash
        return DecodedAvatar(STATUS_DECODE_ERROR, _clean_message(exc))
    if pixels.shape != (size, size, 3):
        return DecodedAvatar(STATUS_DECODE_ERROR, f"unexpected decoded shape {pixels.shape}")
    return DecodedAvatar(STATUS_OK, None, pixels, width, height, fmt)


def decode_avatar_or_raise(data: bytes, **kwargs: object) -> np.ndarray:
    """Like :func:`decode_avatar` but return the pixels or raise :class:`AvatarDecodeError`."""
    result = decode_avatar(data, **kwargs)  # type: ignore[arg-type]
    if result.status != STATUS_OK or result.pixels is None:
        raise AvatarDecodeError(result.status, result.error or result.status)
    return result.pixels


def decode_file(path: str, **kwargs: object) -> DecodedAvatar:
    """Read a local file and decode it; unreadable files get ``read_error``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return DecodedAvatar(STATUS_READ_ERROR, f"cannot read {path}: {exc}")
    return decode_avatar(data, **kwargs)  # type: ignore[arg-type]
