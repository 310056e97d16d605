"""The MultiQC custom-content files the report writes (stages/report/multiqc.py), against MultiQC's documented format.
MultiQC itself reads them in tests/stage/test_workflow.py, where it is installed."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.unit

SUMMARY = {
    "experiment": "demo",
    "evaluated_on": "held-out test split",
    "n_test": 90,
    "models": {
        "resnet18": {
            "accuracy": 0.9,
            "macro_f1": 0.88,
            "macro_auc": float("nan"),
            "kind": "deep",
            "provider": "train_torch",
            "at_chance": False,
        },
        "logistic_regression": {
            "accuracy": 0.8,
            "macro_f1": 0.79,
            "macro_auc": 0.95,
            "kind": "baseline",
            "provider": "train_torch",
            "at_chance": False,
        },
    },
}
COMPARISON = {
    "a": "resnet18",
    "b": "logistic_regression",
    "metric": "validation macro-F1",
    "n_folds": 3,
    "mean_a": 0.9,
    "mean_b": 0.8,
    "mean_difference": 0.1,
    "corrected_ttest": {"p": 0.04},
    "wilcoxon": {"p": 0.25, "min_attainable_p": 0.25},
    "significant": True,
}


def test_multiqc_files_follow_the_custom_content_format(tmp_path):
    """MultiQC finds files named *_mqc.yaml by itself; each holds id, section_name, plot_type and its data (MultiQC's
    docs/markdown/custom_content/index.md). MultiQC is not a dependency of the project: the check against MultiQC
    itself is in tests/stage/test_workflow.py, run where multiqc is installed."""
    from stages.report.multiqc import write_custom_content

    written = write_custom_content(tmp_path, SUMMARY, [COMPARISON])
    assert [p.name for p in written] == ["demo_models_mqc.yaml", "demo_comparisons_mqc.yaml"]
    models, pairs = (yaml.safe_load(p.read_text()) for p in written)
    for content in (models, pairs):
        assert content["plot_type"] == "table" and content["parent_id"] == "oncoxai"
        assert {"id", "section_name", "description", "pconfig", "headers", "data"} <= set(content)
        for row in content["data"].values():  # every column is declared, values are plain scalars
            assert set(row) <= set(content["headers"])
            assert all(isinstance(v, (int, float, str)) for v in row.values())
    expected = {"accuracy": 0.9, "macro_f1": 0.88, "kind": "deep", "trained_by": "train_torch", "at_chance": "no"}
    assert models["data"]["demo: resnet18"] == {**expected, "n_test": 90}  # the NaN AUC left out
    assert pairs["data"]["demo: resnet18 vs logistic_regression"]["corrected_p"] == 0.04
    assert pairs["data"]["demo: resnet18 vs logistic_regression"]["significant"] == "yes"
    assert write_custom_content(tmp_path / "one", SUMMARY, []) == [
        tmp_path / "one" / "multiqc" / "demo_models_mqc.yaml"
    ]
