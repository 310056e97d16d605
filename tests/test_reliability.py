"""Reliability: a table of bad inputs across every input kind and stage, each run through the stage's own entry point.

Every row must end the same way: exit code 2, exactly one ``error:`` line on stderr that names the file or config key
at fault (and says what to do), and nothing published: no stage folder, no manifest, no temporary folder left.
The stages run in this process (``shared.stage.main``, what ``python -m stages.<name>`` calls), so the table costs
seconds, not an interpreter per row; the TensorFlow row runs in its own interpreter (TensorFlow is kept out of
the test process).
"""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from shared.stage import main as stage_main

from .conftest import REPO

GENES = [f"G{i}" for i in range(40)]
CLASSES = ["AC", "MES", "NPC"]


def _samples(n: int = 60) -> list[str]:
    return [f"S{i:03d}" for i in range(n)]


def _write(path: Path, data: bytes | str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def _matrix(samples=None, genes=GENES, seed=0, cell=None) -> str:
    """samples x genes counts as CSV; ``cell`` = (row, col, text) replaces one value."""
    samples = samples or _samples()
    values = np.random.default_rng(seed).poisson(20, size=(len(samples), len(genes))).astype(str)
    if cell:
        values[cell[0], cell[1]] = cell[2]
    lines = [",".join(["sample", *genes])] + [",".join([s, *row]) for s, row in zip(samples, values)]
    return "\n".join(lines) + "\n"


def _labels(samples=None, classes=None) -> str:
    samples = samples or _samples()
    classes = classes or [CLASSES[i % 3] for i in range(len(samples))]
    return "sample,state,donor\n" + "".join(f"{s},{c},d{i % 12}\n" for i, (s, c) in enumerate(zip(samples, classes)))


def _config(tmp: Path, stages=("preprocess",), name="bad", **sections) -> dict:
    cfg = {"name": name, "seed": 0, "device": "cpu", "stages": list(stages),
           "expression": {"path": _write(tmp / "base.csv", _matrix()), "format": "csv",
                          "labels": _write(tmp / "labels.csv", _labels()), "label_key": "state"},
           "preprocess": {"n_genes": 16, "height": 4, "width": 4, "deepinsight": {"embedding": "pca"}}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


@dataclass
class Case:
    """One bad input: ``make(tmp)`` returns (config, stage, the text the error line must name, another it must hold)."""

    id: str
    make: Callable[[Path], tuple[dict, str, str, str]]


def _expr(tmp: Path, **changes) -> dict:
    return _config(tmp, expression={**_config(tmp)["expression"], **changes})


def _h5ad(tmp: Path) -> Path:
    import anndata as ad
    import pandas as pd

    adata = ad.AnnData(np.ones((30, 10), np.float32), obs=pd.DataFrame({"state": ["a", "b", "c"] * 10},
                                                                        index=[f"c{i}" for i in range(30)]))
    path = tmp / "cells.h5ad"
    adata.write_h5ad(path)
    return path


def _gct(rows: int, declared_samples: int = 3, samples=("GTEX-1-1", "GTEX-2-1", "GTEX-3-1")) -> str:
    lines = ["#1.2", f"5\t{declared_samples}", "\t".join(["Name", "Description", *samples])]
    lines += [f"ENSG{i}\tSYM{i}\t" + "\t".join(["3"] * len(samples)) for i in range(rows)]
    return "\n".join(lines) + "\n"


def _attributes(tmp: Path, column="SMTSD") -> str:
    return _write(tmp / "attributes.txt", f"SAMPID\t{column}\nGTEX-1-1\tLung\nGTEX-2-1\tLiver\nGTEX-3-1\tLung\n")


def _series(tmp: Path, text: str) -> str:
    return _write(tmp / "GSE1_series_matrix.txt.gz", gzip.compress(text.encode()))


SERIES_HEAD = ('!Series_title\t"t"\n!Sample_title\t"A"\t"B"\n!Sample_geo_accession\t"GSM1"\t"GSM2"\n'
               '!Sample_characteristics_ch1\t"subgroup: WNT"\t"subgroup: SHH"\n!series_matrix_table_begin\n'
               '"ID_REF"\t"GSM1"\t"GSM2"\n"p1"\t1.5\t2.5\n')

CASES: list[Case] = [
    # --- empty, truncated and foreign files of each format
    Case("h5ad-empty", lambda t: (_expr(t, path=_write(t / "e.h5ad", b""), format="h5ad", labels=None), "preprocess",
                                  "e.h5ad", "cannot read as .h5ad")),
    Case("h5ad-truncated", lambda t: (_expr(t, path=_write(t / "cut.h5ad", _h5ad(t).read_bytes()[:3000]),
                                            format="h5ad", labels=None), "preprocess", "cut.h5ad", "is the file complete")),
    Case("csv-empty", lambda t: (_expr(t, path=_write(t / "e.csv", "")), "preprocess", "e.csv", "empty")),
    Case("csv-gz-truncated", lambda t: (_expr(t, path=_write(t / "cut.csv.gz", gzip.compress(_matrix().encode())[:400])),
                                        "preprocess", "cut.csv.gz", "truncated")),
    Case("gzip-that-is-not-one", lambda t: (_expr(t, path=_write(t / "fake.csv.gz", b"\x1f\x8b" + os.urandom(300))),
                                            "preprocess", "fake.csv.gz", "gzip")),
    Case("tsv-binary", lambda t: (_expr(t, path=_write(t / "bin.tsv", bytes(range(256)) * 8), format="tsv"),
                                  "preprocess", "bin.tsv", "not a text")),
    Case("gct-empty", lambda t: (_expr(t, path=_write(t / "e.gct", ""), format="gct", labels=_attributes(t),
                                       label_key="SMTSD"), "preprocess", "e.gct", "empty")),
    Case("gct-truncated", lambda t: (_expr(t, path=_write(t / "cut.gct", _gct(rows=3)), format="gct",
                                           labels=_attributes(t), label_key="SMTSD"), "preprocess", "cut.gct",
                                     "declares 5 genes")),
    Case("gct-header-fewer-samples", lambda t: (_expr(t, path=_write(t / "h.gct", _gct(rows=5, declared_samples=4)),
                                                      format="gct", labels=_attributes(t), label_key="SMTSD"),
                                                "preprocess", "h.gct", "declares 4 samples")),
    Case("gct-attributes-without-smtsd", lambda t: (_expr(t, path=_write(t / "ok.gct", _gct(rows=5)), format="gct",
                                                          labels=_attributes(t, "SMTS"), label_key="SMTSD"),
                                                    "preprocess", "attributes.txt", "SMTSD")),
    Case("series-matrix-empty", lambda t: (_expr(t, path=_write(t / "e_series_matrix.txt", ""), format="geo",
                                                 labels=None, label_key="subgroup"), "preprocess",
                                           "e_series_matrix.txt", "series matrix")),
    Case("series-matrix-truncated", lambda t: (_expr(t, path=_series(t, SERIES_HEAD), format="geo", labels=None,
                                                     label_key="subgroup", normalized=True), "preprocess",
                                               "GSE1_series_matrix.txt.gz", "truncated")),
    Case("series-matrix-without-label", lambda t: (_expr(t, path=_series(t, SERIES_HEAD + "!series_matrix_table_end\n"),
                                                         format="geo", labels=None, label_key="subtype",
                                                         normalized=True), "preprocess", "GSE1_series_matrix.txt.gz",
                                                   "'subtype' is not a characteristic")),
    # --- values
    Case("non-numeric", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(cell=(3, 2, "1.2.3")))), "preprocess",
                                   "x.csv", "non-numeric value '1.2.3'")),
    Case("nan", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(cell=(4, 1, "nan")))), "preprocess", "x.csv",
                           "NaN")),
    Case("inf", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(cell=(4, 1, "inf")))), "preprocess", "x.csv",
                           "inf")),
    Case("negative-counts", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(cell=(5, 5, "-3")))), "preprocess",
                                       "x.csv", "normalized: true")),
    Case("duplicate-sample", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(samples=_samples()[:-1] + ["S000"]))),
                                        "preprocess", "x.csv", "duplicate")),
    Case("duplicate-gene", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(genes=GENES[:-1] + ["G0"]))),
                                      "preprocess", "x.csv", "duplicate")),
    # --- labels and classes
    Case("labels-match-no-sample", lambda t: (_expr(t, labels=_write(t / "other.csv", _labels([f"Z{i}" for i in range(60)]))),
                                              "preprocess", "other.csv", "sample ids")),
    Case("labels-missing-column", lambda t: (_expr(t, label_key="subtype"), "preprocess", "labels.csv",
                                             "expression.label_key 'subtype'")),
    Case("single-class", lambda t: (_expr(t, labels=_write(t / "one.csv", _labels(classes=["AC"] * 60))), "preprocess",
                                    "expression.label_key", "one class")),
    Case("class-too-small-for-the-test-split", lambda t: (
        _expr(t, labels=_write(t / "rare.csv", _labels(classes=["AC"] * 30 + ["MES"] * 29 + ["NPC"]))), "preprocess",
        "NPC", "test split")),
    Case("lsa-grid-too-small", lambda t: (_config(t, preprocess={"n_genes": 30, "height": 4, "width": 4,
                                                                 "deepinsight": {"embedding": "pca",
                                                                                 "discretization": "lsa"}}),
                                          "preprocess", "preprocess.deepinsight.discretization", "n_genes (30)")),
    Case("gene-filter-matches-nothing", lambda t: (_expr(t, gene_filter=_write(t / "keep.txt", "ENSG1\nENSG2\n")),
                                                   "preprocess", "keep.txt", "no gene")),
    # --- config
    Case("unknown-key", lambda t: (_config(t, preprocess={"n_gnes": 5}), "preprocess", "preprocess.n_gnes",
                                   "unknown key")),
    Case("wrong-type", lambda t: (_config(t, preprocess={"n_genes": "many"}), "preprocess", "preprocess.n_genes",
                                  "integer")),
    Case("missing-input-file", lambda t: (_expr(t, path=str(t / "nowhere.csv")), "preprocess", "nowhere.csv",
                                          "not found")),
    Case("name-with-separator", lambda t: (_config(t, name="a/b"), "preprocess", "name: 'a/b'", "folder name")),
    Case("name-with-dotdot", lambda t: (_config(t, name=".."), "preprocess", "name: '..'", "folder name")),
    Case("name-escaping-outputs", lambda t: (_config(t, name="../../etc"), "preprocess", "name: '../../etc'",
                                             "folder name")),
    Case("stage-not-enabled", lambda t: (_config(t), "train_torch", "train_torch", "not enabled")),
    Case("upstream-not-run", lambda t: (_config(t, stages=["preprocess", "train_torch"], train_torch={"folds": 2}),
                                        "train_torch", "preprocess", "make stage-preprocess")),
]


