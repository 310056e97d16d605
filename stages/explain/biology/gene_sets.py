"""Gene sets: GMT files read, their genes matched to the data's (symbols or ids), and the over-representation of
a class's top genes in each set (hypergeometric test, Benjamini-Hochberg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from shared.errors import UserError
from shared.evaluation.rankings import gene_lookup, repeated_symbols
from shared.logs import get_logger

log = get_logger("stages.explain")


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """A GMT file (MSigDB's format: one set a line, ``name <tab> description <tab> gene <tab> gene ...``) ->
    {name: genes}. A line with fewer than three fields, an empty name or a repeated name is an error naming the
    file and the line; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"explain.biology.gene_sets: {path} does not exist; give the path of a GMT file")
    sets: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not a text GMT file ({exc.reason} at byte {exc.start}); give a plain-text .gmt"
        ) from exc
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        genes = [g.strip() for g in fields[2:] if g.strip()]
        if len(fields) < 3 or not fields[0].strip() or not genes:
            raise UserError(
                f"{path}:{n}: a GMT line is 'name<TAB>description<TAB>gene<TAB>gene...' with at least one "
                f"gene (this one has {len(fields)} tab-separated fields); fix or remove the line"
            )
        name = fields[0].strip()
        if name in sets:
            raise UserError(f"{path}:{n}: gene set '{name}' is named twice; gene set names must be unique")
        sets[name] = list(dict.fromkeys(genes))
    if not sets:
        raise UserError(f"{path}: no gene set in the file; a GMT file has one set a line")
    return sets


def match_gene_sets(
    sets: dict[str, list[str]], genes: np.ndarray, symbols: np.ndarray | None, path: str, min_size: int
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each set -> the indices of the data's genes it names (by identifier or, where the data has symbols, by
    symbol). Sets matching no gene are named in a warning, none matching at all is an error; sets with fewer than
    ``min_size`` genes in the data are left out (returned with the reason)."""
    position = {g: i for i, g in enumerate(np.asarray(genes).astype(str))}
    lookup = gene_lookup(genes, symbols)
    repeated = repeated_symbols([g for members in sets.values() for g in members], lookup)
    if repeated:
        log.info(
            "explain.biology.gene_sets (%s): symbols carried by several genes, each counted: %s",
            path,
            ", ".join(repeated[:10]),
        )
    matched, left_out = {}, {}
    for name, members in sets.items():
        idx = np.unique([position[i] for g in members for i in lookup.get(g, ())]).astype(int)
        if not len(idx):
            left_out[name] = "no gene in the data"
        elif len(idx) < min_size:
            left_out[name] = f"{len(idx)} genes in the data (min_set_size {min_size})"
        else:
            matched[name] = idx
    none = [n for n, why in left_out.items() if why == "no gene in the data"]
    if len(none) == len(sets):
        raise UserError(
            f"explain.biology.gene_sets ({path}): no gene set shares a gene with the data (e.g. "
            f"{', '.join(list(sets)[:3])}); check the identifiers (symbols vs Ensembl ids)"
        )
    if none:
        log.warning(
            "explain.biology.gene_sets (%s): %d sets share no gene with the data, left out: %s",
            path,
            len(none),
            ", ".join(none[:10]) + (" ..." if len(none) > 10 else ""),
        )
    if not matched:
        raise UserError(
            f"explain.biology.gene_sets ({path}): no gene set has min_set_size ({min_size}) genes in the "
            "data; lower explain.biology.min_set_size or use larger sets"
        )
    return matched, left_out


def over_representation(chosen: np.ndarray, sets: dict[str, np.ndarray], n_background: int) -> pd.DataFrame:
    """One-sided hypergeometric test of each set among ``chosen`` gene indices (background: ``n_background``
    genes), Benjamini-Hochberg over the sets: gene_set, set_size, overlap, expected, odds_ratio, p, p_adj."""
    chosen_set = set(int(i) for i in chosen)
    rows = []
    for name, idx in sets.items():
        a = len(chosen_set.intersection(idx.tolist()))
        k, m = len(chosen_set), len(idx)
        p = float(stats.hypergeom.sf(a - 1, n_background, m, k))
        b, c = k - a, m - a
        d = n_background - a - b - c
        rows.append(
            {
                "gene_set": name,
                "set_size": m,
                "overlap": a,
                "expected": k * m / n_background,
                "odds_ratio": (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)),
                "p": p,
            }
        )
    table = pd.DataFrame(rows)
    table["p_adj"] = stats.false_discovery_control(table["p"].to_numpy(), method="bh") if len(table) else []
    return table.sort_values(["p", "gene_set"], kind="stable").reset_index(drop=True)


def enrichment_summary(table: pd.DataFrame) -> dict:
    """Each class's three best gene sets (enrichment table -> JSON records)."""
    return {
        cls: g.head(3)[["gene_set", "overlap", "p", "p_adj"]].to_dict(orient="records")
        for cls, g in table.groupby("class", sort=False)
    }
