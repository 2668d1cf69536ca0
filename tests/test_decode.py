"""Decoding every kind of upload into the model input, or into a status."""

from __future__ import annotations

import io
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE_STATUS
from PIL import Image

from silse_spark import decode as decode_module
from silse_spark.decode import (
    STATUS_OK,
    STATUS_TOO_LARGE,
    STATUS_UNSUPPORTED,
    decode_avatar,
    decode_file,
    max_side,
)
from silse_spark.framing import FRAMINGS
from silse_spark.variations import encode

IMAGES = Path(__file__).resolve().parent / "data" / "hostile"


def decode(name: str, framing: str = "none"):  # noqa: ANN201
    return decode_avatar((IMAGES / name).read_bytes(), framing=framing)


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name, status", sorted(HOSTILE_STATUS.items()))
def test_each_fixture_gets_its_status(name: str, status: str, framing: str) -> None:
    result = decode(name, framing)
    assert result.status == status, result.error
    if status == STATUS_OK:
        assert result.pixels is not None and result.pixels.shape == (108, 108, 3)
        assert result.pixels.dtype == np.uint8 and result.error is None
    else:
        assert result.pixels is None and result.error


def test_jpeg_scans_are_limited_at_exactly_the_bound() -> None:
    """A JPEG with MAX_JPEG_SCANS scans decodes; one more scan is refused as a CPU-time bomb, from the bytes alone."""
    from silse_spark.decode import MAX_JPEG_SCANS, SOS_MARKER

    data = (IMAGES / "progressive.jpg").read_bytes()
    first = data.index(SOS_MARKER)
    scans = data[first:].split(SOS_MARKER)[1:]
    # Repeat the last refinement scan: its segment up to the end-of-image marker.
    extra = SOS_MARKER + scans[-1][: scans[-1].rindex(b"\xff\xd9")]
    needed = MAX_JPEG_SCANS - len(scans)
    at_limit = data[:-2] + extra * needed + data[-2:]
    assert at_limit.count(SOS_MARKER) == MAX_JPEG_SCANS
    assert decode_avatar(at_limit).status == STATUS_OK
    over = decode_avatar(at_limit[:-2] + extra + at_limit[-2:])
    assert over.status == STATUS_TOO_LARGE and over.pixels is None
    assert f"JPEG has {MAX_JPEG_SCANS + 1} scans; the limit is {MAX_JPEG_SCANS}" in (over.error or "")


def _pad_jpeg(data: bytes, steps: int) -> bytes:
    """``steps`` more header steps: empty comment segments, then 0xFF fill bytes before the first marker."""
    comments = steps // 2
    return data[:2] + b"\xff" * (steps - comments) + b"\xff\xfe\x00\x02" * comments + data[2:]


def _pad_png(data: bytes, chunks: int) -> bytes:
    """``chunks`` more chunks: empty unknown ancillary chunks after the header chunk."""
    chunk = (0).to_bytes(4, "big") + b"abCd" + zlib.crc32(b"abCd").to_bytes(4, "big")
    return data[:33] + chunk * chunks + data[33:]


def _pad_gif(data: bytes, blocks: int) -> bytes:
    """``blocks`` more blocks: a comment extension of one-byte sub-blocks, then stray bytes."""
    flags = data[10]
    start = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    sub_blocks = blocks // 2
    comment = b"\x21\xfe" + b"\x01A" * sub_blocks + b"\x00"  # the extension, its sub-blocks, the terminator
    return data[:start] + comment + b"\x05" * (blocks - sub_blocks - 2) + data[start:]


