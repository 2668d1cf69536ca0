"""``silse``: the analyst's command line, using the same decoder and model as the Spark job.

    silse hash IMAGE...                 print each path with its twin value
    silse compare A B [--radius R]      both codes, their Hamming distance and the verdict
    silse match IMAGE --hashes DIR      accounts of the latest night (or --run-date) within --radius (default 2)
    silse gallery --clusters DIR --hashes DIR --output report.html
                                        a self-contained HTML page of the largest clusters
    silse models [--verify]             the registered model versions (``--model`` values), the
                                        default marked; ``--verify`` checks each weights file's SHA-256

Exit codes: 0 done, 1 a file could not be hashed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from silse_spark.codes import hamming_distance, int_from_twin_value, twin_values_from_outputs
from silse_spark.decode import STATUS_OK, decode_file
from silse_spark.gallery import DEFAULT_MEMBERS, GalleryError, night_batches, night_dataset, run_dates, write_gallery
from silse_spark.model import ModelIntegrityError, UnknownModelError

DEFAULT_RADIUS = 2


class CliError(Exception):
    """A user-facing error: the message is printed and the exit code is ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


CLI_BATCH = 256
"""Files decoded and inferred together by ``silse hash``: memory stays flat however many files are named."""


def image_files(paths: Iterable[str]) -> Iterator[str]:
    """``paths`` with each directory replaced by the files under it, recursively, in sorted order."""
    for path in paths:
        if not os.path.isdir(path):
            yield path
            continue
        for root, dirs, files in os.walk(path, followlinks=False):
            dirs.sort()
            yield from (os.path.join(root, name) for name in sorted(files))


def iter_hash_files(
    paths: Iterable[str], model_version: str | None = None, batch: int = CLI_BATCH
) -> Iterator[tuple[str, str | None, str]]:
    """Hash local image files, ``batch`` at a time: ``(path, twin value or None, status or error)`` per path."""
    from silse_spark.model import cached_hasher, get_model_spec

    framing = get_model_spec(model_version).framing  # decode as the job does for this model version
    iterator = iter(paths)
    while chunk := list(itertools.islice(iterator, batch)):
        decoded = [decode_file(p, framing=framing) for p in chunk]
        ok = [i for i, d in enumerate(decoded) if d.status == STATUS_OK]
        codes: dict[int, str] = {}
        if ok:
            hasher = cached_hasher(model_version)
            hexes, _ = twin_values_from_outputs(hasher.outputs(np.stack([decoded[i].pixels for i in ok])))  # type: ignore[misc]
            codes = dict(zip(ok, hexes))
        yield from (
            (p, codes.get(i), STATUS_OK if i in codes else f"{d.status}: {d.error}")
            for i, (p, d) in enumerate(zip(chunk, decoded))
        )


def hash_files(paths: Sequence[str], model_version: str | None = None) -> list[tuple[str, str | None, str]]:
    """Hash local image files: ``(path, twin value or None, status or error)`` per path."""
    return list(iter_hash_files(paths, model_version))


def _one_code(path: str, model_version: str | None) -> str:
    [(_, code, status)] = hash_files([path], model_version)
    if code is None:
        raise CliError(f"cannot hash {path}: {status}", code=1)
    return code


def _match_partition(hashes_dir: str, run_date: str | None) -> tuple[Path, str]:
    """The folder of the night to search (``run_date``, default the latest) and its date."""
    root = Path(hashes_dir)
    try:
        dates = run_dates(root, "--hashes")
    except GalleryError as exc:
        raise CliError(str(exc)) from exc
    if run_date is None:
        return root / f"run_date={dates[-1]}", dates[-1]
    if run_date not in dates:
        raise CliError(f"--hashes {hashes_dir} has no run_date={run_date}; it has {len(dates)} nights, "
                       f"{dates[0]} to {dates[-1]}")
    return root / f"run_date={run_date}", run_date


def match_accounts(
    code: str, hashes_dir: str, radius: int = DEFAULT_RADIUS, model_version: str | None = None,
    run_date: str | None = None,
) -> tuple[list[tuple[str, str, int, str]], dict[str, int]]:
    """Accounts of one night of a hash_all output whose code lies within ``radius`` of ``code``.

    Only the ``run_date`` partition is read (default: the latest night; each night lists every account
    again, so searching them all repeated each account once per night). Streams its Parquet files batch
    by batch (no Spark needed), comparing ``twin_bits``. Codes of different model versions are not
    comparable, so only rows of ``model_version`` (the version that hashed ``code``; the default when
    ``None``) are compared, where the output records versions.

    Returns
    -------
    (matches, skipped)
        ``(account_id, twin_value, distance, run_date)`` sorted by distance, and the number of
        ``ok`` rows left out per other model version.
    """
    import pyarrow.compute as pc

    from silse_spark.model import get_model_spec

    folder, night = _match_partition(hashes_dir, run_date)
    try:
        dataset = night_dataset(folder, "--hashes")
    except GalleryError as exc:
        raise CliError(str(exc)) from exc
    missing = {"account_id", "twin_value", "twin_bits", "status"} - set(dataset.schema.names)
    if missing:
        raise CliError(f"{hashes_dir} is not a hash_all output: columns {sorted(missing)} are missing")
    version = get_model_spec(model_version).version
    query = np.uint64(int_from_twin_value(code))
    found: list[tuple[str, str, int, str]] = []
    skipped: dict[str, int] = {}
    names = dataset.schema.names
    columns = ["account_id", "twin_value", "twin_bits"] + [c for c in ("model_version",) if c in names]
    try:  # streamed file by file: memory stays flat however large the night
        for batch in night_batches(dataset, "--hashes", columns, pc.field("status") == "ok"):
            bits = batch.column("twin_bits").to_numpy(zero_copy_only=False).astype(np.uint64)
            comparable = np.ones(len(bits), dtype=bool)
            if "model_version" in columns:
                versions = np.asarray(batch.column("model_version").to_pylist(), dtype=object)
                comparable = versions == version
                for other, count in zip(*np.unique(versions[~comparable].astype(str), return_counts=True)):
                    skipped[str(other)] = skipped.get(str(other), 0) + int(count)
            distance = np.bitwise_count(bits ^ query)
            for i in np.flatnonzero((distance <= radius) & comparable):
                found.append((str(batch.column("account_id")[i]), str(batch.column("twin_value")[i]),
                              int(distance[i]), night))
    except GalleryError as exc:
        raise CliError(str(exc)) from exc
    return sorted(found, key=lambda row: (row[2], row[0])), skipped


