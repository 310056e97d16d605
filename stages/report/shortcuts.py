"""The report's view of the shortcut audit (explain's ``shortcuts`` entry of each model): one row per model and
feature set (its predictions, each method's top genes) with the class's skill and each nuisance's skill and
permutation p, and what is flagged; for a volume model, one row per method with its map's share outside the brain
and at the volume's border against chance."""

from __future__ import annotations


def _cell(result: dict) -> str:
    if "skipped" in result:
        return f"not tested ({result['skipped']})"
    return f"{result['skill']:.2f} (p {result['p']:.2g})"


def _edge(e: dict) -> str:
    share = f"{e['share_mean']:.3f} ({e['chance_mean']:.3f})"
    return f"{share}, {e['above_chance']} of {e['n']} above, p {e['p_sign_test']:.2g}"


def shortcut_rows(model: str, audit: dict) -> list[dict]:
    """Rows of the report's shortcut table for one model's audit; one row saying why for a skipped audit."""
    if "skipped" in audit:
        return [{"model": model, "features": "", "class": f"not audited: {audit['skipped']}"}]
    if "volume" in audit:  # volumes: each method's map outside the brain and at the volume's border
        return [
            {
                "model": model,
                "features": f"{method}: map energy",
                **{
                    f"{edge.replace('_', ' ')} (chance)": _edge(e[edge])
                    for edge in ("outside_brain", "border")
                    if edge in e
                },
                "flagged": ", ".join(e["flags"]) or "no",
            }
            for method, e in audit["volume"].items()
        ]
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
