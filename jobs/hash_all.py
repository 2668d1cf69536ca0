"""spark-submit jobs/hash_all.py: hash stored avatars into twin values in Parquet.

Usage::

    spark-submit jobs/hash_all.py --avatars DIR --output DIR [--run-date YYYY-MM-DD]
        [--model VERSION] [--previous DIR [--reread-all]] [--keep-days D]
    spark-submit jobs/hash_all.py --manifest accounts.csv --output DIR
    spark-submit jobs/hash_all.py --avatar-table avatars.parquet --output DIR

Exit codes: 0 done (bad images are rows with a status, not failures),
2 bad configuration (message on stderr says what to fix), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from silse_spark.config import HashJobConfig, today_utc
from silse_spark.decode import DEFAULT_ALLOWED_FORMATS, DEFAULT_MAX_PIXELS
from silse_spark.entry import add_summary_json_argument, configuration_error, run_spark_job
from silse_spark.hash_job import check_model, run_hash_job
from silse_spark.isolation import DEFAULT_DECODE_TIMEOUT_S
from silse_spark.model import ModelIntegrityError, UnknownModelError

log = logging.getLogger("silse.hash_all")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hash_all.py", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--avatars", metavar="DIR", help="directory of avatar files, read recursively; "
                        "account_id = file name without extension")
    source.add_argument("--manifest", metavar="FILE", help="CSV or Parquet with columns account_id, path")
    source.add_argument("--avatar-table", metavar="PARQUET", help="Parquet with account_id, content (binary)")
    parser.add_argument("--output", required=True, metavar="DIR", help="Parquet output directory")
    parser.add_argument("--run-date", default=today_utc(), metavar="YYYY-MM-DD",
                        help="partition to (re)write (default: today, UTC)")
    parser.add_argument("--model", default=None, metavar="VERSION",
                        help="registered model version (default: the shipped default)")
    parser.add_argument("--previous", default=None, metavar="DIR",
                        help="earlier output whose codes are reused for unchanged images; files whose path, "
                        "size and modification time match its ok rows are not read again")
    parser.add_argument("--reread-all", action="store_true",
                        help="with --previous, read and SHA-256 every file even when its path, size and "
                        "modification time are unchanged (codes are still reused by content hash)")
    parser.add_argument("--allowed-formats", default=",".join(sorted(DEFAULT_ALLOWED_FORMATS)), metavar="LIST",
                        help="comma-separated image formats to decode, as Pillow detects them from the content "
                        "(default: %(default)s); others get status unsupported_format")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help="largest width x height decoded (default: %(default)s), and no side longer than 4 x its "
                        "square root (16384 at the default); larger images get too_large")
    parser.add_argument("--decode-timeout", type=float, default=DEFAULT_DECODE_TIMEOUT_S, metavar="S",
                        help="a retried task (after a codec crashed its Python worker) decodes in a helper "
                        "process and stops one image after S seconds (default: %(default)s), so that the file "
                        "gets a decode_error row instead of failing the job again; 0: never in a helper")
    parser.add_argument("--keep-days", type=int, default=None, metavar="D",
                        help="after writing, delete --output's nights more than D days older than --run-date "
                        "(default: keep every night; each night holds every account again)")
    add_summary_json_argument(parser)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> HashJobConfig:
    if args.avatars:
        kind, path = "avatars", args.avatars
    elif args.manifest:
        kind, path = "manifest", args.manifest
    else:
        kind, path = "avatar_table", args.avatar_table
    formats = frozenset(f.strip().upper() for f in args.allowed_formats.split(",") if f.strip())
    return HashJobConfig(kind, path, args.output, run_date=args.run_date, model_version=args.model,
                         previous=args.previous, allowed_formats=formats, max_pixels=args.max_pixels,
                         reuse_unchanged_files=not args.reread_all, keep_days=args.keep_days,
                         decode_timeout_s=args.decode_timeout)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        check_model(config.model_version)  # fail fast, before Spark starts
    except ValueError as exc:
        return configuration_error("hash_all.py", exc, args.summary_json)

    return run_spark_job("hash_all.py", f"silse-hash-all-{config.run_date}", run_hash_job, config,
                         (ValueError, UnknownModelError, ModelIntegrityError), args.summary_json)


if __name__ == "__main__":
    sys.exit(main())
