"""spark-submit jobs/detect_clusters.py: group accounts that reuse an altered copy of one avatar.

Usage::

    spark-submit jobs/detect_clusters.py --hashes DIR --output DIR [--run-date YYYY-MM-DD]
        [--prefix-length K] [--radius R]
        [--radius-links densest|all] [--min-accounts N] [--allowlist FILE]
        [--low-info-bits B] [--keep-days D] [--database NAME | --no-register]

Reads one run_date of jobs/hash_all.py's output (the latest unless --run-date),
writes OUTPUT/clusters and OUTPUT/cluster_summary partitioned by run_date
(rerunning a date replaces it) and registers hashes, clusters and
cluster_summary in the metastore database (default silse). How it works:
docs/clusters.md.

Exit codes: 0 done, 2 bad configuration (message on stderr says what to fix),
3 output written but the tables not registered (the metastore was busy or unreachable: the
summary says why), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from silse_spark.clusters import (
    DEFAULT_LOW_INFO_BITS,
    DEFAULT_MIN_ACCOUNTS,
    DEFAULT_PREFIX_LENGTH,
    DEFAULT_RADIUS,
    DEFAULT_RADIUS_LINKS,
    RADIUS_LINKS,
    ClusterJobConfig,
    read_allowlist,
    run_cluster_job,
)
from silse_spark.config import ConfigError
from silse_spark.entry import add_summary_json_argument, configuration_error, run_spark_job

log = logging.getLogger("silse.detect_clusters")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="detect_clusters.py", description=__doc__.split("\n")[0])
    parser.add_argument("--hashes", required=True, metavar="DIR", help="output directory of jobs/hash_all.py")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="directory for clusters/ and cluster_summary/ (Parquet, partitioned by run_date)")
    parser.add_argument("--run-date", default=None, metavar="YYYY-MM-DD",
                        help="hashes partition to cluster (default: the latest)")
    parser.add_argument("--prefix-length", type=int, default=DEFAULT_PREFIX_LENGTH, metavar="K",
                        help="hex characters shared for a prefix link, 1..11; 0 = off, the default (docs/clusters.md)")
    parser.add_argument("--radius", type=int, default=DEFAULT_RADIUS, metavar="R",
                        help="largest Hamming distance for a radius link, 0..2, 0 = off (default: %(default)s)")
    parser.add_argument("--radius-links", choices=RADIUS_LINKS, default=DEFAULT_RADIUS_LINKS,
                        help="densest: each code links to its densest neighbour within the radius if denser, "
                        "local maxima with 2+ accounts to the densest such code within 2 bits (a forest); "
                        "all: every pair within the radius (single linkage) (default: %(default)s)")
    parser.add_argument("--min-accounts", type=int, default=DEFAULT_MIN_ACCOUNTS, metavar="N",
                        help="smallest cluster kept (default: %(default)s)")
    parser.add_argument("--allowlist", default=None, metavar="FILE",
                        help="text file of twin values (one a line, # comments) that never form a cluster")
    parser.add_argument("--low-info-bits", type=int, default=DEFAULT_LOW_INFO_BITS, metavar="B",
                        help="codes with <= B ones or <= B zeros link only by exact, -1 = off (default: %(default)s)")
    parser.add_argument("--keep-days", type=int, default=None, metavar="D",
                        help="after writing, delete the nights of clusters/ and cluster_summary/ more than D days "
                        "older than the night clustered (default: keep every night)")
    catalog = parser.add_mutually_exclusive_group()
    catalog.add_argument("--database", default="silse", metavar="NAME",
                         help="metastore database for the tables (default: %(default)s)")
    catalog.add_argument("--no-register", action="store_true", help="do not register tables in the metastore")
    add_summary_json_argument(parser)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ClusterJobConfig:
    allowlist = read_allowlist(args.allowlist) if args.allowlist else frozenset()
    return ClusterJobConfig(
        hashes=args.hashes, output=args.output, run_date=args.run_date, prefix_length=args.prefix_length,
        radius=args.radius, radius_links=args.radius_links, min_accounts=args.min_accounts, allowlist=allowlist,
        low_info_bits=args.low_info_bits, database=None if args.no_register else args.database,
        keep_days=args.keep_days,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)  # fail fast, before Spark starts
    except ConfigError as exc:
        return configuration_error("detect_clusters.py", exc, args.summary_json)

    return run_spark_job("detect_clusters.py", "silse-detect-clusters", run_cluster_job, config, (ConfigError,),
                         args.summary_json)


if __name__ == "__main__":
    sys.exit(main())
