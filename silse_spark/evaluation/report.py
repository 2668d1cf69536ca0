"""Write an evaluation's numbers as JSON, Markdown tables and plots.

``evaluation.json`` holds ``results[hasher][family] -> metrics`` and
``code[hasher] -> properties of the code``, plus ``meta`` (command,
machine, suite, disjointness check). ``evaluation.md`` shows the same
numbers as tables, with the plots written to ``img/eval_*.png``.

Example
-------
>>> fmt(0.12345), fmt(None), fmt(float("nan")), fmt(3)
('0.123', 'n/a', 'n/a', '3')
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from silse_spark.evaluation.metrics import RADII, HasherScores

log = logging.getLogger(__name__)

HEADLINE_SETS = ("seed", "extra")


def _default_links() -> str:
    """The cluster job's default links in words, e.g. ``exact links and radius-1 links (densest)``."""
    from silse_spark.clusters import DEFAULT_PREFIX_LENGTH, DEFAULT_RADIUS, DEFAULT_RADIUS_LINKS

    links = ["exact links"]
    if DEFAULT_PREFIX_LENGTH:
        links.append(f"prefix links of {DEFAULT_PREFIX_LENGTH} hex characters")
    if DEFAULT_RADIUS:
        links.append(f"radius-{DEFAULT_RADIUS} links ({DEFAULT_RADIUS_LINKS})")
    return ", ".join(links[:-1]) + " and " + links[-1] if len(links) > 1 else links[0]

def fmt(value: object, digits: int = 3) -> str:
    """A number for a table: ``n/a`` for missing, fixed digits for floats."""
    if value is None:
        return "n/a"
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(float(value)) else f"{float(value):.{digits}f}"
    return str(value)


def _sci(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    v = float(value)  # type: ignore[arg-type]
    return "0" if v == 0 else f"{v:.1e}"


def jsonable(value: Any) -> Any:
    """Recursively turn NumPy scalars into Python ones and NaN into ``None``.

    Examples
    --------
    >>> jsonable({"a": np.float64("nan"), "b": [np.int64(2)]})
    {'a': None, 'b': [2]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return value


def machine_description() -> dict[str, object]:
    """CPU model, usable cores, memory and OS of this machine, for the report.

    Examples
    --------
    >>> sorted(machine_description())[:2]
    ['cpu', 'cpu_cores_usable']
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib: float | None = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cpu_cores_usable": cores, "memory_gib": memory_gib,
            "os": platform.platform(), "python": platform.python_version()}


def build_json(scores: dict[str, HasherScores], meta: dict[str, object],
               descriptions: dict[str, str]) -> dict[str, Any]:
    """The ``evaluation.json`` document: results keyed by hasher, then family."""
    return jsonable({
        "meta": meta,
        "hashers": {name: {"nbits": s.nbits, "description": descriptions.get(name, "")}
                    for name, s in scores.items()},
        "results": {name: s.families for name, s in scores.items()},
        "code": {name: s.code for name, s in scores.items()},
    })


def summary_rows(scores: dict[str, HasherScores]) -> list[list[str]]:
    """One row per hasher: the headline numbers for seed and extra families."""
    rows = []
    for name, s in scores.items():
        seed, extra = s.families.get("seed", {}), s.families.get("extra", {})
        rows.append([
            name, str(s.nbits),
            fmt(seed.get("recall_r0")), fmt(extra.get("recall_r0")),
            fmt(s.code.get("r_star")),
            fmt(seed.get("recall_r_star")), fmt(extra.get("recall_r_star")),
            _sci(s.code.get("fmr_r0")),
            fmt(seed.get("exact_f1")), fmt(extra.get("exact_f1")),
            fmt(s.code.get("daugman_dof"), 1),
        ])
    return rows


