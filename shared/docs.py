"""The README's generated sections, so that the documentation cannot drift from what it describes: "Stages", made
from what the stages declare (``StageSpec``: roles, config sections, outputs), the attribution methods' table, made
from their declarations (stages/explain/methods.py), and "Test times", made from the measured runs in
docs/test-times.yaml. ``make docs`` rewrites them, and a test fails when the README's copy differs
from what this prints.

    python -m shared.docs           # print the sections
    python -m shared.docs --write   # rewrite them in README.md, between their markers
"""

from __future__ import annotations

import argparse
import sys

from .config import ROLES, discover_stages
from .sources import REPO_ROOT

TEST_TIMES = REPO_ROOT / "docs" / "test-times.yaml"


def stages_section() -> str:
    """The section for the repository's own stages (not those plugged in through ONCOXAI_STAGE_PATH)."""
    specs = {n: s for n, s in discover_stages().items() if (REPO_ROOT / "stages" / n / "params.py").is_file()}
    order = sorted(
        specs,
        key=lambda n: (
            0
            if "dataset" in specs[n].provides
            else 1
            if "classifiers" in specs[n].provides
            else 2
            if "explanations" in specs[n].provides
            else 3,
            n,
        ),
    )
    lines = [
        "Roles: a stage reads every enabled stage that provides a role it requires or uses, never a stage by its name.",
        "",
    ]
    lines += [f"- `{role}`: {text}" for role, text in ROLES.items()]
    for name in order:
        spec = specs[name]
        lines += ["", f"#### {name}", "", spec.description + ".", ""]
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


def test_times_section() -> str:
    """A table of the measured runs of the README's test commands, newest (last in the file) first, each with its
    machine's speed."""
    import yaml

    runs = yaml.safe_load(TEST_TIMES.read_text())["runs"]

    def minutes(seconds) -> str:
        return "" if seconds is None else f"{seconds / 60:.1f} min"

    lines = [
        "| date | commit | machine: train images/s (cores) | `make setup` | `make test-fast` | `make test` | "
        "`make test-docker` | `.ci/run` | tests: unit / stage / e2e | how |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in reversed(runs):
        tests = run.get("tests") or {}
        counts = " / ".join(str(tests.get(layer, "")) for layer in ("unit", "stage", "e2e")) if tests else ""
        machine = run["machine"]
        lines.append(
            f"| {run['date']} | {run['commit']} | {machine['train_images_per_s']} ({machine['cores']}) | "
            f"{minutes(run.get('setup_s'))} | {minutes(run.get('test_fast_s'))} | {minutes(run.get('test_s'))} | "
            f"{minutes(run.get('test_docker_s'))} | {minutes(run.get('ci_run_s'))} | {counts} | {run['how']} |"
        )
    return "\n".join(lines) + "\n"


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


#: name -> (what makes it, the source named in its begin marker)
SECTIONS = {
    "methods": (methods_section, "stages/explain/methods.py"),
    "stages": (stages_section, "stages/*/params.py"),
    "test-times": (test_times_section, "docs/test-times.yaml"),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin (made by make docs from {SECTIONS[name][1]}; do not edit) -->", f"<!-- {name}:end -->"


def readme_block(text: str, name: str) -> str | None:
    begin, end = markers(name)
    if begin not in text or end not in text:
        return None
    return text[text.index(begin) + len(begin) : text.index(end)].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the sections in README.md")
    args = parser.parse_args(argv)
    made = {name: make() for name, (make, _) in SECTIONS.items()}
    if not args.write:
        sys.stdout.write("\n".join(made.values()))
        return 0
    readme = REPO_ROOT / "README.md"
    text = new = readme.read_text()
    for name, section in made.items():
        begin, end = markers(name)
        if readme_block(new, name) is None:
            print(f"error: {readme} has no '{begin}' ... '{end}' markers", file=sys.stderr)
            return 2
        new = new[: new.index(begin) + len(begin)] + "\n" + section + new[new.index(end) :]
    if new != text:
        readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
