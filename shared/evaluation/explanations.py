"""The explanations hand-off: ``metrics.json`` of a stage providing the ``explanations`` role, as typed records.

Written through ``write_explanations`` by every provider (explain for the torch models, train_tf_gradcam for its
Grad-CAM family, train_3d_mri for its 3-D Grad-CAM) and read through ``read_explanations`` by report, so the keys
live here once::

    Explanations            target, split, models {name: ModelExplanations}, not_explained {name: why},
                            baselines_biology, biology_seconds
    ModelExplanations       provider, arch, input, samples, n_test, n_explained, gene_map, per_sample_arrays,
                            methods {method: MethodExplanation}, not_applicable {method: why}, biology | biology_absent,
                            shortcuts (the shortcut audit), sample_trust (per-sample trust: counts per reason),
                            layout_sensitivity (LayoutSensitivity)
    MethodExplanation       description, signed, top_k, layer, marker precision (``marker_precision_at_<k>``,
                            ``per_class_precision``), faithfulness, sanity, stability, localisation, subregions,
                            seconds
    Faithfulness            deletion / insertion AUCs against a random order, one-sided p-values, verdicts
    Sanity                  rank correlation with a randomised model (all at once, cascade), the verdict
    Stability               top-k agreement between fold models and between random draws
    Localisation            a volume map's energy share in the tumour mask against chance, per target class
    Subregions              the same per tumour sub-region (BraTS labels), per class and region
    LayoutSensitivity       the model's class gene rankings against those of models trained on other layouts

A key a record does not know is kept in its ``extra`` and written back, so a plugged-in provider may record more;
what report shows and summary.json holds is decided by the records (``headline``), not by literal keys in report.
Framework-free: the TensorFlow and MRI images import it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

METRICS = "metrics.json"
PRECISION_PREFIX = "marker_precision_at_"


class _Record:
    """to_json / from_json for a dataclass of JSON values: None fields are left out, unknown keys kept in extra."""

    #: fields holding records of these types, by field name (dict values of records: the "{}" suffix)
    NESTED: ClassVar[dict[str, Any]] = {}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, _Record):
                value = value.to_json()
            elif isinstance(value, dict) and all(isinstance(v, _Record) for v in value.values()):
                value = {k: v.to_json() for k, v in value.items()}  # an empty one is kept: {}
            out[f.name] = value
        return out | getattr(self, "extra", {})

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        known: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names or key == "extra":
                continue
            nested = cls.NESTED.get(key)
            if nested is not None and value is not None:
                kind, many = nested
                value = {k: kind.from_json(v) for k, v in value.items()} if many else kind.from_json(value)
            known[key] = value
        record = cls(**known)
        if "extra" in names:
            record.extra = {k: v for k, v in data.items() if k not in names}
        return record


@dataclass
class Faithfulness(_Record):
    """Deletion and insertion curves of a method's order against a random order (one-sided Wilcoxon p-values)."""

    n_samples: int
    deletion_auc: float
    insertion_auc: float
    random_deletion_auc: float
    random_insertion_auc: float
    p_deletion: float
    p_insertion: float
    deletion_better_than_random: bool
    insertion_better_than_random: bool
    better_than_random: bool
    steps: int | None = None
    per_class: dict | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def verdict(self) -> str:
        if self.better_than_random:
            return "yes"
        failed = [k for k in ("deletion", "insertion") if not getattr(self, f"{k}_better_than_random")]
        return f"NO: {' and '.join(failed)} no better than random"

    def headline(self) -> dict:
        """What summary.json keeps: the figures and verdicts, per class too; not the run's size or time."""
        keep = (
            "deletion_auc",
            "random_deletion_auc",
            "insertion_auc",
            "random_insertion_auc",
            "p_deletion",
            "p_insertion",
            "deletion_better_than_random",
            "insertion_better_than_random",
            "better_than_random",
            "per_class",
        )
        return {k: getattr(self, k) for k in keep}


