"""oncoxai: explainable deep learning for tumour transcriptomics and radiogenomics, as an installable command
(``oncoxai``, ``oncoxai.cli``).

The repository keeps the layout its design names: ``shared/`` (the library), ``stages/`` (one package a stage) and
``fetch/`` at its root, imported by those top-level names (``from shared.config import load``), which is how make,
the tests and a checkout run them. An installed distribution must not claim such generic names in site-packages, so
the wheel holds them inside this package (``oncoxai/shared``, ``oncoxai/stages``, ``oncoxai/fetch``: setup.py maps
the folders there), and importing ``oncoxai`` makes the project's top-level names resolve to them: a finder first
on ``sys.meta_path`` answers for those names only, with the very module objects of ``oncoxai.<name>``, so each
module is loaded once whichever name imports it. That holds in the processes that import ``oncoxai`` (its command,
``python -m oncoxai.stages.<stage>``) and nowhere else; a process that never imports it sees no ``shared``. Why not
rename the imports instead: the project's modules import each other by these names in hundreds of places and its
stages must stay runnable as ``python -m stages.<stage>`` from a checkout; an alias keeps one spelling.

In a checkout (make setup's editable install) the names are the repository's own folders: ``INSTALLED`` is False,
no finder is added, and the root is put on ``sys.path`` (at its end) so that ``oncoxai``'s command finds them from
any folder.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

HERE = Path(__file__).resolve().parent
#: the project's top-level packages, as its modules import them
PROJECT_PACKAGES = ("shared", "stages", "fetch", "fixtures")
#: True in an installed wheel (the packages are inside this one), False in a checkout
INSTALLED = (HERE / "shared" / "__init__.py").is_file()


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)  # the module object itself: one copy under both names
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module):
        # already executed as oncoxai.<name>; the import system has just set the alias's spec on it: give it back
        # its own, so that its relative imports and importlib.reload see the module it is
        module.__spec__ = self.own_spec


class ProjectNames(importlib.abc.MetaPathFinder):
    """``shared``, ``stages.explain`` ... -> the modules ``oncoxai.shared``, ``oncoxai.stages.explain`` ..."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in PROJECT_PACKAGES:
            return None
        target_name = f"{__name__}.{fullname}"
        if importlib.util.find_spec(target_name) is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(target_name))


def module(name: str) -> str:
    """What ``python -m`` runs for the project's module ``name`` (``stages.report``) here."""
    return f"{__name__}.{name}" if INSTALLED else name


if INSTALLED:
    if not any(isinstance(f, ProjectNames) for f in sys.meta_path):
        sys.meta_path.insert(0, ProjectNames())
elif str(HERE.parent) not in sys.path:
    sys.path.append(str(HERE.parent))
