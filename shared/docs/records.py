"""The measured figures the docs site shows, kept in docs/data/ and rendered from there: ``test-times`` (the
measured test runs, docs/data/test-times.yaml), ``benchmarks`` (``make bench``'s headline figures,
docs/data/benchmarks.yaml, each run's entry written by ``record_bench`` from outputs/bench/NAME.json through
bench/NAME.py's ``headline``; the oldest carried by hand), and ``demo-models EXPERIMENT``, ``demo-methods
EXPERIMENT`` (a demo run's held-out scores and trust figures, docs/data/demos/EXPERIMENT.json, kept by
``record_demo``).

The data paths (``TEST_TIMES``, ``BENCHMARKS``, ``DEMOS``) are read from this module when a function runs, so a test
that points them elsewhere patches them here (``shared.docs.records``), not on the package."""

from __future__ import annotations

import datetime
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from ..sources import REPO_ROOT
from .reference import _cell

DATA = REPO_ROOT / "docs" / "data"
TEST_TIMES = DATA / "test-times.yaml"
BENCHMARKS = DATA / "benchmarks.yaml"
DEMOS = DATA / "demos"


# ---- measured figures -----------------------------------------------------------------------------------------


def _load(path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def _machine(machine: dict) -> str:
    """A table cell under the heading "machine: train images/s (cores)"."""
    speed = machine.get("train_images_per_s")
    return f"{'not recorded' if speed is None else speed} ({machine.get('cores', '?')})"


def _machine_words(machine: dict) -> str:
    """The same facts in a sentence: "2 cores, 296 train images/s"."""
    cores, speed = machine.get("cores"), machine.get("train_images_per_s")
    cores_text = "cores not recorded" if cores is None else f"{cores} cores"
    speed_text = "train images/s not recorded" if speed is None else f"{speed} train images/s"
    return f"{cores_text}, {speed_text}"


def test_times_section() -> str:
    """A table of the measured runs of the README's test commands, newest (last in the file) first, each with its
    machine's speed."""

    def minutes(seconds) -> str:
        return "" if seconds is None else f"{seconds / 60:.1f} min"

    lines = [
        "| date | commit | machine: train images/s (cores) | `make setup` | `make test-fast` | `make test` | "
        "`make test-docker` | `.ci/run` | tests: unit / stage / e2e | how |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in reversed(_load(TEST_TIMES)["runs"]):
        tests = run.get("tests") or {}
        counts = " / ".join(str(tests.get(layer, "")) for layer in ("unit", "stage", "e2e")) if tests else ""
        lines.append(
            f"| {run['date']} | {run['commit']} | {_machine(run['machine'])} | "
            f"{minutes(run.get('setup_s'))} | {minutes(run.get('test_fast_s'))} | {minutes(run.get('test_s'))} | "
            f"{minutes(run.get('test_docker_s'))} | {minutes(run.get('ci_run_s'))} | {counts} | {run['how']} |"
        )
    return "\n".join(lines) + "\n"


def benchmarks_section() -> str:
    """One section per benchmark file of docs/data/benchmarks.yaml, its runs newest (last in the file) first, each
    a table: what was measured, ours, the reference, the ratio, the bar."""
    by_file: dict[str, list[dict]] = {}
    for bench in _load(BENCHMARKS)["benchmarks"]:
        by_file.setdefault(bench["file"], []).append(bench)
    lines: list[str] = []
    for file, runs in by_file.items():
        lines += [f"### `{file}`", ""]
        for bench in reversed(runs):
            when = (
                f"Measured {bench['date']} at commit {bench['commit']}, recorded from `outputs/bench/{file}` by "
                "`python -m shared.docs record-bench`"
                if bench.get("generated")
                else f"Measured {bench['date']}, carried over by hand from the README's earlier prose"
            )
            note = f"; {bench['note']}" if bench.get("note") else ""
            lines += [
                f"**{when}**; machine: {_machine_words(bench['machine'])}{note}.",
                "",
                bench["what"].strip(),
                "",
                f"Reference: {bench['reference']}. Command: `{bench['command']}`.",
                "",
                "| measure | ours | reference | ratio | bar |",
                "| --- | --- | --- | --- | --- |",
            ]
            for row in bench["figures"]:
                cells = [row["measure"], *(str(row.get(k, "")) for k in ("ours", "reference", "ratio", "bar"))]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            lines.append("")
    return "\n".join(lines)


def bench_entry(path: Path, commit: str, machine: dict, note: str | None = None) -> dict:
    """The Benchmarks page's entry for one benchmark's JSON (outputs/bench/NAME.json): its figures as bench/NAME.py's
    ``headline`` reads them, with that module's ``WHAT`` and ``REFERENCE``, the command, the date the file was
    written, the commit and the machine."""
    import importlib

    path = Path(path)
    try:
        module = importlib.import_module(f"bench.{path.stem}")
    except ModuleNotFoundError as error:
        raise ValueError(f"{path}: no benchmark bench/{path.stem}.py to read it ({error})") from None
    if not callable(getattr(module, "headline", None)):
        raise ValueError(f"{path}: bench/{path.stem}.py has no headline(result) to read it")
    figures = module.headline(json.loads(path.read_text()))
    return {
        "file": path.name,
        "command": getattr(module, "COMMAND", f"python -m bench.{path.stem}"),
        "date": datetime.date.fromtimestamp(path.stat().st_mtime).isoformat(),
        "commit": commit,
        "generated": True,
        "machine": machine,
        "reference": module.REFERENCE,
        "what": " ".join(module.WHAT.split()),
        "figures": figures,
    } | ({"note": note} if note else {})


def _train_images_per_s(paths: list[Path]) -> float | None:
    """python -m bench.train's CPU images/s, when its train.json is among the files recorded together (one run)."""
    train = next((Path(p) for p in paths if Path(p).name == "train.json"), None)
    if train is None:
        return None
    doc = json.loads(train.read_text())
    speed = (doc.get("cpu") or doc).get("ours_images_per_s")
    return None if speed is None else round(speed)


def _entry_blocks(text: str) -> tuple[str, list[str]]:
    """docs/data/benchmarks.yaml split, as text, into what precedes the first entry and one block per entry (from
    its ``  - `` line to the next), so that an update keeps every other entry exactly as written."""
    starts = [m.start() for m in re.finditer(r"^  - ", text, re.MULTILINE)]
    if not starts:
        return text, []
    ends = starts[1:] + [len(text)]
    return text[: starts[0]], [text[a:b] for a, b in zip(starts, ends, strict=True)]


def _entry_text(entry: dict) -> str:
    import yaml

    dumped = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=1 << 16, default_flow_style=None)
    return textwrap.indent(dumped, "  ")


def record_bench(
    paths: list[Path],
    commit: str,
    images_per_s: float | None = None,
    target: Path | None = None,
    note: str | None = None,
) -> list[dict]:
    """Add one entry per benchmark JSON to docs/data/benchmarks.yaml (``target``), replacing an entry of the same
    file and commit, and leaving every other entry as it is; written atomically. The machine's speed is
    ``images_per_s`` or else train.json's, when that is among ``paths`` (measured in the same run); ``note``, what
    the page should say about the run (the machine was loaded, say)."""
    import yaml

    from ..artifacts import write_text_atomic

    target = Path(target or BENCHMARKS)
    speed = round(images_per_s) if images_per_s is not None else _train_images_per_s(paths)
    machine = {"train_images_per_s": speed, "cores": os.cpu_count()}
    entries = [bench_entry(Path(p), commit, machine, note) for p in paths]
    head, blocks = _entry_blocks(target.read_text())
    for entry in entries:
        text = _entry_text(entry)
        same = [
            i
            for i, block in enumerate(blocks)
            if (old := yaml.safe_load("benchmarks:\n" + block)["benchmarks"][0]).get("generated")
            and (old["file"], old["commit"]) == (entry["file"], entry["commit"])
        ]
        if same:
            blocks[same[0]] = text
        else:
            if blocks and not blocks[-1].endswith("\n"):
                blocks[-1] += "\n"
            blocks.append(text)
    out = head + "".join(blocks)
    if yaml.safe_load(out)["benchmarks"] != [yaml.safe_load("benchmarks:\n" + b)["benchmarks"][0] for b in blocks]:
        raise RuntimeError(f"{target}: the updated text does not read back as its entries")
    write_text_atomic(target, out)
    return entries


# ---- the demo page ------------------------------------------------------------------------------------------


def record_demo(summary_path: Path, commit: str, machine: dict) -> dict:
    """The figures the demo page shows, kept from a demo run's summary.json (``python -m shared.docs record-demo``):
    each model's held-out scores and each method's trust figures, with where and when they were measured."""
    summary = json.loads(Path(summary_path).read_text())
    methods = {}
    for key, e in summary.get("explanations", {}).items():
        faith, sanity, stab = e.get("faithfulness") or {}, e.get("sanity") or {}, e.get("stability") or {}
        k = next((k for k in e if k.startswith("marker_precision_at_")), None)
        methods[key] = {
            "layer": e.get("layer"),
            "precision_k": int(k.rsplit("_", 1)[1]) if k else None,
            "precision": e.get(k) if k else None,
            **{
                f: faith.get(f)
                for f in ("deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc")
            },
            **{f: faith.get(f) for f in ("p_deletion", "p_insertion", "deletion_better_than_random")},
            "insertion_better_than_random": faith.get("insertion_better_than_random"),
            "sanity_spearman": sanity.get("spearman_all_at_once"),
            "insensitive_to_model": sanity.get("insensitive_to_model"),
            "folds_shared_top_k": (stab.get("folds") or {}).get("shared_top_k"),
            "draws_shared_top_k": (stab.get("draws") or {}).get("shared_top_k"),
            # volumes: the map's share of the tumour mask against chance, for the first target scored
            "localisation": next(iter((e.get("localisation") or {}).values()), None),
            # volumes: the same per class and tumour sub-region (BraTS labels)
            "subregions": (e.get("subregions") or {}).get("per_class"),
        }
    models = {
        name: {k: m[k] for k in ("macro_f1", "accuracy", "macro_auc", "kind")} for name, m in summary["models"].items()
    }
    record = {
        "experiment": summary["experiment"],
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "n_test": summary["n_test"],
        "models": models,
        "methods": methods,
        # the shortcut audit's headline per model (summary.json's), when the run made one
        "shortcuts": summary.get("shortcuts") or None,
        # each stage's own wall time (its manifest's), in the order they ran: summary.json in EXPERIMENT/report/
        "stage_seconds": _stage_seconds(Path(summary_path).resolve().parent),
    }
    return record


def _stage_seconds(report: Path) -> dict[str, float]:
    """Each finished stage's wall time from its manifest, in the order the stages started; ``report``: the report
    stage's folder, beside the others (none when it is not a folder named report)."""
    runs = []
    for manifest in report.parent.glob("*/manifest.json") if report.name == "report" else ():
        m = json.loads(manifest.read_text())
        if "wall_time_s" in m:
            runs.append((m.get("started", ""), m.get("stage", manifest.parent.name), round(float(m["wall_time_s"]), 1)))
    return {stage: seconds for _, stage, seconds in sorted(runs)}


def demo_times_section(experiment: str = "demo") -> str:
    """The recorded run's stage times, with the machine's speed (train images/s) to scale them by."""
    demo = _demo(experiment)
    times = demo.get("stage_seconds")
    if not times:
        return f"The recorded run of {experiment} (`docs/data/demos/{experiment}.json`) keeps no stage times.\n"
    parts = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in times.items())
    return (
        f"Measured {demo['date']} at commit {demo['commit']} on a machine of {_machine_words(demo['machine'])}: "
        f"{parts}; {sum(times.values()):.0f} s of stage time in all (each stage's own wall time, from its manifest; "
        "Python start-up and planning add a few seconds per stage).\n"
    )


