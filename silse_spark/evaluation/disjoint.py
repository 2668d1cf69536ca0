"""Check that no evaluation image was a training image, by content hash.

The training data manifest (``work/training/sources.csv``, written by
``make data``) lists every training source with ``file_sha256`` (the file's
bytes) and ``pixel_sha256`` (SHA-256 of the production decoder's 108x108
RGB pixels, :func:`silse_spark.evaluation.suite.pixel_sha256`). An evaluation
item that matches either is a leak from training into evaluation, and the
evaluation refuses to run.

The check only catches identical content: a training image that is a
re-rendering or an altered copy of an evaluation source is not found.

Example
-------
>>> import pandas as pd
>>> check_disjoint(pd.DataFrame({"item_id": [], "path": [], "file_sha256": [], "pixel_sha256": []}),
...                Path("/nonexistent/sources.csv")).checked
False
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_TRAINING_MANIFEST = Path("work/training/sources.csv")
"""Where ``make data`` writes the training sources, relative to the repository root."""

_SHOWN = 20


class TrainingOverlapError(ValueError):
    """Some evaluation images are also training images."""


@dataclass(frozen=True)
class DisjointnessResult:
    """Outcome of the check, worded for the report."""

    checked: bool
    message: str
    training_manifest: str
    n_training: int = 0
    n_evaluation: int = 0


def check_disjoint(items: pd.DataFrame, training_manifest: Path) -> DisjointnessResult:
    """Compare evaluation items with the training manifest by content hash.

    Parameters
    ----------
    items
        Columns ``item_id``, ``path``, ``file_sha256`` and ``pixel_sha256``
        (``None`` where the decoder cannot read the file).
    training_manifest
        CSV with columns ``file_sha256`` and ``pixel_sha256`` (and
        ``source_id``, ``origin`` if present, used in the error message).

    Returns
    -------
    DisjointnessResult
        ``checked=False`` with a loud message when there is no training
        manifest: the caller must report it, not pass silently.

    Raises
    ------
    TrainingOverlapError
        Naming the overlapping images, if any evaluation item has the same
        file or pixel hash as a training image.
    ValueError
        If the training manifest lacks both hash columns.
    """
    training_manifest = Path(training_manifest)
    if not training_manifest.is_file():
        message = (f"disjointness not checked: no training manifest at {training_manifest} "
                   "(run `make data`, or pass --training-manifest)")
        log.warning(message)
        return DisjointnessResult(False, message, str(training_manifest), 0, len(items))
    training = pd.read_csv(training_manifest, dtype=str)
    hash_columns = [c for c in ("file_sha256", "pixel_sha256") if c in training.columns]
    if not hash_columns:
        raise ValueError(
            f"training manifest {training_manifest} has neither file_sha256 nor pixel_sha256; "
            f"columns are {list(training.columns)}"
        )
    clashes: list[str] = []
    for column in hash_columns:
        known = training.dropna(subset=[column]).drop_duplicates(column).set_index(column)
        hits = items[items[column].notna() & items[column].isin(known.index)]
        for _, row in hits.iterrows():
            train = known.loc[row[column]]
            who = train.get("origin", train.get("source_id", "?"))
            clashes.append(f"{row['item_id']} ({row['path']}) has the same {column} as training image {who}")
    if clashes:
        shown = "\n  ".join(clashes[:_SHOWN])
        more = f"\n  ... and {len(clashes) - _SHOWN} more" if len(clashes) > _SHOWN else ""
        raise TrainingOverlapError(
            f"{len(clashes)} evaluation images are also in the training data "
            f"({training_manifest}):\n  {shown}{more}\n"
            "Evaluate on images the model was not trained on: choose other --sources, "
            "or rebuild the training data without them."
        )
    message = (f"disjoint: none of {len(items)} evaluation images matches any of {len(training)} "
               f"training images by {' or '.join(hash_columns)} ({training_manifest})")
    log.info(message)
    return DisjointnessResult(True, message, str(training_manifest), len(training), len(items))
