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
  EXPERIMENT``: a volume demo's map energy per class and tumour sub-region, ``demo-shortcuts EXPERIMENT``: a demo's
  shortcut audit, from the same file.

The parts by concern: ``reference`` (``config``, ``stages``, ``methods``: from the code's declarations), ``records``
(``test-times``, ``benchmarks``, ``demo-*``: from docs/data/, and the ``record_*`` that write it), ``generated``
(the marker, the parts by name, ``render``) and ``cli`` (``python -m shared.docs``). Their names are importable from
here too; the data paths are read from ``records`` when a part is made, so patch them there.

    python -m shared.docs show NAME [ARGUMENT]    # print one generated part
    python -m shared.docs record-demo outputs/demo/report/summary.json --commit C   # the demo page's figures
    python -m shared.docs record-bench outputs/bench/train.json [...] --commit C     # the Benchmarks page's
"""

from __future__ import annotations

from .cli import main
from .generated import GENERATED, MARKER, render
from .records import (
    BENCHMARKS,
    DATA,
    DEMOS,
    TEST_TIMES,
    _demo,
    _entry_blocks,
    _entry_text,
    _load,
    _machine,
    _machine_words,
    _train_images_per_s,
    bench_entry,
    benchmarks_section,
    demo_methods_section,
    demo_models_section,
    demo_shortcuts_section,
    demo_subregions_section,
    demo_times_section,
    record_bench,
    record_demo,
    test_times_section,
)
from .reference import (
    _bounds,
    _cell,
    _default_text,
    _own_stages,
    _section_tables,
    _sub_section,
    config_section,
    field_comments,
    methods_section,
    stages_section,
    type_text,
)

__all__ = [
    "BENCHMARKS",
    "DATA",
    "DEMOS",
    "GENERATED",
    "MARKER",
    "TEST_TIMES",
    "_bounds",
    "_cell",
    "_default_text",
    "_demo",
    "_entry_blocks",
    "_entry_text",
    "_load",
    "_machine",
    "_machine_words",
    "_own_stages",
    "_section_tables",
    "_sub_section",
    "_train_images_per_s",
    "bench_entry",
    "benchmarks_section",
    "config_section",
    "demo_methods_section",
    "demo_shortcuts_section",
    "demo_subregions_section",
    "demo_times_section",
    "demo_models_section",
    "field_comments",
    "main",
    "methods_section",
    "record_bench",
    "record_demo",
    "render",
    "stages_section",
    "test_times_section",
    "type_text",
]
