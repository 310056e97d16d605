"""The explanations hand-off (shared/evaluation/explanations.py) and the classifier index reader: typed records that
every provider writes and report reads, lossless through JSON."""

from __future__ import annotations

import json

import pytest

from shared.errors import UserError
from shared.evaluation.explanations import (
    Explanations,
    MethodExplanation,
    ModelExplanations,
    read_explanations,
    write_explanations,
)
from shared.evaluation.models_index import read_models_index

pytestmark = pytest.mark.unit

FAITH = {
    "n_samples": 40,
    "steps": 10,
    "deletion_auc": 0.2,
    "insertion_auc": 0.8,
    "random_deletion_auc": 0.5,
    "random_insertion_auc": 0.5,
    "p_deletion": 0.001,
    "p_insertion": 0.2,
    "deletion_better_than_random": True,
    "insertion_better_than_random": False,
    "better_than_random": False,
    "per_class": {"a": {"deletion_auc": 0.2}},
    "seconds": 1.5,
}
SANITY = {"n_samples": 12, "spearman_all_at_once": 0.7, "cascade": [], "threshold": 0.5, "insensitive_to_model": True}
METHOD = {
    "top_k": 20,
    "signed": True,
    "description": "d",
    "layer": "layer3",
    "marker_precision_at_10": 0.9,
    "per_class_precision": {"a": 1.0},
    "faithfulness": FAITH,
    "sanity": SANITY,
    "stability": {"n_samples": 40, "folds": {"spearman": 0.5, "shared_top_k": 0.4}, "seconds": 2.0},
    "a_key_a_plugged_in_provider_adds": [1, 2],
}
MRI_METHOD = {
    "description": "3-D Grad-CAM",
    "layer": "_blocks.2",
    "signed": False,
    "n_patients": 18,
    "localisation": {
        "predicted": {
            "n": 18,
            "cam_in_mask_mean": 0.15,
            "chance_mean": 0.16,
            "ratio_mean": 0.9,
            "above_chance": 8,
            "p_sign_test": 0.76,
            "per_class": {},
        }
    },
    "subregions": {
        "per_class": {
            "wildtype": {
                "ET": {
                    "n": 13,
                    "energy_share_mean": 0.06,
                    "volume_share_mean": 0.03,
                    "ratio_mean": 2.2,
                    "above_chance": 13,
                    "p_sign_test": 0.0002,
                }
            }
        },
        "regions": {"ET": {"labels": [3, 4], "description": "enhancing tumour"}},
        "target": "true",
        "seconds": 0.003,
    },
    "seconds": 3.0,
}


def _file() -> dict:
    return {
        "target": "true class",
        "split": "held-out test",
        "models": {
            "resnet18": {
                "provider": "train_torch",
                "arch": "resnet18",
                "input": "image",
                "samples": "all",
                "methods": {"saliency": METHOD},
            },
            "effnet": {
                "arch": "efficientnet-b0",
                "input": "mri",
                "samples": "all",
                "target": "both",
                "methods": {"grad_cam": MRI_METHOD},
            },
        },
        "not_explained": {"logistic_regression": "sklearn baseline"},
        "biology_seconds": 1.0,
    }


def test_records_round_trip_through_json_and_keep_unknown_keys(tmp_path):
    record = Explanations.from_json(_file())
    write_explanations(tmp_path, record)
    assert json.loads((tmp_path / "metrics.json").read_text()) == _file()
    back = read_explanations(tmp_path)
    method = back.models["resnet18"].methods["saliency"]
    assert method.faithfulness.deletion_auc == 0.2 and method.sanity.insensitive_to_model
    assert method.extra["a_key_a_plugged_in_provider_adds"] == [1, 2]
    assert back.models["effnet"].methods["grad_cam"].localisation["predicted"].above_chance == 8
    assert back.models["effnet"].methods["grad_cam"].subregions.per_class["wildtype"]["ET"]["above_chance"] == 13
    assert back.models["effnet"].extra == {"target": "both"}


def test_verdicts_and_what_summary_json_keeps():
    method = MethodExplanation.from_json(METHOD)
    assert method.precision_k == 10 and method.precision == 0.9
    assert method.faithfulness.verdict() == "NO: insertion no better than random"
    assert method.sanity.verdict() == "NO: insensitive to the model"
    headline = method.headline()
    assert not {"top_k", "signed", "description", "seconds"} & set(headline)
    assert set(headline["faithfulness"]) == set(FAITH) - {"n_samples", "steps", "seconds"}
    assert set(headline["sanity"]) == {"spearman_all_at_once", "cascade", "insensitive_to_model"}
    assert headline["stability"] == {"n_samples": 40, "folds": {"spearman": 0.5, "shared_top_k": 0.4}}
    assert headline["marker_precision_at_10"] == 0.9 and headline["layer"] == "layer3"
    # a volume method's sub-region table, without the time it took
    mri = MethodExplanation.from_json(MRI_METHOD).headline()
    assert mri["subregions"] == {k: v for k, v in MRI_METHOD["subregions"].items() if k != "seconds"}


def test_a_record_missing_a_figure_it_needs_is_refused():
    broken = {k: v for k, v in FAITH.items() if k != "deletion_auc"}
    with pytest.raises(TypeError, match="deletion_auc"):
        MethodExplanation.from_json({**METHOD, "faithfulness": broken})
    assert ModelExplanations.from_json({"arch": "x", "input": "image"}).to_json()["methods"] == {}


def test_models_index_reads_every_provider_and_refuses_a_name_twice(tmp_path):
    for trainer, names in (("train_torch", ["resnet18", "logistic_regression"]), ("train_extra", ["knn"])):
        (tmp_path / trainer).mkdir()
        entries = [{"name": n, "kind": "deep", "framework": "torch", "folder": n} for n in names]
        (tmp_path / trainer / "models.json").write_text(json.dumps(entries))
    providers = {t: tmp_path / t for t in ("train_torch", "train_extra")}
    models = read_models_index(providers)
    assert [(m.name, m.trainer) for m in models] == [
        ("resnet18", "train_torch"),
        ("logistic_regression", "train_torch"),
        ("knn", "train_extra"),
    ]
    assert models[2].folder == tmp_path / "train_extra" / "knn"
    (tmp_path / "train_extra" / "models.json").write_text(json.dumps([{"name": "resnet18", "folder": "resnet18"}]))
    with pytest.raises(
        UserError, match="two classifier providers name a model 'resnet18' \\(train_torch and train_extra\\)"
    ):
        read_models_index(providers)


def test_empty_collections_of_records_are_written_as_empty_objects():
    """A model with no method applicable, an experiment with no model explained: {} in metrics.json, not absent."""
    empty = Explanations(models={"m": ModelExplanations(arch="dense")}).to_json()
    assert empty["models"]["m"]["methods"] == {} and Explanations().to_json()["models"] == {}
    assert Explanations.from_json(empty).models["m"].methods == {}
