"""A compact, lossless pack of the training corpus, to carry to a machine that cannot build it.

``make data`` builds ``train.npy`` (about 1 GB of 128x128 RGB canvases) from
Debian and npm packages; a GPU machine lent for a few minutes can reach
neither registry and takes a limited upload (64 MiB a call here). ``pack``
writes a deterministic random sample of the canvases, each as lossless WebP
(about 3.3 KB an avatar), into one ``.npz`` no larger than ``--max-mib``;
``unpack`` decodes one or more packs back into a ``train.npy`` that
:mod:`silse_spark.training.train` reads as usual. Each pack records the
SHA-256 of the raw pixels it holds, and ``unpack`` checks it, so the
canvases trained on there are bit for bit the ones packed here.

The upload budget is shared with the repository's tracked files (54 MiB on
2026-12-02, mostly model weights) and everything else carried (the wheels in
``.whl``, the rest of ``work/device``), so by default ``pack`` measures what
is left (:func:`carry_room_mib`: ``git ls-files`` plus those paths, less a
1 MiB margin) and fills that: about 6.4 MiB, some 2,000 canvases, on
2026-12-02. ``--parts P --part K`` splits the corpus's random order into ``P``
disjoint parts, one pack each, to carry in successive calls and unpack together.

Usage::

    python -m silse_spark.training.pack pack --data work/training --output work/device/train-pack.npz
    python -m silse_spark.training.pack unpack --pack work/device/train-pack.npz --data /tmp/train

Example
-------
>>> import tempfile, pathlib
>>> canvases = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
>>> with tempfile.TemporaryDirectory() as tmp:
...     src, dst = pathlib.Path(tmp, "src"), pathlib.Path(tmp, "dst")
...     src.mkdir(); np.save(src / "train.npy", canvases)
...     summary = pack(src, pathlib.Path(tmp, "p.npz"), max_mib=1)
...     _ = unpack(pathlib.Path(tmp, "p.npz"), dst)
...     back = np.load(dst / "train.npy")
>>> summary["images"], np.array_equal(back, canvases)   # all three fit, stored in corpus order
(3, True)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import subprocess  # nosec B404  # git ls-files only, argument list without a shell
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

FORMAT = "silse-train-pack-1"
"""Written into every pack; ``unpack`` refuses other formats."""


class PackError(ValueError):
    """A pack that is missing, of another format, or whose pixels do not match their checksum."""


CARRY_MIB = 64.0
"""What one call to the lent GPU machine carries: the repository's tracked files plus the ignored paths named."""
MARGIN_MIB = 1.0
"""Left free by :func:`carry_room_mib` (the pack's index and archive overhead, files added before the call)."""
CARRIED = (Path(".whl"), Path("work/device"))
"""What ``scripts/device_train.sh`` needs carried besides the tracked files."""


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def carry_room_mib(repo: Path, carried: Sequence[Path] = CARRIED, exclude: Path | None = None) -> float | None:
    """MiB left for a pack in one device call: :data:`CARRY_MIB` less the tracked files of the git checkout
    ``repo``, the ``carried`` paths (relative to ``repo``; ``exclude``, the pack about to be rewritten, not
    counted) and :data:`MARGIN_MIB`. ``None`` when ``repo`` is not a git checkout (or git is missing)."""
    try:
        listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"],  # nosec B603 B607  # fixed arguments
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    tracked = sum(_size(repo / name) for name in listed.decode("utf-8", "replace").split("\0") if name)
    other = sum(_size(repo / path) for path in carried)
    if exclude is not None and exclude.is_file() and any(
            exclude.resolve().is_relative_to((repo / path).resolve()) for path in carried):
        other -= exclude.stat().st_size
    return (CARRY_MIB * 2**20 - tracked - other) / 2**20 - MARGIN_MIB


def encode_canvas(canvas: np.ndarray) -> bytes:
    """One uint8 RGB canvas as lossless WebP bytes (decoded back exactly by :func:`decode_canvas`)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(canvas), "RGB").save(buf, "WEBP", lossless=True, quality=50, method=4)
    return buf.getvalue()


def decode_canvas(data: bytes) -> np.ndarray:
    """WebP bytes from :func:`encode_canvas` -> the uint8 RGB canvas."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def pack(data_dir: Path, output: Path, max_mib: float = 16.0, seed: int = 0, part: int = 0, parts: int = 1
         ) -> dict[str, Any]:
    """Write a pack of ``data_dir/train.npy`` canvases to ``output``, at most ``max_mib`` MiB of image bytes.

    Canvases are taken in a random order fixed by ``seed`` (a prefix of the
    corpus would hold only its first sources), from part ``part`` of
    ``parts`` equal slices of that order, until the budget is spent, and
    stored in corpus order. Returns the pack's summary (also stored in it).
    """
    if not 0 <= part < parts:
        raise PackError(f"part {part} of {parts}: expected 0 <= part < parts")
    source = data_dir / "train.npy"
    if not source.is_file():
        raise PackError(f"{source} not found; build the corpus first with `make data`")
    canvases = np.load(source, mmap_mode="r")
    if canvases.ndim != 4 or canvases.shape[-1] != 3 or canvases.dtype != np.uint8:
        raise PackError(f"{source} holds {canvases.dtype} {canvases.shape}; expected uint8 (n, height, width, 3)")
    budget = int(max_mib * 2**20)
    order = np.array_split(np.random.default_rng(seed).permutation(len(canvases)), parts)[part]
    chosen: list[int] = []
    blobs: dict[int, bytes] = {}
    total = 0
    for i in order:
        data = encode_canvas(np.asarray(canvases[i]))
        if total + len(data) > budget:
            break
        chosen.append(int(i))
        blobs[int(i)] = data
        total += len(data)
    if not chosen:
        raise PackError(f"--max-mib {max_mib} holds no canvas; give at least {len(data) / 2**20:.3f}")
    chosen.sort()
    digest = hashlib.sha256()
    for i in chosen:
        digest.update(np.ascontiguousarray(canvases[i]).tobytes())
    offsets = np.cumsum([0] + [len(blobs[i]) for i in chosen]).astype(np.int64)
    summary = {"format": FORMAT, "images": len(chosen), "of": len(canvases), "image_bytes": total,
               "shape": list(canvases.shape[1:]), "pixels_sha256": digest.hexdigest(), "seed": seed,
               "part": part, "parts": parts}
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as fh:
        np.savez(fh, blob=np.frombuffer(b"".join(blobs[i] for i in chosen), dtype=np.uint8), offsets=offsets,
                 index=np.asarray(chosen, dtype=np.int64), summary=np.asarray(json.dumps(summary)))
    log.info("packed %d of %d canvases, %.1f MiB -> %s", len(chosen), len(canvases), total / 2**20, output)
    return summary


