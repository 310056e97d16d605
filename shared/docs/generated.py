"""The marker a page holds where a generated part goes, the parts by name, and ``render``, which fills a page's
markers (docs/hooks.py calls it for each page at build time)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .records import (
    benchmarks_section,
    demo_methods_section,
    demo_models_section,
    demo_shortcuts_section,
    demo_subregions_section,
    demo_times_section,
    test_times_section,
)
from .reference import config_section, methods_section, stages_section

MARKER = re.compile(r"^<!-- generated: ([a-z-]+)(?: ([a-z0-9_]+))? -->$", re.MULTILINE)


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
    "demo-shortcuts": demo_shortcuts_section,
    "demo-times": demo_times_section,
}


def render(markdown: str, page: str = "<page>") -> str:
    """The page with each ``<!-- generated: NAME -->`` line replaced by its part; an unknown NAME is an error."""

    def part(match: re.Match) -> str:
        name, argument = match.group(1), match.group(2)
        if name not in GENERATED:
            raise ValueError(f"{page}: unknown generated part '{name}' (known: {', '.join(GENERATED)})")
        return GENERATED[name](*([argument] if argument else [])).rstrip("\n")

    return MARKER.sub(part, markdown)
