"""Decoding every kind of upload into the model input, or into a status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE_STATUS
from PIL import Image

from silse_spark.decode import (
    STATUS_OK,
    STATUS_TOO_LARGE,
    STATUS_UNSUPPORTED,
    decode_avatar,
    decode_file,
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
