"""Classes too small for the protocol: the declared policy (preprocess.small_classes) on GTEx v8's real tissue
counts, its errors, and the trainer's one-line error naming the key that leaves such classes out."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from shared import config
from shared.errors import UserError
from shared.evaluation.splits import Protocol, apply_small_class_policy, holdout_split, too_small_classes
from stages.report.sections import small_classes_summary

from ..support import REPO

#: GTEx v8 RNA-seq samples per tissue (SMTSD of GTEx_Analysis_v8_Annotations_SampleAttributesDS.txt, SMAFRZE
#: RNASEQ): the GTEx portal's tissue summary ("# RNASeq Samples"), as saved from the portal on 2020-01-10 in
#: github.com/Sun-lab/gtex_AnVIL data/GTEx_Portal.csv (its R/step1_check_samples.Rout counts 17,382 RNASEQ samples
#: in the attributes file). The UCSC Genome Browser's "GTEx Gene V8" track settings list the same counts.
GTEX_V8_SMTSD = {
    "Adipose - Subcutaneous": 663,
    "Adipose - Visceral (Omentum)": 541,
    "Adrenal Gland": 258,
    "Artery - Aorta": 432,
    "Artery - Coronary": 240,
    "Artery - Tibial": 663,
    "Bladder": 21,
    "Brain - Amygdala": 152,
    "Brain - Anterior cingulate cortex (BA24)": 176,
    "Brain - Caudate (basal ganglia)": 246,
    "Brain - Cerebellar Hemisphere": 215,
    "Brain - Cerebellum": 241,
    "Brain - Cortex": 255,
    "Brain - Frontal Cortex (BA9)": 209,
    "Brain - Hippocampus": 197,
    "Brain - Hypothalamus": 202,
    "Brain - Nucleus accumbens (basal ganglia)": 246,
    "Brain - Putamen (basal ganglia)": 205,
    "Brain - Spinal cord (cervical c-1)": 159,
    "Brain - Substantia nigra": 139,
    "Breast - Mammary Tissue": 459,
    "Cells - Cultured fibroblasts": 504,
    "Cells - EBV-transformed lymphocytes": 174,
    "Cervix - Ectocervix": 9,
    "Cervix - Endocervix": 10,
    "Colon - Sigmoid": 373,
    "Colon - Transverse": 406,
    "Esophagus - Gastroesophageal Junction": 375,
    "Esophagus - Mucosa": 555,
    "Esophagus - Muscularis": 515,
    "Fallopian Tube": 9,
    "Heart - Atrial Appendage": 429,
    "Heart - Left Ventricle": 432,
    "Kidney - Cortex": 85,
    "Kidney - Medulla": 4,
    "Liver": 226,
    "Lung": 578,
    "Minor Salivary Gland": 162,
    "Muscle - Skeletal": 803,
    "Nerve - Tibial": 619,
    "Ovary": 180,
    "Pancreas": 328,
    "Pituitary": 283,
    "Prostate": 245,
    "Skin - Not Sun Exposed (Suprapubic)": 604,
    "Skin - Sun Exposed (Lower leg)": 701,
    "Small Intestine - Terminal Ileum": 187,
    "Spleen": 241,
    "Stomach": 359,
    "Testis": 361,
    "Thyroid": 653,
    "Uterus": 142,
    "Vagina": 156,
    "Whole Blood": 755,
}
#: GTEx v8 RNA-seq donors (the UCSC track: 17,382 samples, 948 donors)
GTEX_V8_DONORS = 948


def _gtex_labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with exactly GTEx v8's counts and donors as groups: a donor gives a tissue at most one sample, and the
    small tissues (under 30 samples: bladder, cervix, fallopian tube, kidney medulla) come from one pool of 40
    donors, so they share donors as the few donors sampled for them do (the harder case for a group-aware split)."""
    rng = np.random.default_rng(seed)
    pool = rng.choice(GTEX_V8_DONORS, 40, replace=False)
    labels = np.concatenate([[t] * n for t, n in GTEX_V8_SMTSD.items()])
    donors = np.concatenate(
        [rng.choice(pool if n < 30 else GTEX_V8_DONORS, size=n, replace=False) for n in GTEX_V8_SMTSD.values()]
    )
    return labels, donors.astype(str)


