"""The classifiers hand-off's index: ``models.json``, one entry per model (name, kind, framework, folder, input),
written by every trainer (``shared.evaluation.results.write_models_index``) and read here by explain and report.
Standard library only, so the report image (no scikit-learn) reads it without the result layout's writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shared.errors import UserError

MODELS_INDEX = "models.json"
#: the layout-sensitivity check's models (``write_layouts_index``): a trainer writes it only when it trained some
LAYOUTS_INDEX = "layouts.json"


@dataclass(frozen=True)
class IndexedModel:
    """One model of a classifier provider's ``models.json``: who trained it, where its files are, its entry."""

    name: str
    trainer: str
    folder: Path
    entry: dict


def read_models_index(providers: dict[str, Path]) -> list[IndexedModel]:
    """Every model of every classifier provider ({stage: folder}), in provider order; two providers naming a model
    alike is an error (their outputs would collide downstream)."""
    models: dict[str, IndexedModel] = {}
    for trainer, provider in providers.items():
        for entry in json.loads((provider / MODELS_INDEX).read_text()):
            name = entry["name"]
            if name in models:
                raise UserError(
                    f"two classifier providers name a model '{name}' ({models[name].trainer} and {trainer}): rename one"
                )
            models[name] = IndexedModel(name, trainer, provider / entry["folder"], entry)
    return list(models.values())


def read_layouts_index(providers: dict[str, Path]) -> list[IndexedModel]:
    """The layout-sensitivity check's models of every classifier provider that trained some (``layouts.json``):
    entries name the model they vary (``model``) and the ``layout``; [] when there are none."""
    out = []
    for trainer, provider in providers.items():
        path = provider / LAYOUTS_INDEX
        if path.is_file():
            out += [IndexedModel(e["name"], trainer, provider / e["folder"], e) for e in json.loads(path.read_text())]
    return out
