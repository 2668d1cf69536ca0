"""Write the hostile-input corpus in tests/data/hostile (committed; rerun to regenerate).

Each file exercises one decoding path: alpha, grey, palette with transparency,
EXIF rotation, CMYK, 16-bit, animation, 1x1, extreme aspect ratio, and broken
or hostile files (zero bytes, truncated PNG/JPEG, text/HTML/SVG named as
images, a 30000x30000 decompression bomb, a JPEG whose header claims 65000x65000,
a PNG whose compressed text chunk inflates to 50 MB, JPEGs with thousands of scans or
of fill bytes before the first marker, multi-page TIFF, BMP). An unreadable
path (a dangling link) is made by the tests themselves, as git cannot hold one.

    python scripts/make_test_images.py
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "hostile"


def _pattern(size: int = 96) -> Image.Image:
    """A deterministic, asymmetric RGB test pattern (so rotation is visible)."""
    y, x = np.mgrid[0:size, 0:size]
    arr = np.stack([(x * 255 // size), (y * 255 // size), ((x + 2 * y) % 64) * 4], axis=-1)
    arr[: size // 4, : size // 2] = (250, 20, 20)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int = 30000) -> bytes:
    """A 1-bit PNG of side x side pixels that compresses to ~100 KB."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def jpeg_huge_header(side: int = 65000) -> bytes:
    """A 16x16 JPEG whose frame header (SOF0) claims ``side`` x ``side`` pixels: refused from the header alone."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)  # marker, length (2), precision (1), height, width
    return bytes(data)


def png_text_bomb(inflated: int = 50_000_000) -> bytes:
    """A valid 64x64 PNG with a zTXt chunk of ``inflated`` bytes that compresses to ~50 KB (a metadata bomb)."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, format="PNG")
    png = buf.getvalue()
    text = _png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"A" * inflated, 9))
    iend = png.rfind(b"IEND") - 4  # the IEND chunk's length field
    return png[:iend] + text + png[iend:]


def jpeg_scan_bomb(side: int = 1024, repeats: int = 500) -> bytes:
    """A progressive JPEG with one of its small AC scans repeated ``repeats`` times (a CPU-time bomb).

    libjpeg decodes each scan over the whole image however few bytes it has ("LJT-01-003"), so the cost
    grows with the number of scans, not with the file size.
    """
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 200)).save(buf, format="JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xDA, 0xD9)]
    scans = [data[a:b] for a, b in zip(starts, starts[1:])]  # each SOS segment up to the next marker
    smallest = min(scans[1:], key=len)
    return data[: starts[-1]] + smallest * repeats + data[starts[-1]:]


def jpeg_fill_bomb(fill: int = 70_000) -> bytes:
    """A small JPEG with ``fill`` 0xFF fill bytes before its first marker (a CPU-time bomb).

    The standard allows any number of them and Pillow reads them one at a time in Python: 4 MiB of fill
    costs 2 s; the container limits (silse_spark.containers) refuse it from the bytes.
    """
    buf = io.BytesIO()
    _pattern(32).save(buf, format="JPEG", quality=80)
    data = buf.getvalue()
    return data[:2] + b"\xff" * fill + data[2:]


def save(img: Image.Image, name: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    fmt = kwargs.pop("format", None) or name.rsplit(".", 1)[1].upper().replace("JPG", "JPEG")
    img.save(buf, format=fmt, **kwargs)
    data = buf.getvalue()
    (OUT / name).write_bytes(data)
    return data


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    base = _pattern()
    save(base, "rgb.png")
    rgba = base.convert("RGBA")
    alpha = np.array(rgba)
    alpha[:, :48, 3] = 0  # left half fully transparent -> must become white
    save(Image.fromarray(alpha, "RGBA"), "alpha.png")
    save(base.convert("L"), "grey.png")
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save(pal, "palette_transparent.gif", transparency=0)
    save(base.convert("LA"), "grey_alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save(base.rotate(90, expand=True), "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    save(base, "upright.jpg", quality=95)
    save(base.convert("CMYK"), "cmyk.jpg", quality=95)
    arr16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(arr16).save(OUT / "grey16.png")
    frames = [base, base.rotate(180)]
    frames[0].save(OUT / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(OUT / "animated_webp.webp", save_all=True, append_images=frames[1:], duration=100)
    save(base, "tiff_image.tif", format="TIFF")
    base.save(OUT / "multipage.tif", save_all=True, append_images=[base.rotate(90), base.rotate(180)])
    save(base, "bmp_image.bmp", format="BMP")
    save(Image.new("RGB", (1, 1), (10, 200, 30)), "one_pixel.png")
    save(_pattern(96).resize((600, 6)), "wide.png")
    save(Image.new("L", (1, 20000), 40), "strip.png")  # within the pixel limit, longer than max_side allows
    good_png = (OUT / "rgb.png").read_bytes()
    (OUT / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    good_jpg = (OUT / "upright.jpg").read_bytes()
    (OUT / "truncated_jpeg.jpg").write_bytes(good_jpg[: len(good_jpg) // 3])
    (OUT / "empty.png").write_bytes(b"")
    (OUT / "text_named.jpg").write_bytes(b"this is a text file, not a JPEG\n")
    (OUT / "html_named.png").write_bytes(b"<!doctype html><html><body><img src=x></body></html>\n")
    (OUT / "svg_image.png").write_bytes(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    )
    (OUT / "bomb.png").write_bytes(png_bomb())
    (OUT / "huge_header.jpg").write_bytes(jpeg_huge_header())
    (OUT / "text_bomb.png").write_bytes(png_text_bomb())
    save(base, "progressive.jpg", quality=90, progressive=True)
    (OUT / "scan_bomb.jpg").write_bytes(jpeg_scan_bomb())
    (OUT / "fill_bomb.jpg").write_bytes(jpeg_fill_bomb())
    (OUT / "rgb_as_jpg_name.jpg").write_bytes(good_png)  # a PNG with the wrong extension decodes fine


if __name__ == "__main__":
    main()