def _read_pack(pack_path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    if not pack_path.is_file():
        raise PackError(f"{pack_path} not found; write it with `python -m silse_spark.training.pack pack`")
    with np.load(pack_path, allow_pickle=False) as z:
        try:
            summary = json.loads(str(z["summary"]))
            blob, offsets = z["blob"], z["offsets"]
        except KeyError as exc:
            raise PackError(f"{pack_path} is not a training pack (no {exc}); expected one from "
                            f"`python -m silse_spark.training.pack pack`") from None
    if summary.get("format") != FORMAT:
        raise PackError(f"{pack_path} has format {summary.get('format')!r}; this code reads {FORMAT!r}")
    return summary, blob, offsets


def unpack(pack_paths: Path | Sequence[Path], data_dir: Path) -> dict[str, Any]:
    """Decode one or more packs into ``data_dir/train.npy`` (in the order given).

    Raises :class:`PackError` when a pack is missing or damaged (its pixels do
    not match its SHA-256) or when the packs hold canvases of different sizes.
    """
    paths = [pack_paths] if isinstance(pack_paths, Path) else list(pack_paths)
    packs = [_read_pack(p) for p in paths]
    shapes = {tuple(summary["shape"]) for summary, _, _ in packs}
    if len(shapes) != 1:
        raise PackError(f"the packs hold canvases of different shapes {sorted(shapes)}; unpack them separately")
    n = sum(len(offsets) - 1 for _, _, offsets in packs)
    data_dir.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(data_dir / "train.npy", mode="w+", dtype=np.uint8, shape=(n, *shapes.pop()))
    row = 0
    for path, (summary, blob, offsets) in zip(paths, packs):
        digest = hashlib.sha256()
        for k in range(len(offsets) - 1):
            try:
                canvas = decode_canvas(blob[offsets[k]: offsets[k + 1]].tobytes())
                out[row] = canvas
            except (OSError, ValueError, SyntaxError) as exc:
                raise PackError(f"{path}: canvas {k} does not decode ({exc}); the file is damaged, "
                                f"write it again") from None
            row += 1
            digest.update(canvas.tobytes())
        if digest.hexdigest() != summary["pixels_sha256"]:
            raise PackError(f"{path}: decoded pixels do not match the pack's SHA-256; the file is damaged, "
                            f"write it again")
    out.flush()
    log.info("unpacked %d canvases from %d pack(s) -> %s", n, len(paths), data_dir / "train.npy")
    return {"format": FORMAT, "images": n, "packs": [str(p) for p in paths]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m silse_spark.training.pack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="write a pack of a corpus's train.npy")
    p.add_argument("--data", type=Path, required=True, help="corpus folder from `make data`")
    p.add_argument("--output", type=Path, required=True, help="the .npz to write")
    p.add_argument("--max-mib", type=float, default=None,
                   help=f"image bytes at most (default: what one device call has left of its {CARRY_MIB:g} MiB "
                        "after the tracked files, .whl and the rest of work/device, less 1 MiB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--part", type=int, default=0, help="which of --parts disjoint parts to pack (default 0)")
    p.add_argument("--parts", type=int, default=1, help="number of disjoint parts (default 1)")
    u = sub.add_parser("unpack", help="decode packs into DATA/train.npy")
    u.add_argument("--pack", type=Path, required=True, nargs="+", help="one or more packs")
    u.add_argument("--data", type=Path, required=True, help="folder to write train.npy into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "pack":
            max_mib = args.max_mib
            if max_mib is None:
                room = carry_room_mib(Path.cwd(), exclude=args.output)
                if room is None:
                    raise PackError("not in a git checkout, so the room left in a device call is unknown: run from "
                                    "the repository root or give --max-mib")
                if room < 1:
                    raise PackError(f"one device call carries {CARRY_MIB:g} MiB and the tracked files, .whl and "
                                    f"work/device leave {room + MARGIN_MIB:.1f} MiB: remove other packs from "
                                    "work/device, or give --max-mib")
                max_mib = room
                log.info("%.1f MiB left in a device call after the tracked files and the carried paths", room)
            summary = pack(args.data, args.output, max_mib, args.seed, args.part, args.parts)
        else:
            summary = unpack(args.pack, args.data)
    except PackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