@dataclass
class Sanity(_Record):
    """The model-randomisation test (Adebayo et al. 2018): Spearman correlation with the randomised model's maps."""

    n_samples: int
    spearman_all_at_once: float
    cascade: list
    insensitive_to_model: bool
    threshold: float | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def verdict(self) -> str:
        return "NO: insensitive to the model" if self.insensitive_to_model else "yes"

    def headline(self) -> dict:
        return {k: getattr(self, k) for k in ("spearman_all_at_once", "cascade", "insensitive_to_model")}


@dataclass
class Stability(_Record):
    """Agreement of the class rankings between fold models (``folds``) and between random draws (``draws``)."""

    n_samples: int | None = None
    folds: dict | None = None
    draws: dict | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def headline(self) -> dict:
        return {k: v for k, v in self.to_json().items() if k != "seconds"}


@dataclass
class Localisation(_Record):
    """A volume map's energy share inside the tumour mask against the mask's share of the brain (chance), over the
    held-out patients of one target (the predicted or the true class), with a one-sided sign test."""

    n: int
    cam_in_mask_mean: float
    chance_mean: float
    ratio_mean: float
    above_chance: int
    p_sign_test: float
    per_class: dict | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Subregions(_Record):
    """A volume map's energy share in each tumour sub-region against the region's share of the brain (chance):
    ``regions`` {name: labels, description}, ``per_class`` {class: {region: n, energy_share_mean,
    volume_share_mean, ratio_mean, above_chance, p_sign_test (two-sided)}} over the held-out exams that have the
    region, for the maps of the ``target`` class (shared.evaluation.localisation.summarise_subregions)."""

    per_class: dict
    regions: dict | None = None
    target: str | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def headline(self) -> dict:
        return {k: v for k, v in self.to_json().items() if k != "seconds"}


@dataclass
class LayoutSensitivity(_Record):
    """Does the explanation survive a change of layout? (shared.evaluation.layout_sensitivity) One ``method``'s class
    rankings of the models trained on other layouts (``layouts`` {layout: model, seed, embedding, genes_moved,
    accuracy, macro_f1, spearman, top_k_overlap, per_class, marker_precision, per_class_precision}) and of the
    same-layout ``control`` (the main model's first fold model) against the ``main`` model's (accuracy, macro_f1,
    marker precision); ``per_class`` the verdicts (median and smallest top-k overlap over the layouts, median
    Spearman, the control's overlap, robust), ``not_robust`` the classes marked; or ``skipped`` with the reason."""

    method: str | None = None
    top_k: int | None = None
    precision_k: int | None = None
    threshold: float | None = None
    n_samples: int | None = None
    n_test: int | None = None
    main: dict | None = None
    control: dict | None = None
    layouts: dict | None = None
    per_class: dict | None = None
    not_robust: list | None = None
    skipped: str | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def headline(self) -> dict:
        """summary.json's entry: every figure and verdict, not the run's time."""
        return {k: v for k, v in self.to_json().items() if k != "seconds"}


@dataclass
class MethodExplanation(_Record):
    description: str
    signed: bool
    top_k: int | None = None
    layer: str | None = None
    faithfulness: Faithfulness | None = None
    sanity: Sanity | None = None
    stability: Stability | None = None
    localisation: dict[str, Localisation] | None = None
    subregions: Subregions | None = None
    seconds: float | None = None
    #: marker_precision_at_<k>, per_class_precision, n_patients ... (written by the rankings and the trainers)
    extra: dict = field(default_factory=dict)

    NESTED: ClassVar[dict[str, Any]] = {
        "faithfulness": (Faithfulness, False),
        "sanity": (Sanity, False),
        "stability": (Stability, False),
        "localisation": (Localisation, True),
        "subregions": (Subregions, False),
    }

    @property
    def precision_k(self) -> int | None:
        """k of the planted-marker precision@k, when markers were given."""
        key = next((k for k in self.extra if k.startswith(PRECISION_PREFIX)), None)
        return None if key is None else int(key.removeprefix(PRECISION_PREFIX))

    @property
    def precision(self) -> float | None:
        k = self.precision_k
        return None if k is None else self.extra[f"{PRECISION_PREFIX}{k}"]

    def headline(self) -> dict:
        """The method's entry in summary.json: every figure, without what describes the run (its description,
        signedness, top_k, time) and with the trust checks' headline figures."""
        out = {k: v for k, v in self.to_json().items() if k not in ("top_k", "signed", "description", "seconds")}
        for name in ("faithfulness", "sanity", "stability", "subregions"):
            check = getattr(self, name)
            if check is not None:
                out[name] = check.headline()
        return out