def _demo(experiment: str) -> dict:
    return json.loads((DEMOS / f"{experiment}.json").read_text())


def demo_models_section(experiment: str = "demo") -> str:
    demo = _demo(experiment)
    lines = [
        f"Measured {demo['date']} at commit {demo['commit']} on the {demo['n_test']} held-out test samples "
        f"(`docs/data/demos/{experiment}.json`):",
        "",
        "| model | kind | macro-F1 | accuracy | macro ROC-AUC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, m in demo["models"].items():
        lines.append(f"| {name} | {m['kind']} | {m['macro_f1']:.3f} | {m['accuracy']:.3f} | {m['macro_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def demo_methods_section(experiment: str = "demo") -> str:
    demo = _demo(experiment)

    def num(value, fmt="{:.3f}") -> str:
        return "" if value is None else fmt.format(value)

    volumes = any(m.get("localisation") for m in demo["methods"].values())
    lines = [
        "| method | marker precision@k | deletion AUC (random) | insertion AUC (random) | faithful | "
        "corr. with randomised model | top-k shared by fold models (by random draws) |"
        + (" share of the map in the tumour mask (chance), patients above chance, sign test p |" if volumes else ""),
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if volumes else ""),
    ]
    several = len({key.split("/", 1)[0] for key in demo["methods"]}) > 1
    for key, m in demo["methods"].items():
        failed = [w for w in ("deletion", "insertion") if m[f"{w}_better_than_random"] is False]
        faithful = "yes" if not failed else f"**no: {' and '.join(failed)} not shown better than random**"
        if m["deletion_auc"] is None:  # a provider that does not run the check (train_tf_gradcam)
            faithful = "not measured"
        sanity = num(m["sanity_spearman"], "{:.2f}") + (
            " **: insensitive to the model**" if m["insensitive_to_model"] else ""
        )
        shared = num(m["folds_shared_top_k"], "{:.2f}") + (
            f" ({m['draws_shared_top_k']:.2f})" if m["draws_shared_top_k"] is not None else ""
        )
        name = (key if several else key.split("/", 1)[1]) + (f" ({m['layer']})" if m["layer"] else "")
        deletion = (
            f"{num(m['deletion_auc'])} ({num(m['random_deletion_auc'])})" if m["deletion_auc"] is not None else ""
        )
        insertion = (
            f"{num(m['insertion_auc'])} ({num(m['random_insertion_auc'])})" if m["insertion_auc"] is not None else ""
        )
        precision = num(m["precision"], "{:.2f}")
        row = f"| {name} | {precision} | {deletion} | {insertion} | {faithful} | {sanity} | {shared} |"
        if volumes:
            loc = m.get("localisation")
            row += (
                f" {loc['cam_in_mask_mean']:.3f} ({loc['chance_mean']:.3f}), {loc['above_chance']} of {loc['n']}, "
                f"p = {loc['p_sign_test']:.2g} |"
                if loc
                else " |"
            )
        lines.append(row)
    return "\n".join(lines) + "\n"


def demo_subregions_section(experiment: str = "demo_mri") -> str:
    """A volume demo's map energy per class and tumour sub-region against the region's share of the brain, from
    the recorded file (a line saying so where the recorded run has none)."""
    from shared.evaluation.localisation import BRATS_REGIONS

    demo = _demo(experiment)
    recorded = {key: m["subregions"] for key, m in demo["methods"].items() if m.get("subregions")}
    if not recorded:
        return f"(`docs/data/demos/{experiment}.json` records no sub-region table.)\n"
    several = len({key.split("/", 1)[0] for key in recorded}) > 1
    lines = [
        "| method | class | region | map's energy share (region's share of the brain) | exams above | "
        "sign test p (two-sided) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, per_class in recorded.items():
        name = key if several else key.split("/", 1)[1]
        for cls, per_region in per_class.items():
            for region, r in per_region.items():
                what = f"{region} ({BRATS_REGIONS[region].description})" if region in BRATS_REGIONS else region
                lines.append(
                    f"| {name} | {cls} | {what} | {r['energy_share_mean']:.3f} ({r['volume_share_mean']:.3f}) | "
                    f"{r['above_chance']} of {r['n']} | {r['p_sign_test']:.2g} |"
                )
    # the smallest p of an exact two-sided sign test over n exams is 2 / 2^n: below 0.05 only from 6 exams on
    small = sorted({r["n"] for pc in recorded.values() for pr in pc.values() for r in pr.values() if r["n"] < 6})
    if small:
        lines += [
            "",
            f"With {' or '.join(map(str, small))} exams a row cannot reach p < 0.05: an exact two-sided sign test's "
            "smallest p over n exams is 2 / 2ⁿ.",
        ]
    return "\n".join(lines) + "\n"


def demo_shortcuts_section(experiment: str = "demo") -> str:
    """A demo run's shortcut audit (the report's table, from the recorded file): per model and feature set the
    class's and each nuisance's skill and permutation p, and the flags; a line saying so where the run has none."""
    import pandas as pd

    from shared.evaluation.shortcuts import table_rows

    recorded = _demo(experiment).get("shortcuts")
    if not recorded:
        return f"(`docs/data/demos/{experiment}.json` records no shortcut audit.)\n"
    rows = [row for model, audit in recorded.items() for row in table_rows(model, audit)]
    table = pd.DataFrame(rows).fillna("")
    lines = ["| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    lines += [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"
