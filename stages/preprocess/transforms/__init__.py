"""Expression vectors -> images, one named transform per module, selected by ``preprocess.transform``.

Every transform follows ``base.Transform``: fitted on training values, applied unchanged to new samples, and
(when it places genes on pixels) carrying the pixel->gene map that attributions are read through.
"""
from __future__ import annotations

from .base import Transform, to_uint8
from .deepinsight import DeepInsight
from .vector import Vector

TRANSFORMS: dict[str, type[Transform]] = {t.name: t for t in (DeepInsight, Vector)}


def build_transform(params) -> Transform:
    """The transform named by ``params.transform`` (a ``Preprocess`` config section), unfitted."""
    return TRANSFORMS[params.transform](params)


__all__ = ["TRANSFORMS", "Transform", "build_transform", "to_uint8"]
