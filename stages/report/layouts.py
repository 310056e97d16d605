"""The report's view of the layout-sensitivity check (explain's ``layout_sensitivity`` entry of each model): one row
per model (the main model, its same-layout control, each layout's model) with its held-out accuracy, marker precision
and its ranking's agreement with the main model's, overall and per class; and the conclusions marked not robust."""

from __future__ import annotations

from shared.evaluation.explanations import LayoutSensitivity


def _f(value, fmt: str = "{:.3f}") -> str:
    return "" if value is None else fmt.format(value)


def _agreement(per_class: dict, cls: str) -> str:
    v = per_class.get(cls)
    return "" if v is None else f"{v['top_k_overlap']:.2f} (ρ {v['spearman']:.2f})"


def layout_rows(model: str, check: LayoutSensitivity, classes: list[str]) -> list[dict]:
    """Rows of the report's layout table for one model; one row saying why for a skipped check."""
    if check.skipped:
        return [{"model": model, "layout": f"not checked: {check.skipped}"}]
    k, pk = check.top_k, check.precision_k
    rows = []
    entries = [("main", {"model": model, **(check.main or {})})]
    entries += [("main, first fold model (control)", check.control or {})]
    entries += list((check.layouts or {}).items())
    for layout, e in entries:
        per_class = e.get("per_class", {})
        row = {
            "model": e.get("model"),
            "layout": layout,
            "seed": _f(e.get("seed"), "{}"),
            "embedding": e.get("embedding") or "",
            "genes moved": _f(e.get("genes_moved"), "{:.0%}"),
            "accuracy": _f(e.get("accuracy")),
            "macro-F1": _f(e.get("macro_f1")),
            f"marker precision@{pk}" if pk else "marker precision": _f(e.get("marker_precision")),
            f"top-{k} overlap with main (mean)": _f(e.get("top_k_overlap"), "{:.2f}"),
            "Spearman with main (mean)": _f(e.get("spearman"), "{:.2f}"),
        }
        row.update({f"{cls}: top-{k} overlap (ρ)": _agreement(per_class, cls) for cls in classes})
        rows.append(row)
    return rows


def marked(model: str, check: LayoutSensitivity) -> list[str]:
    """The conclusions marked not robust to layout, one sentence each."""
    out = []
    for cls in check.not_robust or []:
        v = check.per_class[cls]
        control = v.get("control_top_k_overlap")
        out.append(
            f"{model} · {check.method}: the top {check.top_k} genes of {cls} are not robust to layout (median "
            f"overlap with the main model {v['median_top_k_overlap']:.2f} over {len(check.layouts)} layouts, below "
            f"{check.threshold:.2f}; smallest {v['min_top_k_overlap']:.2f}"
            + (f"; the same-layout control {control:.2f}" if control is not None else "")
            + ")"
        )
    return out
