"""Importing pyDeepInsight's ImageTransformer, whatever its package ``__init__`` pulls in.

pyDeepInsight 0.2.3 imports, at package import time, modules that ImageTransformer never uses and that its
wheel does not declare as dependencies: ``cv2`` (OpenCV, for the Gabor filters in ``utils/filters.py``) and
``pytorch_grad_cam`` / ``torchcam`` (for ``CAMFeatureSelector`` in ``feature_selection.py``). Without them
``import pyDeepInsight`` fails with ``ModuleNotFoundError: No module named 'cv2'``. The clean fix is to install
them (``opencv-python-headless``, ``grad-cam``, ``torchcam``: the ``bench`` extra); failing that,
``load_image_transformer`` imports the package with empty placeholder modules standing in for exactly those
names, for the duration of the import only, and says so in the benchmark's JSON. The package's files are
never modified.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib import metadata

#: modules pyDeepInsight imports at package import but ImageTransformer never calls
UNDECLARED = (
    "cv2",
    "pytorch_grad_cam",
    "pytorch_grad_cam.utils",
    "pytorch_grad_cam.utils.model_targets",
    "torchcam",
    "torchcam.methods",
    "torchcam.methods._utils",
)


def _placeholder(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that submodule imports resolve to the other placeholders

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{name}.{attr}")

    module.__getattr__ = __getattr__
    return module


class _Unavailable:
    """Stands in for a name imported from a missing module; fails loudly if anything actually uses it."""

    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} is not installed (placeholder used to import pyDeepInsight)")

    def __getattr__(self, attr):
        return _Unavailable(f"{self._name}.{attr}")


def load_image_transformer():
    """Return ``(ImageTransformer class, info dict)``; info records versions and any placeholder used."""
    info: dict = {"pyDeepInsight": _version("pyDeepInsight"), "placeholders": []}
    try:
        module = importlib.import_module("pyDeepInsight")
    except ModuleNotFoundError as exc:
        if exc.name not in UNDECLARED:
            raise
        for name in [n for n in sys.modules if n == "pyDeepInsight" or n.startswith("pyDeepInsight.")]:
            del sys.modules[name]
        missing = [n for n in UNDECLARED if not _importable(n)]
        for name in missing:
            sys.modules[name] = _placeholder(name)
        try:
            module = importlib.import_module("pyDeepInsight")
        finally:
            for name in missing:  # placeholders must not leak to any other importer
                sys.modules.pop(name, None)
        info["placeholders"] = missing
    for dist in ("opencv-python-headless", "opencv-python", "grad-cam", "torchcam"):
        if (v := _version(dist)) is not None:
            info[dist] = v
    return module.ImageTransformer, info


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
