"""Classical image hashers behind one interface, for comparison with silse.

Every hasher turns one image file into an integer code of a fixed number of
bits (``nbits``) or ``None`` when the file cannot be hashed. Codes are
compared by Hamming distance, so a hasher only has to say how many bits it
emits and how it reads a file.

Hashers
-------
``md5``
    MD5 of the file's bytes (128 bits): the exact-duplicate baseline, which
    by construction recalls no altered copy.
``ahash``, ``phash``, ``dhash``, ``whash``
    ``imagehash`` 4.x average, perceptual (DCT), difference and wavelet
    hashes at ``hash_size=8`` (64 bits).
``pdq``
    Meta's PDQ (``pdqhash`` package), 256 bits.

The perceptual hashers see the image exactly as silse's production decoder
prepares it before resizing: first frame, EXIF orientation applied,
transparency composited on white, RGB. So every hasher scores the same
pixels, and a difference in scores is a difference between the methods.

Example
-------
>>> from PIL import Image
>>> from silse_spark.variations import encode
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "red.png")
>>> _ = open(path, "wb").write(encode(Image.new("RGB", (32, 32), "red")))
>>> HASHERS["ahash"].nbits, HASHERS["ahash"].hash_file(path)
(64, 0)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


def load_rgb(path: str) -> Image.Image:
    """Open an image file as RGB the way :func:`silse_spark.decode.decode_avatar` does.

    First frame, EXIF orientation applied, any mode converted to RGB with
    alpha composited on white. The image keeps its size.

    Raises
    ------
    OSError
        If Pillow cannot read the file.

    Examples
    --------
    >>> from silse_spark.variations import encode
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> _ = open(path, "wb").write(encode(Image.new("RGBA", (5, 4))))
    >>> load_rgb(path).mode, load_rgb(path).size
    ('RGB', (5, 4))
    """
    # The decoder's private mode conversion is reused so that "the same image"
    # means the same pixels for every hasher, silse included.
    from silse_spark.decode import oriented_rgb

    with Image.open(path) as img:
        img.seek(0)
        img.load()
        rgb = oriented_rgb(img)
        return rgb.copy() if rgb is img else rgb  # img is closed on leaving the block


def int_from_bool_bits(bits: np.ndarray) -> int:
    """Pack a flat array of bits (first bit most significant) into an int.

    Examples
    --------
    >>> int_from_bool_bits(np.array([1, 0, 1]))
    5
    """
    flat = np.asarray(bits).astype(bool).ravel()
    return int("".join("1" if b else "0" for b in flat) or "0", 2)


@dataclass(frozen=True)
class Hasher:
    """One hashing method: a name, a code length and a function of a file path.

    Parameters
    ----------
    name
        Short name used as the key in reports.
    nbits
        Number of bits of every code it returns.
    hash_file
        Function from a file path to the code as an int in ``[0, 2**nbits)``,
        or ``None`` if the file cannot be hashed.
    description
        One line for the report.
    hash_image
        For hashers of pixels: the same code from an image already opened by
        :func:`load_rgb`, so that :func:`hash_files_many` decodes each file once.
    """

    name: str
    nbits: int
    hash_file: Callable[[str], int | None]
    description: str = ""
    hash_image: Callable[[Image.Image], int] | None = None


def md5_file(path: str) -> int | None:
    """MD5 of the file's bytes as a 128-bit int (``None`` if unreadable).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x")
    >>> _ = open(path, "wb").write(b"")
    >>> hex(md5_file(path))
    '0xd41d8cd98f00b204e9800998ecf8427e'
    """
    try:
        with open(path, "rb") as fh:
            # Not a security use: MD5 is the exact-duplicate baseline being scored.
            return int(hashlib.md5(fh.read(), usedforsecurity=False).hexdigest(), 16)
    except OSError as exc:
        log.warning("md5: cannot read %s: %s", path, exc)
        return None


def _file_hasher(hash_image: Callable[[Image.Image], int], name: str) -> Callable[[str], int | None]:
    def hash_file(path: str) -> int | None:
        try:
            img = load_rgb(path)
        except Exception as exc:  # noqa: BLE001 - a bad file is a missing code, not a crash
            log.warning("%s: cannot decode %s: %s", name, path, exc)
            return None
        return hash_image(img)

    hash_file.__name__ = f"{name}_file"
    return hash_file


def _imagehash(method_name: str) -> Callable[[Image.Image], int]:
    def hash_image(img: Image.Image) -> int:
        import imagehash

        return int_from_bool_bits(getattr(imagehash, method_name)(img, hash_size=8).hash)

    hash_image.__name__ = method_name
    return hash_image


def pdq_image(img: Image.Image) -> int:
    """PDQ hash of an RGB image as a 256-bit int.

    The quality score PDQ returns is dropped: the evaluation scores every
    code, as silse's job does.

    Examples
    --------
    >>> pdq_image(Image.new("RGB", (64, 64), "white")).bit_length() <= 256
    True
    """
    import pdqhash  # type: ignore[import-untyped]

    vector, _quality = pdqhash.compute(np.ascontiguousarray(np.asarray(img, dtype=np.uint8)))
    return int_from_bool_bits(vector)


def _pixel_hasher(name: str, nbits: int, hash_image: Callable[[Image.Image], int], description: str) -> Hasher:
    return Hasher(name, nbits, _file_hasher(hash_image, name), description, hash_image)


HASHERS: dict[str, Hasher] = {
    "md5": Hasher("md5", 128, md5_file, "MD5 of the file bytes"),
    "ahash": _pixel_hasher("ahash", 64, _imagehash("average_hash"), "imagehash average hash, 8x8"),
    "phash": _pixel_hasher("phash", 64, _imagehash("phash"), "imagehash perceptual (DCT) hash, 8x8"),
    "dhash": _pixel_hasher("dhash", 64, _imagehash("dhash"), "imagehash difference hash, 8x8"),
    "whash": _pixel_hasher("whash", 64, _imagehash("whash"), "imagehash wavelet (Haar) hash, 8x8"),
    "pdq": _pixel_hasher("pdq", 256, pdq_image, "Meta PDQ (pdqhash package), quality score ignored"),
}
"""The classical hashers, in report order."""


def hash_files(hasher: Hasher, paths: list[str]) -> list[int | None]:
    """Hash every file with one hasher, in order.

    Examples
    --------
    >>> hash_files(HASHERS["md5"], [])
    []
    """
    return hash_files_many([hasher], paths)[hasher.name]


def hash_files_many(hashers: list[Hasher], paths: list[str]) -> dict[str, list[int | None]]:
    """Hash every file with several hashers, decoding each file once.

    Returns
    -------
    dict
        Hasher name -> list of codes aligned with ``paths`` (``None`` where a
        file gave no code).

    Examples
    --------
    >>> hash_files_many([HASHERS["md5"], HASHERS["phash"]], [])
    {'md5': [], 'phash': []}
    """
    codes: dict[str, list[int | None]] = {h.name: [] for h in hashers}
    pixel_hashers = [h for h in hashers if h.hash_image is not None]
    for path in paths:
        img: Image.Image | None = None
        if pixel_hashers:
            try:
                img = load_rgb(path)
            except Exception as exc:  # noqa: BLE001 - a bad file is a missing code, not a crash
                log.warning("cannot decode %s: %s", path, exc)
        for h in hashers:
            if h.hash_image is None:
                codes[h.name].append(h.hash_file(path))
            else:
                codes[h.name].append(None if img is None else h.hash_image(img))
    for name, values in codes.items():
        missing = sum(c is None for c in values)
        if missing:
            log.warning("%s: %d of %d files gave no code", name, missing, len(paths))
    return codes
