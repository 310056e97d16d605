"""The documentation site's generated parts, so that the docs cannot drift from what they describe.

A page under docs/ holds a marker line ``<!-- generated: NAME -->`` where a generated part goes; the site's build
hook (docs/hooks.py, run by ``make docs``: ``mkdocs build --strict``) replaces it with what ``GENERATED[NAME]``
makes, at build time, so nothing generated is committed and re-measuring rewrites a data file, never a page:

- ``config``: every config key with its type, default and comment, from the pydantic sections the stages declare
  (``#:`` comments above a field are its documentation, as Sphinx reads them);
- ``stages``: each stage's roles, config sections and outputs, from its ``StageSpec``;
- ``methods``: explain's attribution methods, from their declarations (stages/explain/methods.py);
- ``test-times``: the measured test runs, from docs/data/test-times.yaml;
- ``benchmarks``: ``make bench``'s headline figures, from docs/data/benchmarks.yaml (each run's entry written by
  ``record-bench`` from outputs/bench/NAME.json through bench/NAME.py's ``headline``; the oldest carried by hand);
- ``demo-models EXPERIMENT``, ``demo-methods EXPERIMENT``: a demo run's held-out scores and trust figures (the
  tumour-mask localisation too, for volumes), from docs/data/demos/EXPERIMENT.json; ``demo-subregions
  EXPERIMENT``: a volume demo's map energy per class and tumour sub-region, from the same file.

    python -m shared.docs show NAME [ARGUMENT]    # print one generated part
    python -m shared.docs record-demo outputs/demo/report/summary.json --commit C   # the demo page's figures
    python -m shared.docs record-bench outputs/bench/train.json [...] --commit C     # the Benchmarks page's
"""

from __future__ import annotations

import argparse
import ast
import datetime
import inspect
import json
import os
import re
import sys
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import ROLES, TOP_KEYS, Resources, Section, StageSpec, _section_models, discover_stages
from .sources import REPO_ROOT

DATA = REPO_ROOT / "docs" / "data"
TEST_TIMES = DATA / "test-times.yaml"
BENCHMARKS = DATA / "benchmarks.yaml"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+)(?: ([a-z0-9_]+))? -->$", re.MULTILINE)


def _own_stages() -> dict[str, StageSpec]:
    """The repository's own stages (not those plugged in through ONCOXAI_STAGE_PATH), data first, then trainers,
    explainers, the rest."""
    specs = {n: s for n, s in discover_stages().items() if (REPO_ROOT / "stages" / n / "params.py").is_file()}

    def rank(name: str) -> int:
        provides = specs[name].provides
        return next((i for i, role in enumerate(("dataset", "classifiers", "explanations")) if role in provides), 3)

    return {name: specs[name] for name in sorted(specs, key=lambda n: (rank(n), n))}


def stages_section() -> str:
    lines = [
        "Roles: a stage reads every enabled stage that provides a role it requires or uses, never a stage by its name.",
        "",
    ]
    lines += [f"- `{role}`: {text}" for role, text in ROLES.items()]
    for name, spec in _own_stages().items():
        lines += ["", f"## {name}", "", spec.description + ".", ""]
        facts = [
            f"provides {', '.join(f'`{r}`' for r in spec.provides)}" if spec.provides else "",
            f"requires {', '.join(f'`{r}`' for r in spec.requires)}" if spec.requires else "",
            f"uses {', '.join(f'`{r}`' for r in spec.uses)} when enabled" if spec.uses else "",
            f"config sections {', '.join(f'`{s}`' for s in spec.sections)}" if spec.sections else "",
        ]
        lines += ["; ".join(f for f in facts if f).capitalize() + ".", ""]
        lines += [f"| `outputs/<experiment>/{name}/...` | what it holds | written |", "| --- | --- | --- |"]
        for out in spec.outputs:
            lines.append(f"| `{out.path}` | {out.description} | {out.when or 'always'} |")
        lines.append("| `manifest.json` | config, input hashes, packages, commit, device, wall time, files | always |")
    return "\n".join(lines) + "\n"


# ---- the configuration reference ----------------------------------------------------------------------------------


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """{field: the ``#:`` comment lines right above it, joined} for a pydantic model and its bases. Written by hand:
    pydantic reads docstrings below fields (``use_attribute_docstrings``), not the ``#:`` comments above them that
    this code base (and Sphinx's autodoc) uses."""
    comments: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass.__module__.startswith("pydantic"):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # made by create_model: no source of its own
            continue
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                above, i = [], node.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#:"):
                    above.insert(0, lines[i].strip()[2:].strip())
                    i -= 1
                if above:
                    comments[node.target.id] = " ".join(above)
    return comments