@dataclass
class ModelExplanations(_Record):
    provider: str | None = None
    arch: str | None = None
    #: the model's input kind: vector, image, mri
    input: str | None = None
    #: "all" or "correctly classified" held-out samples
    samples: str = "all"
    n_test: int | None = None
    n_explained: int | None = None
    methods: dict[str, MethodExplanation] = field(default_factory=dict)
    not_applicable: dict[str, str] | None = None
    per_sample_arrays: bool | None = None
    #: False: inputs with no pixel->gene map (a transductive sample image): maps in input space only
    gene_map: bool | None = None
    biology: dict | None = None
    biology_absent: str | None = None
    #: the shortcut audit (stages/explain/shortcuts.py): predictions and each method's top genes against the class
    #: and each nuisance variable; ``flagged``; or ``skipped`` with the reason
    shortcuts: dict | None = None
    #: per-sample trust (stages/explain/sample_trust.py): n, n_distrusted, reasons {reason: samples}, method, top_k,
    #: the thresholds, how many samples each signal was computed for, not_computed {signal: why}, table, seconds
    sample_trust: dict | None = None
    #: the layout-sensitivity check: the model's class rankings against models trained on other layouts
    layout_sensitivity: LayoutSensitivity | None = None
    extra: dict = field(default_factory=dict)

    NESTED: ClassVar[dict[str, Any]] = {
        "methods": (MethodExplanation, True),
        "layout_sensitivity": (LayoutSensitivity, False),
    }

    def sample_trust_headline(self) -> dict | None:
        """What summary.json keeps of the per-sample trust: every figure but the run's time."""
        if self.sample_trust is None:
            return None
        return {k: v for k, v in self.sample_trust.items() if k != "seconds"}

    def shortcuts_headline(self) -> dict | None:
        """What summary.json keeps of the audit: per feature set the class's and each nuisance's skill and p, the
        flags; not the run's time or the permutations' mean."""
        if self.shortcuts is None or "skipped" in self.shortcuts or "volume" in self.shortcuts:
            return self.shortcuts

        def brief(result: dict) -> dict:
            keep = ("kind", "score", "chance", "skill", "p", "p_within_class", "skill_beyond_class", "n", "skipped")
            return {
                "class": {k: v for k, v in result["class"].items() if k in keep},
                "nuisances": {n: {k: v for k, v in r.items() if k in keep} for n, r in result["nuisances"].items()},
                "flags": result["flags"],
            }

        s = self.shortcuts
        return {
            "nuisances": s["nuisances"],
            "top_k": s["top_k"],
            "predictions": brief(s["predictions"]),
            "methods": {m: brief(r) | {"genes": r["genes"]} for m, r in s["methods"].items()},
            "flagged": s["flagged"],
        }


@dataclass
class Explanations(_Record):
    target: str = "true class"
    split: str = "held-out test"
    models: dict[str, ModelExplanations] = field(default_factory=dict)
    not_explained: dict[str, str] = field(default_factory=dict)
    baselines_biology: dict | None = None
    biology_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    NESTED: ClassVar[dict[str, Any]] = {"models": (ModelExplanations, True)}


def write_explanations(folder: Path, explanations: Explanations) -> None:
    from shared.artifacts import write_json_atomic

    write_json_atomic(folder / METRICS, explanations.to_json())


def read_explanations(folder: Path) -> Explanations:
    return Explanations.from_json(json.loads((folder / METRICS).read_text()))
