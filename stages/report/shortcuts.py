"""The report's view of the shortcut audit (explain's ``shortcuts`` entry of each model): one row per model and
feature set (its predictions, each method's top genes) with the class's skill and each nuisance's skill and
permutation p, and what is flagged."""

from __future__ import annotations


def _cell(result: dict) -> str:
    if "skipped" in result:
        return f"not tested ({result['skipped']})"
    return f"{result['skill']:.2f} (p {result['p']:.2g})"


def shortcut_rows(model: str, audit: dict) -> list[dict]:
    """Rows of the report's shortcut table for one model's audit; one row saying why for a skipped audit."""
    if "skipped" in audit:
        return [{"model": model, "features": "", "class": f"not audited: {audit['skipped']}"}]
    sets = [("predicted probabilities", audit["predictions"])] + [
        (f"{method}: top {audit['top_k']} genes per class ({r['genes']} genes)", r)
        for method, r in audit["methods"].items()
    ]
    rows = []
    for what, result in sets:
        row = {"model": model, "features": what, "class": _cell(result["class"])}
        row.update({name: _cell(r) for name, r in result["nuisances"].items()})
        row["flagged"] = ", ".join(result["flags"]) or "no"
        rows.append(row)
    return rows
