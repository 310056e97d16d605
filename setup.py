"""Packaging beside pyproject.toml (which holds the metadata): the wheel keeps the project's packages inside
``oncoxai`` (``oncoxai/shared``, ``oncoxai/stages``, ``oncoxai/fetch``, ``oncoxai/fixtures``), so an installed
distribution claims no generic top-level name; ``oncoxai/__init__.py`` says how the modules still import each other
as ``shared``, ``stages`` ... . The package list is made from the folders (every one with an ``__init__.py``), so a
new module or subpackage needs no edit here. The configs ship as data (``share/oncoxai/configs``) for
``oncoxai demo`` and ``oncoxai init``'s examples.
"""

from pathlib import Path

from setuptools import setup

#: the repository's folders that become ``oncoxai.<name>``
ROOTS = ("shared", "stages", "fetch", "fixtures")
HERE = Path(__file__).resolve().parent


def packages() -> list[str]:
    found = ["oncoxai"]
    for root in ROOTS:
        for init in sorted((HERE / root).rglob("__init__.py")):
            found.append(".".join(("oncoxai", *init.parent.relative_to(HERE).parts)))
    return found


setup(
    packages=packages(),
    package_dir={"oncoxai": "oncoxai", **{f"oncoxai.{root}": root for root in ROOTS}},
    package_data={"oncoxai.stages.report": ["templates/*.html"], "oncoxai.fetch": ["datasets.yaml"]},
    data_files=[("share/oncoxai/configs", sorted(p.relative_to(HERE).as_posix() for p in HERE.glob("configs/*.yaml")))],
)