@pytest.mark.parametrize("fmt, fixture, pad, limit_name", [
    ("JPEG", "upright.jpg", _pad_jpeg, "MAX_JPEG_HEADER_STEPS"),
    ("PNG", "rgb.png", _pad_png, "MAX_PNG_CHUNKS"),
    ("GIF", "palette_transparent.gif", _pad_gif, "MAX_GIF_BLOCKS"),
])
def test_container_structure_is_limited_at_exactly_the_bound(fmt: str, fixture: str, pad, limit_name: str) -> None:  # noqa: ANN001
    """Markers, chunks or blocks that Pillow parses one at a time: a file at the limit decodes to the same pixels,
    one more is refused before Pillow sees it."""
    from silse_spark import containers

    limit = getattr(containers, limit_name)
    counter = {"JPEG": containers.jpeg_header_steps, "PNG": containers.png_chunks,
               "GIF": containers.gif_blocks_before_image}[fmt]
    data = (IMAGES / fixture).read_bytes()
    base = counter(data)
    assert 0 < base < 30
    at_limit = pad(data, limit - base)
    assert counter(at_limit) == limit
    decoded = decode_avatar(at_limit)
    assert decoded.status == STATUS_OK and decoded.format == fmt, decoded.error
    np.testing.assert_array_equal(decoded.pixels, decode_avatar(data).pixels)
    over = decode_avatar(pad(data, limit - base + 1))
    assert over.status == STATUS_TOO_LARGE and over.pixels is None
    assert over.error == containers.structure_error(pad(data, limit - base + 1))
    assert f"{fmt} has more than {limit} " in over.error
    # Not checked for a format the job does not decode: its parser never sees the bytes.
    other = decode_avatar(pad(data, limit - base + 1), allowed_formats=frozenset({"WEBP"}))
    assert other.status == STATUS_UNSUPPORTED


def test_metadata_warnings_do_not_reach_the_log() -> None:
    """A PNG whose EXIF claims 500 tags past its end: Pillow warns once per tag; the decoder keeps them all quiet."""
    import warnings

    entries = 500
    exif = b"II*\x00" + (8).to_bytes(4, "little") + entries.to_bytes(2, "little")
    exif += b"".join((0x9000 + k).to_bytes(2, "little") + (4).to_bytes(2, "little") + (10**6).to_bytes(4, "little")
                     + (8).to_bytes(4, "little") for k in range(entries)) + bytes(4)
    chunk = len(exif).to_bytes(4, "big") + b"eXIf" + exif + zlib.crc32(b"eXIf" + exif).to_bytes(4, "big")
    png = (IMAGES / "rgb.png").read_bytes()
    data = png[:33] + chunk + png[33:]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with Image.open(io.BytesIO(data)) as img:
            img.getexif()
        assert len(seen) >= entries  # Pillow's own behaviour: one warning per tag
        seen.clear()
        result = decode_avatar(data)
    assert result.status == STATUS_OK
    assert seen == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bomb check still works: it is an error inside the decoder
        assert decode("bomb.png").status == STATUS_TOO_LARGE


def test_format_is_detected_from_content_not_name() -> None:
    assert decode("rgb_as_jpg_name.jpg").format == "PNG"
    assert "TIFF" in (decode("tiff_image.tif").error or "")


def test_transparent_pixels_become_white() -> None:
    pixels = decode("alpha.png").pixels
    assert pixels is not None
    assert (pixels[:, :50] == 255).all()
    assert not (pixels[:, 60:] == 255).all()


def test_exif_orientation_is_applied() -> None:
    upright = decode("upright.jpg").pixels.astype(int)  # type: ignore[union-attr]
    rotated = decode("exif_rotated.jpg").pixels.astype(int)  # type: ignore[union-attr]
    assert np.abs(upright - rotated).mean() < 4  # same picture, up to JPEG noise
    assert np.abs(upright - np.rot90(rotated)).mean() > 20


def test_sixteen_bit_grey_matches_eight_bit_grey() -> None:
    a = decode("grey16.png").pixels.astype(int)  # type: ignore[union-attr]
    b = decode("grey.png").pixels.astype(int)  # type: ignore[union-attr]
    assert np.abs(a - b).max() <= 1


def test_pixel_limit_is_configurable_and_checked_before_decoding() -> None:
    data = encode(Image.new("RGB", (200, 200), "white"))
    assert decode_avatar(data, max_pixels=200 * 200).status == STATUS_OK
    result = decode_avatar(data, max_pixels=200 * 200 - 1)
    assert result.status == STATUS_TOO_LARGE and "39999" in (result.error or "")