SUMMARY_HEADER = ["hasher", "bits", "exact recall seed", "exact recall extra", "r*",
                  "recall@r* seed", "recall@r* extra", "FMR exact", "F1 seed", "F1 extra", "DoF"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain fixed-width table for the terminal.

    Examples
    --------
    >>> print(text_table(["a", "bb"], [["1", "2"]]))
    a  bb
    1  2
    """
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table.

    Examples
    --------
    >>> print(markdown_table(["a"], [["1"]]))
    | a |
    |---|
    | 1 |
    """
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _grouping_table(scores: dict[str, HasherScores], names: Sequence[str], grouping: str, who: str) -> str:
    """Pairwise precision / recall / F1 of one grouping (``exact`` or ``cluster``) per hasher and family set."""
    rows = []
    for n in names:
        for group in ("seed", "extra", "all"):
            f = scores[n].families.get(group, {})
            rows.append([n, group, fmt(f.get(f"{grouping}_precision")), fmt(f.get(f"{grouping}_recall")),
                         fmt(f.get(f"{grouping}_f1")), str(f.get(f"{grouping}_predicted_pairs", "n/a")),
                         str(f.get(f"{grouping}_true_pairs", "n/a"))])
    return markdown_table([who, "families", "precision", "recall", "F1", "predicted pairs", "true pairs"], rows)


def _fmr_next(s: HasherScores) -> float:
    """False-match rate one step past ``r*`` (or at radius 0 when there is no ``r*``)."""
    r_star = s.code.get("r_star")
    radius = 0 if r_star is None else int(r_star) + 1  # type: ignore[call-overload]
    return float(np.mean(s.impostor <= radius)) if len(s.impostor) else float("nan")


def _family_table(scores: dict[str, HasherScores], families: Sequence[str], key: str) -> str:
    names = list(scores)
    rows = [[f] + [fmt(scores[n].families.get(f, {}).get(key)) for n in names] for f in families]
    return markdown_table(["family", *names], rows)



def _save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write (PNG, 90 dpi) and close one figure; return its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

def write_plots(scores: dict[str, HasherScores], families: Sequence[str], img_dir: Path) -> list[Path]:
    """Write the three plots; return their paths.

    ``eval_distances.png``: genuine (all families) and impostor Hamming
    distances, as fractions of the code length, per hasher.
    ``eval_recall_by_family.png``: exact-code recall and recall at ``r*``.
    ``eval_recall_vs_radius.png``: recall against radius (as a fraction of
    the code length) for seed and extra families, ``r*`` starred.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    names = list(scores)
    paths = []

    cols = 4
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, name in zip(axes.ravel(), names):
        s = scores[name]
        genuine = s.genuine.get("all", np.array([]))
        genuine = genuine[genuine <= s.nbits] / s.nbits
        impostor = s.impostor[s.impostor <= s.nbits] / s.nbits
        ax.hist(impostor, bins=bins, density=True, alpha=0.6, label="impostor", color="tab:red")
        ax.hist(genuine, bins=bins, density=True, alpha=0.6, label="genuine", color="tab:blue")
        ax.set_title(f"{name} ({s.nbits} bits)")
        ax.set_xlabel("Hamming distance / bits")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].legend()
    paths.append(_save_figure(fig, img_dir / "eval_distances.png"))

    fig, axes = plt.subplots(2, 1, figsize=(13, 7), sharex=True)
    x = np.arange(len(families))
    width = 0.8 / max(1, len(names))
    for panel, (key, title) in enumerate([("recall_r0", "exact-code recall"), ("recall_r_star", "recall at r*")]):
        ax = axes[panel]
        for i, name in enumerate(names):
            values = [scores[name].families.get(f, {}).get(key) for f in families]
            heights = [0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)  # type: ignore[arg-type]
                       for v in values]
            ax.bar(x + (i - (len(names) - 1) / 2) * width, heights, width, label=name)
        ax.set_ylabel(title)
        ax.set_ylim(0, 1.05)
    axes[1].set_xticks(x, list(families), rotation=30, ha="right")
    axes[0].legend(ncol=min(len(names), 8), fontsize=8, loc="upper right")
    paths.append(_save_figure(fig, img_dir / "eval_recall_by_family.png"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, group in zip(axes, HEADLINE_SETS):
        for name in names:
            s = scores[name]
            distances = s.genuine.get(group)
            if distances is None or len(distances) == 0:
                continue
            # Radii as a fraction of the code length, so 48-, 64- and 256-bit codes share an axis.
            radii = np.arange(0, int(0.4 * s.nbits) + 1)
            recall = np.array([(distances <= r).mean() for r in radii])
            (line,) = ax.plot(radii / s.nbits, recall, label=name)
            r_star = s.code.get("r_star")
            if isinstance(r_star, int) and r_star < len(radii):
                ax.plot([r_star / s.nbits], [recall[r_star]], marker="*", markersize=11, color=line.get_color())
        ax.set_title(f"{group} families (star: r*)")
        ax.set_xlabel("Hamming radius / bits")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("recall within radius")
    axes[1].legend(fontsize=8)
    paths.append(_save_figure(fig, img_dir / "eval_recall_vs_radius.png"))
    return paths


def build_markdown(doc: dict[str, Any], scores: dict[str, HasherScores],
                   families: Sequence[str], plot_names: Sequence[str]) -> str:
    """The ``evaluation.md`` text from the JSON document and the scores."""
    meta = doc["meta"]
    suite = meta["suite"]
    machine = meta["machine"]
    names = list(scores)
    any_code: dict[str, Any] = next(iter(doc["code"].values()), {})
    lines = [
        "# Evaluation: silse against md5, aHash, pHash, dHash, wHash and PDQ",
        "",
        "Every hasher scores the same files. Generated by the evaluation harness (`make eval`, `make eval-photos`, "
        "`make eval-icons`: the command is below); do not edit by hand.",
        "",
        f"- Command: `{meta['command']}`",
        (f"- Machine: {machine['cpu']}, {machine['cpu_cores_usable']} usable cores, "
        f"{machine['memory_gib']} GiB memory, {machine['os']}, Python {machine['python']}; "
        f"shared with other work: 1-minute load average {machine.get('load_average_1min_start')} at the start, "
        f"{machine.get('load_average_1min_end')} at the end"),
        (f"- Date (UTC): {meta['finished_utc']}; wall time {meta['runtime_s']:.0f} s "
        f"(suite {meta['timings_s'].get('suite', 0):.0f} s, classical hashers "
        f"{meta['timings_s'].get('classical', 0):.0f} s, silse jobs "
        f"{meta['timings_s'].get('silse', 0):.0f} s, metrics and plots "
        f"{meta['timings_s'].get('metrics', 0):.0f} s)"),
        (f"- silse codes: {meta['silse_method']}; model versions: "
        f"{', '.join(meta['models']) if meta['models'] else 'none registered'}"),
        f"- Training/evaluation disjointness: {meta['disjointness']['message']}",
        "",
        "## Suite",
        "",
        (f"{suite['n_sources']} source images ({', '.join(suite['source_folders'])}), each with "
        f"up to {suite['copies_per_family']} distinct altered copies per family in {len(families)} families "
        f"({suite['n_copies']} copies), and {suite['n_distractors']} distractors "
        f"({suite['distractor_description']}): {suite['n_items']} images, seed {suite['seed']}."),
        "",
        f"- Seed families (the design's): {', '.join(meta['families']['seed'])}.",
        f"- Extra families: {', '.join(meta['families']['extra'])}.",
        (f"- Genuine pairs: each copy with its source. Impostor pairs: every image with every source or "
        f"distractor of another source, {any_code.get('n_impostor_pairs', 0):,} pairs "
        f"(a false-match rate below about {fmt(any_code.get('fmr_resolution'), 7)} cannot be told from 0)."),
        (f"- `r*` is the largest Hamming radius whose false-match rate over all impostor pairs is "
        f"<= {meta['max_fmr']:g}; one radius per hasher, as a deployment would fix it."),
        "",
        "Deterministic families (hflip, greyscale) have one copy per source: a repeated file is not a new copy.",
        "",
        "## Headline",
        "",
        ("`seed` pools the five seed families, `extra` the eight extra ones. F1 is the pairwise F1 of "
        "the groups formed by identical codes over sources, copies and distractors. "
        "DoF is Daugman's degrees of freedom of the impostor distances."),
        "",
        markdown_table(SUMMARY_HEADER, summary_rows(scores)),
        "",
        "## Exact-code recall by family",
        "",
        "A copy counts when its code is identical to its source's.",
        "",
        _family_table(scores, [*families, "seed", "extra", "all"], "recall_r0"),
        "",
        "## Recall at r* by family",
        "",
        "`n/a`: no radius keeps the false-match rate under the target, not even identical codes.",
        "",
        markdown_table(["hasher", "r*", "FMR at r*", "FMR at r*+1", "r* on real images only"],
                       [[n, fmt(scores[n].code.get("r_star")), _sci(scores[n].code.get("fmr_r_star")),
                         _sci(_fmr_next(scores[n])), fmt(scores[n].code.get("r_star_without_synthetic"))]
                        for n in names]),
        "",
        ("Most impostor pairs involve a synthetic distractor; the last column is `r*` over the "
         "real images' impostor pairs alone (sources and their copies), a coarser but harder estimate."),
        "",
        _family_table(scores, [*families, "seed", "extra", "all"], "recall_r_star"),
        "",
        "## Recall within radius r",
        "",
    ]
    for group in ("seed", "extra"):
        rows = [[n] + [fmt(scores[n].families.get(group, {}).get(f"recall_r{r}")) for r in RADII]
                for n in names]
        lines += [f"{group} families:", "", markdown_table(["hasher", *[f"r={r}" for r in RADII]], rows), ""]
    lines += [
        "## False matches among distinct images",
        "",
        ("False-match rate at exact code, per family (impostor pairs whose query is a source, a "
        "distractor or a copy of that family)."),
        "",
    ]
    rows = [[f] + [_sci(scores[n].families.get(f, {}).get("fmr_r0")) for n in names]
            for f in [*families, "all"]]
    rows.append(["all, without synthetic distractors"]
                + [_sci(scores[n].code.get("fmr_r0_without_synthetic")) for n in names])
    lines += [markdown_table(["family", *names], rows), ""]
    lines += [(f"The last row uses only the real images (sources and their copies), "
               f"{any_code.get('n_impostor_pairs_without_synthetic', 0):,} impostor pairs: it tells whether "
               "false matches come from the synthetic distractors or from real avatars."), ""]
    lines += ["## Groups formed by exact code (pairwise precision / recall / F1)", ""]
    lines += [_grouping_table(scores, names, "exact", "hasher"), ""]
    clustered = [n for n in names if "cluster_f1" in scores[n].families.get("seed", {})]
    if clustered:
        lines += ["## Groups formed by the cluster-detection job (pairwise precision / recall / F1)", "",
                  (f"`jobs/detect_clusters.py` with its default settings ({_default_links()}, "
                   "clusters of at least 3 accounts) run on the same hash job output; an item in no "
                   "cluster is a group of its own."), ""]
        lines += [_grouping_table(scores, clustered, "cluster", "model"), ""]
    else:
        lines += ["Groups from the cluster-detection job are scored only when the codes come from the "
                  "hash job (not with `--in-process`).", ""]
    lines += [
        "## The codes themselves",
        "",
        ("Over the distinct images (sources and distractors): bit balance is the mean of each bit "
        "(0.5 ideal); `max |mean-0.5|` is the worst bit; correlation is the mean absolute Pearson "
        "correlation between two different bits (0 ideal). DoF near the bit count means independent, "
        "fair bits."),
        "",
    ]
    rows = [[n, str(scores[n].nbits), str(scores[n].code.get("constant_bits", "n/a")),
             fmt(scores[n].code.get("bit_balance_max_deviation")),
             fmt(scores[n].code.get("mean_abs_bit_correlation")),
             fmt(scores[n].code.get("daugman_dof"), 1),
             fmt(scores[n].code.get("mean_impostor_distance"), 1),
             str(scores[n].code.get("n_items_without_code"))] for n in names]
    lines += [markdown_table(["hasher", "bits", "constant bits", "max abs(mean-0.5)", "mean abs corr",
                              "DoF", "mean impostor distance", "images without code"], rows), ""]
    lines += ["## Plots", ""]
    captions = {
        "eval_distances.png": "Genuine (copy vs source, all families) and impostor Hamming distances",
        "eval_recall_by_family.png": "Exact-code recall and recall at r*, by family",
        "eval_recall_vs_radius.png": "Recall against Hamming radius",
    }
    for name in plot_names:
        lines += [f"![{captions.get(name, name)}](img/{name})", ""]
    lines += [
        "## Reading the numbers",
        "",
        ("- Rerun on any folder of images (any size or mode): `.venv/bin/python -m silse_spark.evaluation "
        "--output DIR --no-demo --sources FOLDER [--distractors FOLDER] [--models VERSION ...]`; "
        "`--training-manifest` points the disjointness check at another training set."),
        ("- md5 is the exact-duplicate baseline: a copy is a different file, so it recalls nothing of the "
        "altered families by construction."),
        "- The per-bit balances of every hasher are in `evaluation.json` (`code.<hasher>.bit_balance`).",
        ("- Disjointness is checked by content hash (file bytes and decoded pixels); a training image "
        "that is a re-rendering of an evaluation source would not be caught."),
        "",
    ]
    return "\n".join(lines)


def write_report(output: Path, scores: dict[str, HasherScores], meta: dict[str, object],
                 descriptions: dict[str, str], families: Sequence[str]) -> dict[str, Any]:
    """Write ``evaluation.json``, ``evaluation.md`` and the plots under ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    doc = build_json(scores, meta, descriptions)
    (output / "evaluation.json").write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    plots = write_plots(scores, families, output / "img")
    (output / "evaluation.md").write_text(
        build_markdown(doc, scores, families, [p.name for p in plots]), encoding="utf-8")
    log.info("wrote %s and %s", output / "evaluation.md", output / "evaluation.json")
    return doc