def _cmd_hash(args: argparse.Namespace) -> int:
    failed = False
    for path, code, status in iter_hash_files(image_files(args.images), args.model):
        print(f"{path}\t{code or '-'}\t{status}", flush=True)
        failed |= code is None
    return 1 if failed else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    a, b = _one_code(args.a, args.model), _one_code(args.b, args.model)
    distance = hamming_distance(a, b)
    verdict = "same image" if distance == 0 else ("near copy" if distance <= args.radius else "different")
    print(f"{args.a}\t{a}\n{args.b}\t{b}\ndistance\t{distance}\nverdict\t{verdict} (radius {args.radius})")
    return 0


def _cmd_match(args: argparse.Namespace) -> int:
    night = _match_partition(args.hashes, args.run_date)[1]  # a wrong folder or date fails before the model loads
    code = _one_code(args.image, args.model)
    rows, skipped = match_accounts(code, args.hashes, args.radius, args.model, night)
    print(f"{args.image}\t{code}\t{len(rows)} accounts within distance {args.radius} on {night}")
    if skipped:
        print(f"silse: note: {sum(skipped.values())} rows hashed by other model versions were not compared "
              f"({', '.join(f'{v}: {n}' for v, n in sorted(skipped.items()))}); codes of different versions "
              "are not comparable: pass --model VERSION to match against those", file=sys.stderr)
    for account, value, distance, run_date in rows:
        print(f"{account}\t{value}\t{distance}\t{run_date}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from silse_spark.model import available_model_versions, default_model_version, get_model_spec, verify_weights

    default, failed = default_model_version(), 0
    print("version\tdefault\tarchitecture\tframing\tviews\tweights" + ("\tsha256" if args.verify else ""))
    for version in available_model_versions():
        spec = get_model_spec(version)
        row = [version, "yes" if version == default else "", spec.architecture, spec.framing, "+".join(spec.views),
               spec.weights]
        if args.verify:
            try:
                verify_weights(spec)
                row.append("ok")
            except ModelIntegrityError as exc:
                failed += 1
                row.append(f"FAILED: {exc}")
        print("\t".join(row))
    return 1 if failed else 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    try:
        shown = write_gallery(Path(args.clusters), Path(args.hashes), Path(args.output), args.top, args.members,
                              args.changed)
    except GalleryError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {shown} clusters to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="silse", description="Hash avatars into twin values and look them up.")
    parser.add_argument("--model", default=None, help="registered model version (default: the shipped default)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("hash", help="print each image's twin value")
    p.add_argument("images", nargs="+", help="image files, or directories whose files (recursively) are hashed")
    p.set_defaults(func=_cmd_hash)
    p = sub.add_parser("compare", help="compare two images' twin values")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--radius", type=int, default=DEFAULT_RADIUS)
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("match", help="accounts whose code is within --radius of the image's")
    p.add_argument("image")
    p.add_argument("--hashes", required=True, help="output directory of jobs/hash_all.py")
    p.add_argument("--radius", type=int, default=DEFAULT_RADIUS)
    p.add_argument("--run-date", default=None, help="the night to search, YYYY-MM-DD (default: the latest)")
    p.set_defaults(func=_cmd_match)
    p = sub.add_parser("gallery", help="write a self-contained HTML page of the largest clusters")
    p.add_argument("--clusters", required=True, help="clusters output directory of jobs/detect_clusters.py")
    p.add_argument("--hashes", required=True, help="output directory of jobs/hash_all.py")
    p.add_argument("--output", required=True, help="HTML file to write")
    p.add_argument("--top", type=int, default=50, help="how many of the largest clusters to show")
    p.add_argument("--members", type=int, default=DEFAULT_MEMBERS,
                   help="most accounts shown per cluster, one of each code first (default %(default)s)")
    p.add_argument("--changed", action="store_true",
                   help="only clusters new on the latest night or joined by accounts they did not have the night "
                        "before, most new accounts first, those accounts marked and shown first")
    p.set_defaults(func=_cmd_gallery)
    p = sub.add_parser("models", help="list the registered model versions (--model values)")
    p.add_argument("--verify", action="store_true", help="check each weights file against its registered SHA-256")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "radius", 0) < 0 or getattr(args, "radius", 0) > 48:
        print("silse: error: --radius must be between 0 and 48", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"silse: error: {exc}", file=sys.stderr)
        return exc.code
    except (UnknownModelError, ModelIntegrityError) as exc:
        print(f"silse: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
