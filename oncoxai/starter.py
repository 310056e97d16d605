"""``oncoxai init``: a commented config written from a data file, so a first run needs no reading of the reference.

It reads what it needs and no more (an .h5ad opened backed: obs and a few hundred rows of X; a table's header, a
sample of its rows and its line count), then decides and says why in the config's comments:

- the format, from the file's name (.h5ad; .csv / .tsv, optionally gzipped, with ``--labels``); the other published
  layouts (GTEx .gct, TCGA, GEO, GDC) have shipped configs to start from, which it names;
- the values' scale, from a sample of X: whole non-negative numbers are counts, non-negative fractions log1p, and
  negatives mean scaled values, in which case ``.raw`` (log1p, as scanpy keeps it) is used when present;
- the label column: the obs (or labels-table) columns with 2 to 50 classes, each of at least 2 samples, ranked by
  their names (cell_type, subtype, label, ...) and then by fewer classes; the others are listed as alternatives;
- the group column (donor, patient, sample, batch ...: splits never cut a group) when a column's name says so;
- sizes that fit: the most variable genes on a square image (at most 1,024 genes, one a pixel), folds so that the
  smallest class keeps a sample in every validation fold (2 to 5), epochs by the number of samples.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import UserError

#: words in a column's name that make it a likely label, most telling first
LABEL_WORDS = ("cell_type", "celltype", "subtype", "label", "class", "type", "state", "diagnosis", "tumour", "tumor",
               "cluster", "louvain", "leiden")  # fmt: skip
#: words that make it a grouping (donor, patient ...): splits keep a group on one side
GROUP_WORDS = ("donor", "patient", "subject", "individual", "case", "sample", "batch", "mouse")
SAMPLED_ROWS = 300
MAX_GENES = 1024


def _format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".txt")):
        return "tsv"
    raise UserError(
        f"{path}: oncoxai init reads .h5ad, .csv and .tsv files; for GTEx .gct, TCGA, GEO series and GDC downloads "
        "start from configs/gtex.yaml, configs/tcga.yaml, configs/gse85217.yaml or configs/gdc-*.yaml "
        "(docs/how-to/reference-datasets.md)"
    )


def _scale(values: np.ndarray) -> tuple[str, str]:
    """(scale, why) from a sample of the values."""
    values = values[np.isfinite(values)]
    if values.size and values.min() < 0:
        return "normalized", "the values include negatives: normalised or scaled values, used as they are"
    if values.size and np.allclose(values, np.round(values)):
        return "counts", "whole non-negative numbers: counts (scaled per sample, then log1p)"
    return "log1p", "non-negative fractions: taken as log1p-normalised values, used as they are"


def candidates(table: pd.DataFrame, exclude: tuple[str, ...] = ()) -> tuple[list[tuple[str, int, int]], list[str]]:
    """([(label column, classes, smallest class)] best first, [group columns]) of a samples table."""
    labels, groups = [], []
    for column in table.columns:
        if column in exclude:
            continue
        values = table[column]
        if pd.api.types.is_float_dtype(values) and not values.dropna().apply(float.is_integer).all():
            continue  # a measurement, not a class
        counts = values.astype(str).value_counts()
        name = str(column).lower()
        if any(w in name for w in GROUP_WORDS) and 2 < len(counts) < len(values):
            groups.append(str(column))
        elif 2 <= len(counts) <= 50 and counts.min() >= 2 and len(counts) < len(values) / 2:
            labels.append((str(column), len(counts), int(counts.min())))

    def rank(item):
        name = item[0].lower()
        hits = [i for i, w in enumerate(LABEL_WORDS) if w in name]
        return (min(hits) if hits else len(LABEL_WORDS), item[1])

    return sorted(labels, key=rank), groups


def _read_h5ad(path: Path) -> dict:
    import anndata

    try:
        adata = anndata.read_h5ad(path, backed="r")
    except Exception as exc:
        raise UserError(f"{path}: not a readable .h5ad ({type(exc).__name__}: {exc})") from None
    rows = slice(0, min(SAMPLED_ROWS, adata.n_obs))

    def dense(x) -> np.ndarray:
        x = x[rows]
        return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)

    scale, why = _scale(dense(adata.X))
    use_raw = False
    n_genes = adata.n_vars
    if scale == "normalized" and adata.raw is not None:
        raw_scale, raw_why = _scale(dense(adata.raw.X))
        if raw_scale != "normalized":
            use_raw, scale, n_genes = True, raw_scale, adata.raw.n_vars
            why = f"X holds scaled values (negatives); .raw is used: {raw_why}"
    obs = adata.obs.copy()
    adata.file.close()
    return {"format": "h5ad", "obs": obs, "n_samples": len(obs), "n_genes": n_genes, "scale": scale, "why": why,
            "use_raw": use_raw}  # fmt: skip


def _open(path: Path):
    return gzip.open(path, "rt") if path.read_bytes()[:2] == b"\x1f\x8b" else open(path)


def _read_table(path: Path, fmt: str, labels: str | None) -> dict:
    if labels is None:
        raise UserError(f"{path}: a {fmt.upper()} matrix needs its labels table: oncoxai init {path} --labels TABLE")
    sep = "," if fmt == "csv" else "\t"
    label_path = Path(labels)
    try:
        table = pd.read_csv(label_path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise UserError(f"{label_path}: not a readable table ({exc})") from None
    samples = set(table.iloc[:, 0])
    with _open(path) as fh:
        header = fh.readline().rstrip("\n").split(sep)
        lines = 1 + sum(1 for _ in fh)
    genes_x_samples = len(samples & set(header[1:])) > len(header[1:]) / 2
    n_genes = lines - 1 if genes_x_samples else len(header) - 1
    sample = pd.read_csv(path, sep=sep, index_col=0, nrows=SAMPLED_ROWS)
    scale, why = _scale(sample.select_dtypes("number").to_numpy(dtype=np.float64))
    obs = table.set_index(table.columns[0])
    return {"format": fmt, "obs": obs, "n_samples": len(obs), "n_genes": n_genes, "scale": scale, "why": why,
            "use_raw": False, "labels": str(label_path), "sample_column": table.columns[0],
            "orientation": "genes_x_samples" if genes_x_samples else "samples_x_genes"}  # fmt: skip


def describe(data: Path, labels: str | None = None) -> dict:
    """What init found in ``data``: format, samples, genes, scale (and why), label and group candidates."""
    if not data.is_file():
        raise UserError(f"{data}: no such file")
    fmt = _format(data)
    found = _read_h5ad(data) if fmt == "h5ad" else _read_table(data, fmt, labels)
    found["label_candidates"], found["group_candidates"] = candidates(found["obs"])
    if not found["label_candidates"]:
        columns = ", ".join(map(str, found["obs"].columns)) or "none"
        raise UserError(
            f"{data}: no column with 2 to 50 classes of at least 2 samples each to predict (columns: {columns}); "
            "add one, or write label_key by hand from configs/pbmc68k.yaml"
        )
    return found


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def config_text(data: Path, found: dict) -> str:
    label, n_classes, smallest = found["label_candidates"][0]
    others = [f"{c} ({k} classes)" for c, k, _ in found["label_candidates"][1:6]]
    group = found["group_candidates"][0] if found["group_candidates"] else None
    n_genes = min(found["n_genes"], MAX_GENES)
    side = max(8, math.ceil(math.sqrt(n_genes)))
    # 20% held out; each validation fold keeps at least one sample of the smallest class
    folds = int(np.clip(math.floor(smallest * 0.8), 2, 5))
    epochs = 30 if found["n_samples"] < 2000 else 15
    name = "".join(ch if ch.isalnum() else "_" for ch in data.name.split(".")[0].lower()) or "experiment"
    lines = [
        f"# Written by oncoxai init from {data} ({found['n_samples']} samples x {found['n_genes']} genes). Every",
        "# choice below is a starting point, with why it was made; docs/reference/configuration.md lists every key.",
        f"name: {name}",
        "seed: 0",
        "device: auto",
        "stages: [preprocess, train_torch, explain, report]",
        "",
        "expression:",
        f"  path: {_yaml(str(data))}",
        f"  format: {found['format']}",
        f"  label_key: {_yaml(label)}   # {n_classes} classes, the smallest with {smallest} samples"
        + (f"; other candidates: {', '.join(others)}" if others else ""),
    ]
    if group:
        rest = found["group_candidates"][1:]
        lines.append(
            f"  group_key: {_yaml(group)}   # splits never cut a {group}"
            + (f"; other candidates: {', '.join(rest)}" if rest else "")
        )
    else:
        lines.append("  # group_key: donor   # no donor / patient / batch column found: add one if samples share one")
    if found["use_raw"]:
        lines.append("  use_raw: true")
    lines.append(f"  scale: {found['scale']}   # {found['why']}")
    if found["format"] != "h5ad":
        lines += [
            f"  labels: {_yaml(found['labels'])}",
            f"  sample_column: {_yaml(found['sample_column'])}",
            f"  orientation: {found['orientation']}",
        ]
    lines += [
        "",
        "preprocess:",
        f"  n_genes: {n_genes}   # the most variable genes (on the training samples), one a pixel"
        + (f" (the data has {found['n_genes']})" if found["n_genes"] > n_genes else ""),
        f"  height: {side}",
        f"  width: {side}",
        "  test_size: 0.2         # held out, never trained or tuned on",
        "",
        "train_torch:",
        "  models: [resnet18]",
        "  baselines: [logistic_regression, random_forest]",
        f"  folds: {folds}               # the smallest class keeps a sample in every validation fold",
        f"  epochs: {epochs}",
        "  schedule: onecycle",
        "  class_weights: balanced",
        "",
        "explain:",
        "  methods: [saliency, integrated_gradients, grad_cam]",
        "  integrated_gradients: {steps: 20}",
        "  faithfulness: {max_samples: 40, steps: 10}",
        "  sanity: {max_samples: 12}",
        "  stability: {max_samples: 40}",
        "",
    ]
    return "\n".join(lines)


def write_config(data: Path, out: Path, labels: str | None = None, force: bool = False) -> None:
    """Describe ``data``, write the config to ``out`` (atomically), and check that it validates."""
    import yaml

    from shared import config
    from shared.artifacts import write_text_atomic

    if out.exists() and not force:
        raise UserError(f"{out}: exists; choose another --out or pass --force to overwrite it")
    found = describe(data, labels)
    text = config_text(data, found)
    config.validate(yaml.safe_load(text), source=str(out))
    write_text_atomic(out, text)
    label = found["label_candidates"][0]
    print(f"wrote {out}: {found['n_samples']} samples, label_key {label[0]} ({label[1]} classes), scale "
          f"{found['scale']}; check it, then: oncoxai run {out}")  # fmt: skip