def _protocol(labels, groups, test_size, folds, repeats, seed, key=None) -> Protocol:
    classes = sorted(np.unique(labels))
    with warnings.catch_warnings():  # scikit-learn warns when a class has fewer members than folds
        warnings.simplefilter("ignore", UserWarning)
        is_test = holdout_split(labels, groups, test_size, seed)
        samples = pd.DataFrame(
            {
                "sample": np.arange(len(labels)).astype(str),
                "label_index": np.searchsorted(classes, labels),
                "split": np.where(is_test, "test", "train"),
                "group": groups,
            }
        )
        return Protocol(samples, classes, folds, repeats, seed, key="train_torch.folds", small_classes_key=key)


def test_gtex_v8_counts_run_through_the_protocol_of_configs_gtex():
    """configs/gtex.yaml's policy, held-out split and folds complete on GTEx v8's 54 real tissue counts, leaving out
    exactly Kidney - Medulla (4 samples); without the policy the folds stop on it, naming the key to change."""
    assert len(GTEX_V8_SMTSD) == 54 and sum(GTEX_V8_SMTSD.values()) == 17382
    exp = config.load(REPO / "configs/gtex.yaml", check_files=False)
    preprocess, train_torch = exp.section("preprocess"), exp.section("train_torch")
    assert (preprocess.small_classes.policy, train_torch.folds) == ("leave_out", 5)
    for sim in range(3):
        labels, donors = _gtex_labels(sim)
        kept, left_out = apply_small_class_policy(
            labels, preprocess.small_classes.policy, preprocess.small_classes.min_samples
        )
        assert left_out == {"Kidney - Medulla": 4}
        assert kept.sum() == 17382 - 4 and set(labels[~kept]) == {"Kidney - Medulla"}
        proto = _protocol(
            labels[kept], donors[kept], preprocess.test_size, train_torch.folds, train_torch.repeats, exp.seed
        )
        assert proto.n_classes == 53 and len(proto.splits) == train_torch.folds * train_torch.repeats
        train_labels = proto.labels[proto.train_rows]
        assert np.bincount(train_labels).min() >= train_torch.folds
        for _, _, tr, _ in proto.splits:  # every fold trains on every class
            assert len(np.unique(train_labels[tr])) == 53
        assert not set(proto.groups[proto.test_rows]) & set(proto.groups[proto.train_rows])

    labels, donors = _gtex_labels(0)
    with pytest.raises(UserError) as err:
        _protocol(
            labels,
            donors,
            preprocess.test_size,
            train_torch.folds,
            train_torch.repeats,
            exp.seed,
            key="preprocess.small_classes",
        )
    message = str(err.value)
    assert "\n" not in message and "'Kidney - Medulla' (3 training samples of 4)" in message
    assert "fewer than train_torch.folds=5" in message
    assert "preprocess.small_classes.policy: leave_out with preprocess.small_classes.min_samples: 5" in message


def test_policy_error_names_the_classes_their_counts_and_the_key():
    labels = np.array(["a"] * 10 + ["b"] * 8 + ["rare"] * 3 + ["one"])
    with pytest.raises(UserError) as err:
        apply_small_class_policy(labels, "error", 2, source="labels.tsv")
    assert str(err.value).startswith("labels.tsv: 1 class with fewer than preprocess.small_classes.min_samples=2")
    assert "'one' (1)" in str(err.value) and "policy: leave_out" in str(err.value) and "rare" not in str(err.value)
    with pytest.raises(UserError, match=r"2 classes .* 'one' \(1\), 'rare' \(3\); .*or lower min_samples"):
        apply_small_class_policy(labels, "error", 4)

    kept, left_out = apply_small_class_policy(labels, "leave_out", 4)
    assert left_out == {"one": 1, "rare": 3} == too_small_classes(labels, 4)
    assert list(labels[kept]) == ["a"] * 10 + ["b"] * 8
    kept, left_out = apply_small_class_policy(labels[:-1], "error", 2)  # nothing under the threshold
    assert kept.all() and left_out == {}