def _sub_section(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def type_text(annotation: Any) -> str:
    """A config reader's name for a type: ``a | b`` for a Literal, ``list of ...``, ``... | null``, ``path``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        from .config import INPUT_DIR, INPUT_FILE

        kind = "file" if INPUT_FILE in args[1:] else "folder" if INPUT_DIR in args[1:] else None
        return f"path ({kind})" if kind else type_text(args[0])
    if origin in (list, tuple):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {type_text(args[0])} → {type_text(args[1])}"
    if args and (origin is typing.Union or type(annotation).__name__ == "UnionType"):
        return " \\| ".join("null" if a is type(None) else type_text(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return {str: "text", int: "integer", float: "number", bool: "true \\| false"}.get(annotation, str(annotation))


def _bounds(field) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    found = []
    for meta in field.metadata:
        for attr, sign in signs.items():
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return f" ({', '.join(found)})" if found else ""


def _default_text(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    import yaml

    return f"`{yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix('...').strip()}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_tables(key: str, model: type[BaseModel], level: int, reader: str = "") -> list[str]:
    """One table per section (dotted key) and one per sub-section below it."""
    lines = [f"{'#' * level} `{key}`", ""] + ([f"Read by {reader}.", ""] if reader else [])
    doc = inspect.getdoc(model)
    if doc and doc != inspect.getdoc(Section):
        lines += [" ".join(doc.split()), ""]
    comments, subs = field_comments(model), []
    lines += ["| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        sub = _sub_section(field.annotation)
        if sub is not None:
            lines.append(f"| `{name}` | section | | see [`{key}.{name}`](#{(key + '.' + name).replace('.', '')}) |")
            subs.append((name, sub))
            continue
        kind = type_text(field.annotation) + _bounds(field)
        lines.append(f"| `{name}` | {kind} | {_default_text(field)} | {_cell(comments.get(name, ''))} |")
    for name, sub in subs:
        lines += [""] + _section_tables(f"{key}.{name}", sub, level + 1)
    return lines


def config_section() -> str:
    """Every key of an experiment config: the top-level keys, then each stage's sections in stage order."""
    lines = ["## Top-level keys", "", "| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    for key, (kind, default, text) in TOP_KEYS.items():
        shown = "required" if default is ... or hasattr(default, "metadata") else f"`{default}`"
        lines.append(f"| `{key}` | {type_text(kind)} | {shown} | {_cell(text)} |")
    lines += [""] + _section_tables(
        "resources.<stage>", Resources, 2, reader="the Snakemake workflow (shared.workflow)"
    )
    specs = _own_stages()
    models = _section_models(specs)
    for stage, spec in specs.items():
        for key in spec.sections:
            lines += [""] + _section_tables(key, models[key], 2, reader=stage)
    return "\n".join(lines) + "\n"


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

    from .artifacts import write_text_atomic

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


def methods_section() -> str:
    """A table of explain's attribution methods, made from their declarations (stages/explain/methods.py)."""
    from stages.explain.methods import METHODS

    lines = [
        "| method | signed | inputs | options (`explain.<key>`: defaults) | what it shows |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cls in METHODS.values():
        options = ""
        if cls.Options is not None:
            defaults = ", ".join(f"{k} {f.default!r}" for k, f in cls.Options.model_fields.items())
            options = f"`{cls.options_key}`: {defaults}"
        kinds = ", ".join(cls.kinds)
        lines.append(f"| `{cls.name}` | {'yes' if cls.signed else 'no'} | {kinds} | {options} | {cls.description} |")
    return "\n".join(lines) + "\n"


DEMOS = DATA / "demos"


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
    }
    return record


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


#: marker name -> what makes it
GENERATED: dict[str, Callable[[], str]] = {
    "config": config_section,
    "stages": stages_section,
    "methods": methods_section,
    "test-times": test_times_section,
    "benchmarks": benchmarks_section,
    "demo-models": demo_models_section,
    "demo-methods": demo_methods_section,
    "demo-subregions": demo_subregions_section,
}


def render(markdown: str, page: str = "<page>") -> str:
    """The page with each ``<!-- generated: NAME -->`` line replaced by its part; an unknown NAME is an error."""

    def part(match: re.Match) -> str:
        name, argument = match.group(1), match.group(2)
        if name not in GENERATED:
            raise ValueError(f"{page}: unknown generated part '{name}' (known: {', '.join(GENERATED)})")
        return GENERATED[name](*([argument] if argument else [])).rstrip("\n")

    return MARKER.sub(part, markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.docs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print one generated part")
    show.add_argument("name", choices=sorted(GENERATED))
    show.add_argument(
        "argument", nargs="?", help="the part's argument (demo-models, demo-methods, demo-subregions: the experiment)"
    )
    record = sub.add_parser("record-demo", help="keep a demo run's figures in docs/data/demos/ for the demo page")
    record.add_argument("summary", help="a demo run's report/summary.json (written to docs/data/demos/EXPERIMENT.json)")
    record.add_argument("--commit", required=True, help="the commit the run was made at")
    record.add_argument("--images-per-s", type=float, default=None, help="python -m bench.train's figure, if known")
    bench = sub.add_parser(
        "record-bench",
        help="keep benchmark runs' headline figures in docs/data/benchmarks.yaml for the Benchmarks page",
    )
    bench.add_argument("results", nargs="+", help="outputs/bench/NAME.json files of one run (read by bench/NAME.py)")
    bench.add_argument("--commit", required=True, help="the commit the run was made at (+dirty: with changes)")
    bench.add_argument(
        "--images-per-s",
        type=float,
        default=None,
        help="python -m bench.train's CPU images/s on this machine (default: train.json's, when among the results)",
    )
    bench.add_argument("--note", default=None, help="said beside the machine, e.g. that other work shared the CPU")
    args = parser.parse_args(argv)
    if args.command == "show":
        sys.stdout.write(GENERATED[args.name](*([args.argument] if args.argument else [])))
        return 0
    if args.command == "record-bench":
        try:
            entries = record_bench([Path(p) for p in args.results], args.commit, args.images_per_s, note=args.note)
        except (ValueError, OSError) as error:
            print(f"record-bench: {error}", file=sys.stderr)
            return 2
        for entry in entries:
            print(f"recorded {entry['file']} ({len(entry['figures'])} figures) at {entry['commit']}")
        print(f"wrote {os.path.relpath(BENCHMARKS)}")
        return 0
    machine = {"train_images_per_s": args.images_per_s, "cores": os.cpu_count()}
    from .artifacts import write_json_atomic

    record = record_demo(Path(args.summary), args.commit, machine)
    path = DEMOS / f"{record['experiment']}.json"
    write_json_atomic(path, record)
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
