"""python -m stages.report.experiments [--outputs DIR]: the index page linking every experiment's report.

Reads ``<outputs>/<experiment>/report/summary.json`` of each finished experiment and writes ``<outputs>/index.html``
(atomically): one row per experiment with its held-out size, its best model by macro-F1 and a link to its report.
Self-contained like the reports (nothing fetched); `make demo` writes it after its experiments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared.artifacts import outputs_root, write_text_atomic


def experiments(root: Path) -> list[dict]:
    rows = []
    for summary_path in sorted(root.glob("*/report/summary.json")):
        summary = json.loads(summary_path.read_text())
        models = summary.get("models", {})
        best = max(models.items(), key=lambda kv: kv[1]["macro_f1"], default=(None, None))
        rows.append(
            {
                "name": summary.get("experiment", summary_path.parent.parent.name),
                "title": summary.get("title", ""),
                "href": summary_path.parent.relative_to(root).as_posix() + "/index.html",
                "n_test": summary.get("n_test"),
                "n_models": len(models),
                "best": best[0],
                "best_f1": best[1]["macro_f1"] if best[1] else None,
                "best_auc": best[1]["macro_auc"] if best[1] else None,
                "n_explanations": len(summary.get("explanations", {})),
            }
        )
    return rows


def write_index(root: Path) -> Path:
    rows = experiments(root)
    if not rows:
        raise FileNotFoundError(f"{root}: no finished experiment (no */report/summary.json); run make all first")
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())
    html = env.get_template("experiments.html").render(
        rows=rows, generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )
    out = root / "index.html"
    write_text_atomic(out, html)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.report.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=None, help="the outputs folder (default: outputs/)")
    args = parser.parse_args(argv)
    root = args.outputs or outputs_root()
    try:
        out = write_index(root)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
