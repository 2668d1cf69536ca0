"""Configuration of the hash job: one frozen dataclass, validated once at the edge."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from silse_spark.decode import DEFAULT_ALLOWED_FORMATS, DEFAULT_MAX_PIXELS
from silse_spark.isolation import DEFAULT_DECODE_TIMEOUT_S

INPUT_KINDS = ("avatars", "manifest", "avatar_table")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ConfigError(ValueError):
    """Bad configuration: the message says what was wrong, what was expected, how to fix it."""


REWRITE_DAMAGED_FILE = ("Restore it from a copy, or write it again: a night these jobs wrote is rewritten by rerunning "
                        "the job that wrote it with that --run-date")
"""What to do about a damaged input file, in the jobs' messages (``sources.unreadable_input_file``) and the
``silse`` command's (``gallery.night_batches``)."""


def today_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def validate_run_date(value: str) -> str:
    """Return ``value`` if it is an ISO date ``YYYY-MM-DD``, else raise :class:`ConfigError`."""
    if not isinstance(value, str) or not _DATE.match(value):
        raise ConfigError(f"--run-date {value!r} is not a date; expected YYYY-MM-DD, e.g. 2026-01-31")
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"--run-date {value!r} is not a valid calendar date ({exc}); use YYYY-MM-DD") from exc
    return value


@dataclass(frozen=True)
class HashJobConfig:
    """Everything ``jobs/hash_all.py`` needs.

    Exactly one input: ``input_kind`` is ``avatars`` (a directory, read
    recursively, account_id = file stem), ``manifest`` (CSV or Parquet with
    columns ``account_id``, ``path``) or ``avatar_table`` (Parquet with
    ``account_id`` and binary ``content``).

    With ``previous`` set, ``reuse_unchanged_files`` skips reading files whose
    path, size and modification time match the previous run's ``ok`` rows;
    turn it off (``--reread-all``) when files may be rewritten in place with
    the same size and an unchanged modification time.

    With ``keep_days``, ``run_date`` partitions of ``output`` more than that
    many days older than ``run_date`` are deleted after the night is written.

    Examples
    --------
    >>> HashJobConfig("avatars", "/data/avatars", "/out", run_date="2026-01-01").run_date
    '2026-01-01'
    """

    input_kind: str
    input_path: str
    output: str
    run_date: str = field(default_factory=today_utc)
    model_version: str | None = None
    previous: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    allowed_formats: frozenset[str] = DEFAULT_ALLOWED_FORMATS
    batch_size: int = 64
    reuse_unchanged_files: bool = True
    keep_days: int | None = None
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S
    """Seconds one image may take to decode in the helper process a retried task decodes in
    (``silse_spark.isolation``); 0: retries decode in the Python worker too."""

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ConfigError(f"unknown input kind {self.input_kind!r}; expected one of {INPUT_KINDS}")
        if not self.input_path:
            raise ConfigError("no input given; pass exactly one of --avatars, --manifest, --avatar-table")
        if not self.output:
            raise ConfigError("no --output given; pass the directory to write the Parquet table to")
        validate_run_date(self.run_date)
        validate_keep_days(self.keep_days)
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be a positive pixel count, got {self.max_pixels}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.decode_timeout_s >= 0:  # also refuses NaN
            raise ConfigError(f"--decode-timeout must be a number of seconds >= 0 (0: decode in the Python worker "
                              f"itself), got {self.decode_timeout_s}")
        if not self.allowed_formats:
            raise ConfigError("allowed_formats is empty; allow at least one image format, e.g. PNG")
        from PIL import Image

        Image.init()
        unknown = sorted(set(self.allowed_formats) - set(Image.OPEN))
        if unknown:
            raise ConfigError(
                f"unknown image format(s) {unknown} in allowed formats; Pillow can open {sorted(Image.OPEN)}"
            )


def validate_keep_days(value: int | None) -> int | None:
    """Return ``value`` if it is ``None`` (keep every night) or a whole number of days >= 1, else raise.

    >>> validate_keep_days(30)
    30
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"--keep-days {value!r} is not a number of days >= 1; omit it to keep every night, "
                          "or pass e.g. 30 to delete nights more than 30 days older than --run-date")
    return value


STALE_STAGING_HOURS = 24
"""A staging folder untouched this long belongs to a killed run (a live write touches its folder as it goes)."""


def staging_note(folders: list[tuple[str, int]], deleted: bool) -> str:
    """The summaries' line on killed runs' staging folders (``""`` if none).

    >>> staging_note([("o/.spark-staging-1", 3_500_000), ("o/.spark-staging-2", 0)], deleted=False)
    "2 (3.5 MB, untouched for 24+ h; a killed run's partial output: delete them or pass --keep-days)"
    >>> staging_note([("o/.spark-staging-1", 3_500_000)], deleted=True)
    '1 (3.5 MB) deleted'
    """
    if not folders:
        return ""
    size = f"{sum(n for _, n in folders) / 1e6:.1f} MB"
    if deleted:
        return f"{len(folders)} ({size}) deleted"
    return (f"{len(folders)} ({size}, untouched for {STALE_STAGING_HOURS}+ h; a killed run's partial output: "
            "delete them or pass --keep-days)")


def pruned_dates(dates: list[str]) -> str:
    """The summaries' note on deleted nights.

    >>> pruned_dates(["2025-11-01", "2025-11-02", "2025-11-03"]), pruned_dates([])
    (' (2025-11-01 to 2025-11-03, --keep-days)', '')
    """
    return f" ({dates[0]}{f' to {dates[-1]}' if len(dates) > 1 else ''}, --keep-days)" if dates else ""


def require_hash_columns(columns: list[str], required: list[str], flag: str, directory: str) -> None:
    """Fail with a clear message when a table passed as ``flag`` is not the hash job's output.

    >>> require_hash_columns(["account_id", "status"], ["account_id", "status"], "--hashes", "out")
    >>> try:
    ...     require_hash_columns(["cluster_id", "account_id"], ["account_id", "status"], "--hashes", "out/clusters")
    ... except ConfigError as exc:
    ...     print(str(exc).split(";")[0])
    --hashes out/clusters is not the output of jobs/hash_all.py: it has no column status (its columns: account_id, cluster_id)
    """
    missing = [c for c in required if c not in columns]
    if missing:
        raise ConfigError(
            f"{flag} {directory} is not the output of jobs/hash_all.py: it has no column {', '.join(missing)} "
            f"(its columns: {', '.join(sorted(columns))}); pass the directory given to hash_all.py as --output"
        )
