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
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from silse_spark.codes import hamming_distance
from silse_spark.decode import decode_avatar

log = logging.getLogger(__name__)

THUMBNAIL = 72
MAX_IMAGE_BYTES = 64 * 2**20
"""Largest file shown (the hash job's default ``spark.sql.sources.binaryFile.maxLength``)."""


class GalleryError(ValueError):
    """The inputs cannot make a gallery: the message says which and why."""


def _dates(path: Path, what: str) -> list[str]:
    """The ``run_date`` partitions of a job's output directory, sorted."""
    if not path.is_dir():
        raise GalleryError(f"{what} {path} is not a directory; pass the job's output directory")
    dates = sorted(p.name.split("=", 1)[1] for p in path.iterdir() if p.name.startswith("run_date="))
    if not dates:
        raise GalleryError(f"{what} {path} has no run_date=... partitions; is it the job's output?")
    return dates


def _read(path: Path, run_date: str, what: str, needed: set[str], optional: frozenset[str] | set[str] = frozenset(),
          accounts: list[str] | None = None) -> pd.DataFrame:
    """Columns ``needed`` (and those of ``optional`` it has) of one partition, streamed from Parquet.

    With ``accounts``, only their rows are kept as the files are scanned, so a night's whole hashes
    table (billions of rows) is never loaded to show a page of clusters.
    """
    import pyarrow.dataset as ds

    dataset = ds.dataset(path / f"run_date={run_date}", format="parquet")
    names = set(dataset.schema.names)
    if not needed <= names:
        raise GalleryError(f"{what} {path} lacks columns {sorted(needed - names)}")
    selected = ds.field("account_id").isin(accounts) if accounts is not None else None
    table = dataset.to_table(columns=sorted(needed | (optional & names)), filter=selected)
    return table.to_pandas()


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


def load_clusters(clusters_dir: Path, hashes_dir: Path, top: int) -> list[dict[str, Any]]:
    """The ``top`` largest clusters of the latest run, members joined to their image paths."""
    run_date = _dates(clusters_dir, "--clusters")[-1]
    clusters = _read(clusters_dir, run_date, "--clusters", {"cluster_id", "account_id", "twin_value"}, {"method"})
    if clusters.empty:
        raise GalleryError(f"--clusters {clusters_dir}: the latest partition holds no clusters")
    hash_dates = _dates(hashes_dir, "--hashes")
    hash_date = run_date if run_date in hash_dates else hash_dates[-1]
    if hash_date != run_date:
        log.warning("--hashes %s has no run_date=%s (the clusters' date); using its latest, %s",
                    hashes_dir, run_date, hash_date)
    sizes = clusters.groupby("cluster_id").size().sort_values(ascending=False, kind="stable")
    clusters = clusters[clusters.cluster_id.isin(set(sizes.index[:top]))]
    paths = _read(hashes_dir, hash_date, "--hashes", {"account_id", "path"}, accounts=sorted(set(clusters.account_id)))
    members = clusters.merge(paths[["account_id", "path"]].drop_duplicates("account_id"), on="account_id",
                             how="left")
    out = []
    for cluster_id in sizes.index[:top]:
        group = members[members.cluster_id == cluster_id].sort_values("account_id")
        mode = Counter(group.twin_value).most_common(1)[0][0]
        methods = sorted(set(group["method"])) if "method" in group else []
        out.append(
            {
                "cluster_id": str(cluster_id),
                "size": len(group),
                "codes": int(group.twin_value.nunique()),
                "methods": methods,
                "members": [
                    {
                        "account_id": str(row.account_id),
                        "twin_value": str(row.twin_value),
                        "distance": hamming_distance(str(row.twin_value), mode),
                        "image": thumbnail_data_uri(row.path if isinstance(row.path, str) else None),
                    }
                    for row in group.itertuples()
                ],
            }
        )
    return out


def render_gallery(clusters: list[dict[str, Any]], title: str = "silse clusters") -> str:
    """The HTML page (a string) for clusters from :func:`load_clusters`."""
    rows = []
    for c in clusters:
        cards = ""
        for m in c["members"]:
            img = (f'<img alt="{html.escape(m["account_id"])}" src="{m["image"]}">' if m["image"]
                   else '<div class="noimg">no image</div>')
            cards += (f'<figure class="m">{img}<figcaption>{html.escape(m["account_id"])}<br>'
                      f'<code>{m["twin_value"]}</code> d={m["distance"]}</figcaption></figure>')
        rows.append(
            f'<tr class="cluster" data-size="{c["size"]}"><td>{html.escape(c["cluster_id"])}</td>'
            f'<td>{c["size"]}</td><td>{c["codes"]}</td><td>{html.escape(", ".join(c["methods"]))}</td>'
            f'<td class="members">{cards}</td></tr>'
        )
    body = "\n".join(rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 4px; vertical-align: top; text-align: left; }}
th {{ cursor: pointer; background: #f3f3f3; }}
figure.m {{ display: inline-block; margin: 2px; width: {THUMBNAIL + 24}px; font-size: 10px; text-align: center; }}
figure.m img, .noimg {{ width: {THUMBNAIL}px; height: {THUMBNAIL}px; border: 1px solid #ddd; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p id="summary">{len(clusters)} clusters, {sum(c["size"] for c in clusters)} accounts. Click a header to sort.
d = Hamming distance to the cluster's most common twin value.</p>
<table id="clusters"><thead><tr><th>cluster</th><th>accounts</th><th>codes</th><th>methods</th><th>members</th></tr></thead>
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


def write_gallery(clusters_dir: Path, hashes_dir: Path, output: Path, top: int = 50) -> int:
    """Write the gallery page; returns the number of clusters shown."""
    clusters = load_clusters(clusters_dir, hashes_dir, top)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_gallery(clusters), encoding="utf-8")
    log.info("wrote %d clusters to %s", len(clusters), output)
    return len(clusters)
