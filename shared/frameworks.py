"""Keeping TensorFlow out of the torch processes.

One local environment holds torch and TensorFlow (``make setup``), but a torch process must never load TensorFlow:
tensorboard's ``SummaryWriter`` imports it when it is installed, and umap-learn imports Keras (and through it
TensorFlow) for ParametricUMAP; TensorFlow's native libraries loaded before torchvision's triton then crash the
interpreter (a segmentation fault on ``import torchvision.ops``), and they cost seconds for nothing. The stage
images never have both, so a torch stage behaves locally as in its container: tensorboard and umap fall back to
their TensorFlow-free paths, as they do where TensorFlow is not installed.
"""
from __future__ import annotations

import sys

TENSORFLOW = ("tensorflow", "keras")


def keep_out(names: tuple[str, ...] = TENSORFLOW) -> None:
    """Make ``import name`` raise ImportError in this process (a ``None`` entry in ``sys.modules``), for each name not
    already imported. Called by the torch stages' entry points (their ``__main__``), never on import of a package
    (every process imports every stage's params to find the stages)."""
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = None


def is_kept_out(name: str) -> bool:
    return name in sys.modules and sys.modules[name] is None
