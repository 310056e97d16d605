"""Keeping TensorFlow out of the torch processes.

One local environment holds torch and TensorFlow (``make setup``), but a torch process must never load TensorFlow:
tensorboard's ``SummaryWriter`` imports it when it is installed, MONAI imports it through its optional-import
checks, and umap-learn imports Keras (and through it TensorFlow) for ParametricUMAP; TensorFlow's native libraries
loaded before torchvision's triton then crash the interpreter (a segmentation fault on ``import torchvision.ops``),
and they cost seconds for nothing. The stage images never have both, so a torch stage behaves locally as in its
container: these libraries fall back to their TensorFlow-free paths, as they do where TensorFlow is not installed.

The block is an import finder that answers "no such module", not a ``None`` entry in ``sys.modules``: libraries
such as einops treat any name present in ``sys.modules`` as an imported framework and import it.
"""

from __future__ import annotations

import sys
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec

TENSORFLOW = ("tensorflow", "keras")


class _Refuse(Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(
            f"import of {spec.name} halted: TensorFlow is kept out of this torch process (shared/frameworks.py)",
            name=spec.name,
        )

    def exec_module(self, module):  # never reached: create_module raises
        raise ModuleNotFoundError(module.__name__)


class _Blocked(MetaPathFinder):
    """Finds the blocked names with a loader that refuses them: ``import`` raises ModuleNotFoundError, and a probe
    with ``importlib.util.find_spec`` (torch's dynamo) sees a spec without an origin, which it skips."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            return ModuleSpec(fullname, _Refuse(), origin=None)
        return None


def keep_out(names: tuple[str, ...] = TENSORFLOW) -> None:
    """Make ``import name`` raise ModuleNotFoundError in this process, for each name not already imported. Called by
    the torch stages' entry points (their ``run``), never on import of a package (every process imports every
    stage's params to find the stages)."""
    names = tuple(n for n in names if n not in sys.modules and not is_kept_out(n))
    if names:
        sys.meta_path.insert(0, _Blocked(names))


def is_kept_out(name: str) -> bool:
    return any(isinstance(f, _Blocked) and name in f.names for f in sys.meta_path)


class kept_out:
    """``with kept_out():`` the block for the duration only (e.g. while umap-learn is imported)."""

    def __init__(self, names: tuple[str, ...] = TENSORFLOW):
        self.finder = _Blocked(tuple(n for n in names if n not in sys.modules))

    def __enter__(self):
        sys.meta_path.insert(0, self.finder)
        return self

    def __exit__(self, *exc):
        sys.meta_path.remove(self.finder)
        return False