@pytest.mark.parametrize(
    "policy, min_samples, message",
    [
        ("keep", 2, "preprocess.small_classes.policy: unknown policy 'keep'"),
        ("leave_out", 1, "preprocess.small_classes.min_samples: 1 is not an integer >= 2"),
        ("leave_out", 2.5, "preprocess.small_classes.min_samples: 2.5 is not an integer >= 2"),
        ("leave_out", 9, "min_samples=9 leaves 1 class of 3"),
    ],
)
def test_bad_policy_values_are_one_line_errors(policy, min_samples, message):
    labels = np.array(["a"] * 10 + ["b"] * 8 + ["c"] * 3)
    with pytest.raises(UserError) as err:
        apply_small_class_policy(labels, policy, min_samples)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("preprocess.small_classes.policy=keep", "preprocess.small_classes.policy: Input should be 'error' or"),
        ("preprocess.small_classes.min_samples=1", "preprocess.small_classes.min_samples: Input should be greater"),
        ("preprocess.small_classes.min_samples=7.5", "preprocess.small_classes.min_samples: Input should be a valid"),
    ],
)
def test_bad_config_values_stop_before_any_work(override, message):
    with pytest.raises(UserError) as err:
        config.load(REPO / "configs/gtex.yaml", [override], check_files=False)
    assert str(err.value).startswith("config error in ") and message in str(err.value)


def test_default_is_error_at_two_samples_and_the_section_enters_the_fingerprint():
    exp = config.load(REPO / "configs/demo.yaml", check_files=False)
    small = exp.section("preprocess").small_classes
    assert (small.policy, small.min_samples) == ("error", 2)
    assert exp.stage_sections("preprocess")["preprocess"]["small_classes"] == {"policy": "error", "min_samples": 2}


def test_fold_error_without_an_upstream_key_says_lower_the_folds():
    labels = np.array(["a"] * 40 + ["b"] * 30 + ["c"] * 4)
    groups = np.arange(len(labels)).astype(str)
    with pytest.raises(UserError) as err:
        _protocol(labels, groups, 0.25, 5, 1, 0)
    assert str(err.value).endswith("fewer than train_torch.folds=5 needs; lower train_torch.folds")
    assert "'c' (3 training samples of 4)" in str(err.value)


def test_report_summary_names_the_left_out_classes():
    dataset = {
        "small_classes": {
            "key": "preprocess.small_classes",
            "policy": "leave_out",
            "min_samples": 7,
            "left_out": {"Kidney - Medulla": 4},
        }
    }
    assert small_classes_summary(dataset) == {
        "key": "preprocess.small_classes",
        "policy": "leave_out",
        "min_samples": 7,
        "left_out": {"Kidney - Medulla": 4},
    }
    assert small_classes_summary({}) is None


def test_report_data_table_lists_the_left_out_classes_escaped():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(REPO / "stages/report/templates"), autoescape=select_autoescape())
    data = {
        "n_samples": 100,
        "n_genes": 10,
        "classes": ["a", "b"],
        "transform": "vector",
        "n_test": 20,
        "counts": [{"class": "a", "train": 40, "test": 10}, {"class": "b", "train": 40, "test": 10}],
        "small_classes": {
            "key": "preprocess.small_classes",
            "policy": "leave_out",
            "min_samples": 7,
            "left_out": {"Kidney - Medulla": 4, "<b>x</b>": 1},
        },
    }
    page = {"title": "t", "total_wall_time": 0, "packages": {}, "provenance": [], "models": [], "explanations": []}
    html = env.get_template("index.html").render(data=data, **page)
    table = html[html.index("<h2>Data</h2>") : html.index("<h2>Models")]
    assert '<td class="l">Kidney - Medulla</td><td>left out (4 samples)</td>' in table
    assert "Kidney - Medulla (4 samples); &lt;b&gt;x&lt;/b&gt; (1 sample)." in table and "<b>x" not in table
    assert "fewer than\n7 samples" in table
    data["small_classes"]["left_out"] = {}
    assert "left out" not in env.get_template("index.html").render(data=data, **page).lower()