def test_allowed_formats_are_configurable() -> None:
    data = (IMAGES / "tiff_image.tif").read_bytes()
    assert decode_avatar(data, allowed_formats=frozenset({"TIFF"})).status == STATUS_OK


def test_error_messages_are_reproducible() -> None:
    # No memory addresses: rerunning a job must write identical rows.
    assert decode("text_named.jpg").error == decode("text_named.jpg").error
    assert "0x" not in (decode("truncated.png").error or "")


def test_unreadable_file_is_a_read_error(tmp_path: Path) -> None:
    result = decode_file(str(tmp_path / "missing.png"))
    assert result.status == "read_error" and "missing.png" in (result.error or "")


def test_disallowed_parsers_never_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import TiffImagePlugin

    def explode(self: object) -> None:
        raise AssertionError("the TIFF parser ran on a disallowed file")

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "_open", explode)
    result = decode("tiff_image.tif")
    assert result.status == STATUS_UNSUPPORTED and result.format == "TIFF"


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_longer_side_is_bounded_exactly() -> None:
    # max_pixels 10,000 -> max_side 400: a 1x400 strip decodes, 1x401 and 401x1 are refused from the header.
    assert max_side(10_000) == 400
    assert decode_avatar(_png(Image.new("L", (1, 400), 90)), max_pixels=10_000).status == STATUS_OK
    for size in ((1, 401), (401, 1)):
        refused = decode_avatar(_png(Image.new("L", size, 90)), max_pixels=10_000)
        assert refused.status == STATUS_TOO_LARGE and refused.pixels is None
        assert "longer side is above 400 pixels" in (refused.error or "")
        assert (refused.width, refused.height) == size
    # The default limit: a strip 16,385 pixels long is refused, 16,384 is decoded.
    assert decode_avatar(_png(Image.new("L", (2, 16_385), 90))).status == STATUS_TOO_LARGE
    assert decode_avatar(_png(Image.new("L", (2, 16_384), 90))).status == STATUS_OK


@pytest.mark.parametrize("kind", ["I;16", "I", "F"])
def test_wide_grey_is_converted_in_blocks_exactly_as_whole(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    made: dict[str, np.ndarray] = {"I;16": rng.integers(0, 65_536, (37, 23)).astype(np.uint16),
                                   "I": rng.integers(0, 70_000, (37, 23)).astype(np.int32),
                                   "F": (rng.random((37, 23)) * 300 - 20).astype(np.float32)}
    values = made[kind]
    top = {"I;16": 65535.0, "I": 65535.0, "F": None}[kind]
    whole = values.astype(np.float64) if top is None else values.astype(np.float64) / top * 255.0
    expected = np.clip(whole, 0, 255).round().astype(np.uint8)
    monkeypatch.setattr(decode_module, "GREY_BLOCK", 50)  # two rows of 23 pixels a block: 19 blocks
    assert np.array_equal(decode_module._grey8(values, top), expected)
    img = Image.fromarray(values)
    assert np.array_equal(np.asarray(decode_module._to_rgb(img))[..., 0], expected)


def test_no_full_size_copies_while_decoding(tmp_path: Path) -> None:
    """A 4096x4096 image once took three copies of itself (the EXIF step, the RGB conversion, the alpha paste):
    194 MiB more resident memory for a white RGB PNG, 336 MiB for a transparent one (64 MiB each decoded)."""
    script = (
        "import io, resource, sys\n"
        "from PIL import Image\n"
        "from silse_spark.decode import decode_avatar\n"
        "buf = io.BytesIO(); Image.new(sys.argv[1], (4096, 4096), 0).save(buf, 'PNG'); data = buf.getvalue()\n"
        "decode_avatar(data[:100] + b'x')\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert decode_avatar(data).status == 'ok'\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    grown = {}
    for mode in ("RGB", "RGBA"):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        grown[mode] = int(done.stdout.split()[-1])
    # Decoded, an image of either mode is 64 MiB; RGBA adds the white background it is pasted on and its alpha.
    assert grown["RGB"] < 100 and grown["RGBA"] < 200, grown