def _run(stage: str, config: Path, capsys) -> tuple[int, list[str]]:
    """The stage's entry point in this process -> (exit code, stderr's error lines)."""
    import importlib

    run = importlib.import_module(f"stages.{stage}.__main__").run
    code = stage_main(stage, run, ["--config", str(config)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


def _check_nothing_published(outputs: Path, name: str) -> None:
    exp = outputs / name
    if not exp.exists():
        return
    left = [p.relative_to(outputs) for p in exp.rglob("*") if p.name == "manifest.json" or ".tmp-" in p.name]
    stages = [p.name for p in exp.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert not left and not stages, f"published or left behind: {left or stages}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_stops_with_one_line_exit_2_and_nothing_published(case, tmp_path, outputs, capsys):
    cfg, stage, named, says = case.make(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    code, errors = _run(stage, config, capsys)
    assert code == 2, f"exit {code}, errors {errors}"
    assert len(errors) == 1, errors
    assert named in errors[0] and says.lower() in errors[0].lower(), errors[0]
    _check_nothing_published(outputs, str(cfg["name"]))


def test_the_battery_is_large_enough():
    assert len(CASES) + len(MRI_CASES) + len(TRAINED_CASES) + 1 >= 30  # + the TensorFlow row


# ---------------------------------------------------------------------------------------------------------------
# MRI volumes
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from fixtures.mri import write_mri

    root = tmp_path_factory.mktemp("mri") / "cohort"
    write_mri(root, n_patients=10, mutant_fraction=0.5, defects=False, seed=5)
    return root


def _mri_config(root: Path, name="bad_mri") -> dict:
    return {"name": name, "seed": 0, "device": "cpu", "stages": ["train_3d_mri"],
            "mri": {"root": str(root), "layout": "ucsf-pdgm", "metadata": str(root / "UCSF-PDGM-metadata_v2.csv")},
            "train_3d_mri": {"size": [16, 16, 16], "epochs": 1, "batch_size": 2}}


def _damage(root: Path, tmp: Path, how: str) -> tuple[Path, Path]:
    """A copy of the cohort with one patient's file damaged; returns (the copy, the damaged file)."""
    import shutil

    import nibabel as nib

    copy = tmp / "cohort"
    shutil.copytree(root, copy)
    folder = sorted(p for p in copy.iterdir() if p.is_dir())[0]
    t2 = next(folder.glob("*_T2.nii.gz"))
    if how == "empty":
        t2.write_bytes(b"")
    elif how == "truncated":
        t2.write_bytes(t2.read_bytes()[:500])
    elif how in ("shape", "affine"):
        img = nib.load(t2)
        data, affine = np.asarray(img.dataobj), img.affine.copy()
        if how == "shape":
            data = data[:-2]
        else:
            affine[0, 3] += 7.0
        nib.save(nib.Nifti1Image(data, affine), t2)
    elif how == "labels":
        t2 = next(folder.glob("*_tumor_segmentation.nii.gz"))
        img = nib.load(t2)
        data = np.asarray(img.dataobj).copy()
        data[data == 2] = 7
        nib.save(nib.Nifti1Image(data, img.affine), t2)
    return copy, t2


MRI_CASES = [("nifti-empty", "empty", "is the file complete"), ("nifti-truncated", "truncated", "is the file complete"),
             ("nifti-shape-disagrees", "shape", "differs"), ("nifti-affine-disagrees", "affine", "affine"),
             ("mask-labels-outside-the-set", "labels", "labels")]


@pytest.mark.parametrize("how,says", [c[1:] for c in MRI_CASES], ids=[c[0] for c in MRI_CASES])
def test_bad_mri_volume_stops_with_one_line_naming_it(how, says, cohort, tmp_path, outputs, capsys):
    copy, damaged = _damage(cohort, tmp_path, how)
    config = tmp_path / "mri.yaml"
    config.write_text(yaml.safe_dump(_mri_config(copy)))
    code, errors = _run("train_3d_mri", config, capsys)
    assert code == 2 and len(errors) == 1, errors
    assert damaged.name in errors[0] and says.lower() in errors[0].lower(), errors[0]
    _check_nothing_published(outputs, "bad_mri")


# ---------------------------------------------------------------------------------------------------------------
# Stages after a finished preprocess (and train_torch)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small finished preprocess + train_torch run (one experiment folder) the later rows start from."""
    tmp = tmp_path_factory.mktemp("trained")
    outputs = tmp / "outputs"
    cfg = _config(tmp, stages=["preprocess", "train_torch", "explain"], name="trained",
                  preprocess={"n_genes": 40, "height": 8, "width": 8},
                  train_torch={"folds": 2, "epochs": 1, "batch_size": 32, "baselines": []},
                  explain={"methods": ["saliency"]})
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(outputs)}
    for stage in ("preprocess", "train_torch"):
        proc = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--config", str(config)], cwd=REPO, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp, cfg, outputs


TRAINED_CASES = [
    ("markers-with-unknown-classes", "explain", lambda t: {"explain": {"methods": ["saliency"], "markers": _write(
        t / "markers.csv", "class,gene\nOPC,G1\nAC,G2\n")}}, "markers.csv", "OPC"),
    ("too-few-samples-for-the-folds", "train_torch", lambda t: {"train_torch": {"folds": 40, "epochs": 1}},
     "train_torch.folds", "fold"),
]


@pytest.mark.parametrize("stage,change,named,says", [c[1:] for c in TRAINED_CASES], ids=[c[0] for c in TRAINED_CASES])
def test_bad_settings_of_later_stages(stage, change, named, says, trained, tmp_path, monkeypatch, capsys):
    import shutil

    base, cfg, outputs = trained
    copy = tmp_path / "outputs"
    shutil.copytree(outputs, copy)
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(copy))
    cfg = {**cfg, **{k: {**cfg.get(k, {}), **v} for k, v in change(tmp_path).items()}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    code, errors = _run(stage, config, capsys)
    assert code == 2 and len(errors) == 1, errors
    assert named in errors[0] and says.lower() in errors[0].lower(), errors[0]
    after = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    assert after == before, set(after) ^ set(before)  # the finished stages untouched, nothing new published


@pytest.mark.slow
def test_tensorflow_layer_that_does_not_exist(trained, tmp_path):
    import shutil

    base, cfg, outputs = trained
    copy = tmp_path / "outputs"
    shutil.copytree(outputs, copy)
    cfg = {**cfg, "stages": ["preprocess", "train_tf_gradcam"],
           "train_tf_gradcam": {"models": ["reference_cnn"], "folds": 2, "epochs": 1,
                                "explain": {"layer": "conv9"}}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(copy), "ONCOXAI_TEST_TENSORFLOW": "1"}
    proc = subprocess.run([sys.executable, "-m", "stages.train_tf_gradcam", "--config", str(config)], cwd=REPO,
                          env=env, capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "conv9" in errors[0] and "train_tf_gradcam.explain.layer" in errors[0], errors[0]
    assert not (copy / "trained" / "train_tf_gradcam").exists()
