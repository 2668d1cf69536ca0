"""A self-contained HTML page of the largest clusters, for reviewers.

Each cluster shows its members' avatars side by side with account ids, twin
values and their Hamming distance to the cluster's most common code, the
cluster's size and linking methods. Images are embedded as small base64 PNG
thumbnails, the table sorts by clicking a header, and nothing is loaded from
the network: the file works offline and can be attached to a ticket.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from silse_spark.codes import hamming_distance
from silse_spark.config import REWRITE_DAMAGED_FILE
from silse_spark.decode import decode_avatar

log = logging.getLogger(__name__)

THUMBNAIL = 72
MAX_IMAGE_BYTES = 64 * 2**20
"""Largest file shown (the hash job's default ``spark.sql.sources.binaryFile.maxLength``)."""


class GalleryError(ValueError):
    """The inputs cannot make a gallery: the message says which and why."""


def run_dates(path: Path, what: str) -> list[str]:
    """The ``run_date`` partitions of a job's output directory, sorted."""
    if not path.is_dir():
        raise GalleryError(f"{what} {path} is not a directory; pass the job's output directory")
    dates = sorted(p.name.split("=", 1)[1] for p in path.iterdir() if p.name.startswith("run_date="))
    if not dates:
        raise GalleryError(f"{what} {path} has no run_date=... partitions; is it the job's output?")
    return dates


DAMAGED_HINT = f"it is damaged (cut short, or changed after it was written) or is not Parquet. {REWRITE_DAMAGED_FILE}"


def night_dataset(folder: Path, what: str) -> Any:
    """A ``pyarrow.dataset`` over one night's Parquet files; a file whose footer cannot be read is a
    :class:`GalleryError` naming it (pyarrow's message does), not a stack trace."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        return ds.dataset(folder, format="parquet")
    except (pa.ArrowException, OSError) as exc:
        raise GalleryError(f"{what} {folder} cannot be read: {' '.join(str(exc).split())}; {DAMAGED_HINT}") from exc


def night_batches(dataset: Any, what: str, columns: list[str], where: Any = None) -> Iterator[Any]:
    """Record batches of ``columns`` (rows matching ``where``), file by file, so that a file whose pages cannot be
    read is named in the :class:`GalleryError` (pyarrow's page errors do not name it). Pages' checksums are
    verified, as ``spark-defaults.conf`` makes Spark do: a changed byte is an error, not a wrong value."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    checked = ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    for fragment in dataset.get_fragments():
        try:
            yield from fragment.to_batches(schema=dataset.schema, columns=columns, filter=where,
                                           fragment_scan_options=checked)
        except (pa.ArrowException, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise GalleryError(f"{what}: the file {fragment.path} cannot be read ({reason}); {DAMAGED_HINT}") from exc


def _read(path: Path, run_date: str, what: str, needed: set[str], optional: frozenset[str] | set[str] = frozenset(),
          keep: tuple[str, list[str]] | None = None) -> pd.DataFrame:
    """Columns ``needed`` (and those of ``optional`` it has) of one partition, streamed from Parquet.

    With ``keep = (column, values)``, only rows whose ``column`` is in ``values`` are kept as the files
    are scanned, so a night's whole hashes or clusters table (billions of rows) is never loaded to
    show a page of clusters.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = night_dataset(path / f"run_date={run_date}", what)
    names = set(dataset.schema.names)
    if not needed <= names:
        raise GalleryError(f"{what} {path} lacks columns {sorted(needed - names)}")
    selected = ds.field(keep[0]).isin(keep[1]) if keep is not None else None
    columns = sorted(needed | (optional & names))
    schema = pa.schema([dataset.schema.field(c) for c in columns])
    return pa.Table.from_batches(list(night_batches(dataset, what, columns, selected)), schema=schema).to_pandas()


def _largest_clusters(clusters_dir: Path, run_date: str, top: int, changed: bool = False) -> list[str]:
    """Ids of the ``top`` largest clusters (ties by id), from ``cluster_summary`` (one row per cluster)
    when the cluster job wrote it beside ``clusters``, else by counting the clusters table's rows.

    With ``changed``, only clusters new that night or joined by accounts they did not have the night
    before (``new_accounts > 0`` in ``cluster_summary``), the most new accounts first.
    """
    summary = clusters_dir.parent / "cluster_summary"
    if changed:
        if not (summary / f"run_date={run_date}").is_dir():
            raise GalleryError(f"--changed needs the cluster job's cluster_summary beside --clusters "
                               f"({summary / f'run_date={run_date}'} does not exist)")
        sizes = _read(summary, run_date, "cluster_summary", {"cluster_id", "size"}, {"new_accounts"})
        if "new_accounts" not in sizes:
            raise GalleryError(f"--changed: {summary} for {run_date} has no new_accounts column (written before "
                               "2026-12-03); rerun jobs/detect_clusters.py for that date")
        sizes, keys = sizes[sizes.new_accounts > 0], ["new_accounts", "size"]
    elif (summary / f"run_date={run_date}").is_dir():
        sizes, keys = _read(summary, run_date, "cluster_summary", {"cluster_id", "size"}), ["size"]
    else:
        log.info("no cluster_summary for %s beside %s; counting the clusters' rows", run_date, clusters_dir)
        sizes = _read(clusters_dir, run_date, "--clusters", {"cluster_id"}).value_counts("cluster_id")
        sizes, keys = sizes.rename("size").reset_index(), ["size"]
    ranked = sizes.sort_values([*keys, "cluster_id"], ascending=[False] * len(keys) + [True], kind="stable")
    return [str(c) for c in ranked.cluster_id.iloc[:top]]


def _previous_members(clusters_dir: Path, run_date: str, cluster_ids: list[str]) -> set[tuple[str, str]] | None:
    """``(cluster_id, account_id)`` of those clusters on the night before ``run_date`` that has clusters
    (``None``: no such night), read for those clusters only."""
    earlier = [d for d in run_dates(clusters_dir, "--clusters") if d < run_date]
    if not earlier:
        return None
    rows = _read(clusters_dir, earlier[-1], "--clusters", {"cluster_id", "account_id"}, keep=("cluster_id", cluster_ids))
    return set(zip(rows.cluster_id.astype(str), rows.account_id.astype(str), strict=True))


def _shown(group: pd.DataFrame, mode: str, members: int) -> pd.DataFrame:
    """At most ``members`` rows of one cluster: one account of each code first (the common code, then the
    others by distance to it and by how many accounts share them), then the rest by account id. With a
    boolean column ``new``, the new accounts come first, in that order, then the others."""
    if "new" in group and group.new.any() and not group.new.all():
        new = _shown(group[group.new].drop(columns="new"), mode, members)
        old = _shown(group[~group.new].drop(columns="new"), mode, members)
        return pd.concat([new.assign(new=True), old.assign(new=False)]).iloc[:members]
    group = group.sort_values("account_id", kind="stable")
    counts = group.twin_value.value_counts()
    firsts = group.drop_duplicates("twin_value").assign(
        _d=lambda g: [hamming_distance(str(v), mode) for v in g.twin_value],
        _n=lambda g: -g.twin_value.map(counts),
    ).sort_values(["_d", "_n", "twin_value"], kind="stable")
    rest = group.drop(index=firsts.index)
    return pd.concat([firsts.drop(columns=["_d", "_n"]), rest]).iloc[:members]


def _mode(codes: pd.Series) -> str:
    """The most common code (ties: the smallest)."""
    counts = codes.value_counts()
    return str(min(counts.index[counts == counts.max()]))


def thumbnail_data_uri(path: str | None) -> str | None:
    """A PNG thumbnail of a local image as a ``data:`` URI, or ``None`` if it cannot be read."""
    if not path:
        return None
    local = path[5:] if path.startswith("file:") else path
    try:
        with open(local, "rb") as fh:
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_IMAGE_BYTES:  # as the hash job, which does not read such a file either
        return None
    decoded = decode_avatar(data, size=THUMBNAIL)
    if decoded.pixels is None:
        return None
    buf = io.BytesIO()
    Image.fromarray(decoded.pixels).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


DEFAULT_MEMBERS = 40
"""Members shown per cluster: a campaign of a million accounts is one row of the page, not a million
thumbnails (a 20,000-account cluster took 56 s and made a 99 MB page before this bound; 2026-12-03)."""


def load_clusters(clusters_dir: Path, hashes_dir: Path, top: int, members: int = DEFAULT_MEMBERS,
                  changed: bool = False) -> list[dict[str, Any]]:
    """The ``top`` largest clusters of the latest run, up to ``members`` of each joined to their image paths.

    Only those clusters' rows are read from the clusters table, and only their shown accounts' rows from
    the hashes table of the same night. With ``changed``, the clusters new that night or joined by new
    accounts (see :func:`_largest_clusters`), each account marked ``new`` when it was not in the cluster
    the night before, and the new accounts shown first.
    """
    if top < 1 or members < 1:
        raise GalleryError(f"--top and --members must be at least 1 (got {top} and {members})")
    run_date = run_dates(clusters_dir, "--clusters")[-1]
    largest = _largest_clusters(clusters_dir, run_date, top, changed)
    if changed and not largest:
        log.info("no cluster is new or joined by new accounts on %s", run_date)
        return []
    clusters = _read(clusters_dir, run_date, "--clusters", {"cluster_id", "account_id", "twin_value"}, {"method"},
                     keep=("cluster_id", largest))
    if clusters.empty:
        raise GalleryError(f"--clusters {clusters_dir}: the latest partition holds no clusters")
    if changed:
        before = _previous_members(clusters_dir, run_date, largest) or set()
        clusters["new"] = [(str(c), str(a)) not in before
                           for c, a in zip(clusters.cluster_id, clusters.account_id, strict=True)]
    hash_dates = run_dates(hashes_dir, "--hashes")
    hash_date = run_date if run_date in hash_dates else hash_dates[-1]
    if hash_date != run_date:
        log.warning("--hashes %s has no run_date=%s (the clusters' date); using its latest, %s",
                    hashes_dir, run_date, hash_date)
    picked = []
    for cluster_id, group in clusters.groupby("cluster_id", sort=False):
        mode = _mode(group.twin_value)
        picked.append((str(cluster_id), group, mode, _shown(group, mode, members)))
    shown_accounts = sorted({a for *_, shown in picked for a in shown.account_id})
    paths = _read(hashes_dir, hash_date, "--hashes", {"account_id", "path"}, keep=("account_id", shown_accounts))
    path_of = dict(zip(paths.account_id, paths.path, strict=True))  # an account listed twice: one path
    thumbnails: dict[str | None, str | None] = {}  # many accounts often share one file (a default avatar)
    by_id = {p[0]: p for p in picked}
    out = []
    for cluster_id in largest:
        if cluster_id not in by_id:
            continue
        _, group, mode, shown = by_id[cluster_id]
        methods = sorted(set(group["method"])) if "method" in group else []
        cards = []
        for row in shown.itertuples():
            path = path_of.get(row.account_id)
            path = path if isinstance(path, str) else None
            if path not in thumbnails:
                thumbnails[path] = thumbnail_data_uri(path)
            cards.append({"account_id": str(row.account_id), "twin_value": str(row.twin_value),
                          "distance": hamming_distance(str(row.twin_value), mode), "image": thumbnails[path],
                          "new": bool(getattr(row, "new", False))})
        cluster = {"cluster_id": cluster_id, "size": len(group), "codes": int(group.twin_value.nunique()),
                   "methods": methods, "members": cards}
        if changed:
            cluster["new"] = int(group.new.sum())
        out.append(cluster)
    return out


def render_gallery(clusters: list[dict[str, Any]], title: str = "silse clusters", changed: bool = False) -> str:
    """The HTML page (a string) for clusters from :func:`load_clusters` (``changed``: theirs with ``changed``)."""
    rows = []
    for c in clusters:
        cards = ""
        for m in c["members"]:
            img = (f'<img alt="{html.escape(m["account_id"])}" src="{m["image"]}">' if m["image"]
                   else '<div class="noimg">no image</div>')
            badge = ' <b class="new">new</b>' if m.get("new") else ""
            cards += (f'<figure class="m">{img}<figcaption>{html.escape(m["account_id"])}{badge}<br>'
                      f'<code>{m["twin_value"]}</code> d={m["distance"]}</figcaption></figure>')
        if len(c["members"]) < c["size"]:
            cards += (f'<p class="more">showing {len(c["members"])} of {c["size"]} accounts: one of each code '
                      "first, then by account id</p>")
        new_cell = f'<td>{c["new"]}</td>' if changed else ""
        rows.append(
            f'<tr class="cluster" data-size="{c["size"]}"><td>{html.escape(c["cluster_id"])}</td>'
            f'<td>{c["size"]}</td>{new_cell}<td>{c["codes"]}</td><td>{html.escape(", ".join(c["methods"]))}</td>'
            f'<td class="members">{cards}</td></tr>'
        )
    body = "\n".join(rows)
    new_header = "<th>new accounts</th>" if changed else ""
    new_note = (" Only clusters new tonight or joined by accounts they did not have the night before; "
                "<b>new</b> marks those accounts.") if changed else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 4px; vertical-align: top; text-align: left; }}
th {{ cursor: pointer; background: #f3f3f3; }}
figure.m {{ display: inline-block; margin: 2px; width: {THUMBNAIL + 24}px; font-size: 10px; text-align: center; }}
b.new {{ color: #b00; }}
figure.m img, .noimg {{ width: {THUMBNAIL}px; height: {THUMBNAIL}px; border: 1px solid #ddd; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p id="summary">{len(clusters)} clusters, {sum(c["size"] for c in clusters)} accounts. Click a header to sort.
d = Hamming distance to the cluster's most common twin value.{new_note}</p>
<table id="clusters"><thead><tr><th>cluster</th><th>accounts</th>{new_header}<th>codes</th><th>methods</th>
<th>members</th></tr></thead>
<tbody>
{body}
</tbody></table>
<script>
document.querySelectorAll('#clusters th').forEach((th, col) => th.addEventListener('click', () => {{
  const body = document.querySelector('#clusters tbody');
  const rows = Array.from(body.rows);
  const asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
  rows.sort((a, b) => {{
    const x = a.cells[col].innerText, y = b.cells[col].innerText;
    const n = parseFloat(x) - parseFloat(y);
    return (isNaN(n) ? x.localeCompare(y) : n) * (asc ? 1 : -1);
  }});
  rows.forEach(r => body.appendChild(r));
}}));
</script></body></html>
"""


def write_gallery(clusters_dir: Path, hashes_dir: Path, output: Path, top: int = 50,
                  members: int = DEFAULT_MEMBERS, changed: bool = False) -> int:
    """Write the gallery page; returns the number of clusters shown."""
    clusters = load_clusters(clusters_dir, hashes_dir, top, members, changed)
    output.parent.mkdir(parents=True, exist_ok=True)
    title = "silse clusters: new or joined since the previous night" if changed else "silse clusters"
    output.write_text(render_gallery(clusters, title, changed), encoding="utf-8")
    log.info("wrote %d clusters to %s", len(clusters), output)
    return len(clusters)
