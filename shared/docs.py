"""The README's "Stages" section, made from what the stages declare (``StageSpec``: roles, config sections,
outputs), so that the documentation cannot drift from the code: ``make docs`` rewrites it, and a test fails when
the README's copy differs from what this prints.

    python -m shared.docs           # print the section
    python -m shared.docs --write   # rewrite it in README.md, between the markers
"""

from __future__ import annotations

import argparse
import sys

from .config import ROLES, discover_stages
from .sources import REPO_ROOT

BEGIN, END = "<!-- stages:begin (made by make docs from stages/*/params.py; do not edit) -->", "<!-- stages:end -->"


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


def readme_block(text: str) -> str | None:
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the section in README.md")
    args = parser.parse_args(argv)
    section = stages_section()
    if not args.write:
        sys.stdout.write(section)
        return 0
    readme = REPO_ROOT / "README.md"
    text = readme.read_text()
    if readme_block(text) is None:
        print(f"error: {readme} has no '{BEGIN}' ... '{END}' markers", file=sys.stderr)
        return 2
    new = text[: text.index(BEGIN) + len(BEGIN)] + "\n" + section + text[text.index(END) :]
    if new != text:
        readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
