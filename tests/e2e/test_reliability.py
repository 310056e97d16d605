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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from shared.stage import main as stage_main

from ..support import REPO, kill_at_points, run_stage, run_stages, stage_cmd

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
    lines = [",".join(["sample", *genes])] + [",".join([s, *row]) for s, row in zip(samples, values, strict=False)]
    return "\n".join(lines) + "\n"


def _labels(samples=None, classes=None) -> str:
    samples = samples or _samples()
    classes = classes or [CLASSES[i % 3] for i in range(len(samples))]
    return "sample,state,donor\n" + "".join(
        f"{s},{c},d{i % 12}\n" for i, (s, c) in enumerate(zip(samples, classes, strict=False))
    )


def _config(tmp: Path, stages=("preprocess",), name="bad", **sections) -> dict:
    cfg = {
        "name": name,
        "seed": 0,
        "device": "cpu",
        "stages": list(stages),
        "expression": {
            "path": _write(tmp / "base.csv", _matrix()),
            "format": "csv",
            "labels": _write(tmp / "labels.csv", _labels()),
            "label_key": "state",
        },
        "preprocess": {"n_genes": 16, "height": 4, "width": 4, "deepinsight": {"embedding": "pca"}},
    }
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

    adata = ad.AnnData(
        np.ones((30, 10), np.float32),
        obs=pd.DataFrame({"state": ["a", "b", "c"] * 10}, index=[f"c{i}" for i in range(30)]),
    )
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


SERIES_HEAD = (
    '!Series_title\t"t"\n!Sample_title\t"A"\t"B"\n!Sample_geo_accession\t"GSM1"\t"GSM2"\n'
    '!Sample_characteristics_ch1\t"subgroup: WNT"\t"subgroup: SHH"\n!series_matrix_table_begin\n'
    '"ID_REF"\t"GSM1"\t"GSM2"\n"p1"\t1.5\t2.5\n'
)

CASES: list[Case] = [
    # --- empty, truncated and foreign files of each format
    Case(
        "h5ad-empty",
        lambda t: (
            _expr(t, path=_write(t / "e.h5ad", b""), format="h5ad", labels=None),
            "preprocess",
            "e.h5ad",
            "cannot read as .h5ad",
        ),
    ),
    Case(
        "h5ad-truncated",
        lambda t: (
            _expr(t, path=_write(t / "cut.h5ad", _h5ad(t).read_bytes()[:3000]), format="h5ad", labels=None),
            "preprocess",
            "cut.h5ad",
            "is the file complete",
        ),
    ),
    Case("csv-empty", lambda t: (_expr(t, path=_write(t / "e.csv", "")), "preprocess", "e.csv", "empty")),
    Case(
        "csv-gz-truncated",
        lambda t: (
            _expr(t, path=_write(t / "cut.csv.gz", gzip.compress(_matrix().encode())[:400])),
            "preprocess",
            "cut.csv.gz",
            "truncated",
        ),
    ),
    Case(
        "gzip-that-is-not-one",
        lambda t: (
            _expr(t, path=_write(t / "fake.csv.gz", b"\x1f\x8b" + os.urandom(300))),
            "preprocess",
            "fake.csv.gz",
            "gzip",
        ),
    ),
    Case(
        "tsv-binary",
        lambda t: (
            _expr(t, path=_write(t / "bin.tsv", bytes(range(256)) * 8), format="tsv"),
            "preprocess",
            "bin.tsv",
            "not a text",
        ),
    ),
    Case(
        "gct-empty",
        lambda t: (
            _expr(t, path=_write(t / "e.gct", ""), format="gct", labels=_attributes(t), label_key="SMTSD"),
            "preprocess",
            "e.gct",
            "empty",
        ),
    ),
    Case(
        "gct-truncated",
        lambda t: (
            _expr(t, path=_write(t / "cut.gct", _gct(rows=3)), format="gct", labels=_attributes(t), label_key="SMTSD"),
            "preprocess",
            "cut.gct",
            "declares 5 genes",
        ),
    ),
    Case(
        "gct-header-fewer-samples",
        lambda t: (
            _expr(
                t,
                path=_write(t / "h.gct", _gct(rows=5, declared_samples=4)),
                format="gct",
                labels=_attributes(t),
                label_key="SMTSD",
            ),
            "preprocess",
            "h.gct",
            "declares 4 samples",
        ),
    ),
    Case(
        "gct-attributes-without-smtsd",
        lambda t: (
            _expr(
                t,
                path=_write(t / "ok.gct", _gct(rows=5)),
                format="gct",
                labels=_attributes(t, "SMTS"),
                label_key="SMTSD",
            ),
            "preprocess",
            "attributes.txt",
            "SMTSD",
        ),
    ),
    Case(
        "series-matrix-empty",
        lambda t: (
            _expr(t, path=_write(t / "e_series_matrix.txt", ""), format="geo", labels=None, label_key="subgroup"),
            "preprocess",
            "e_series_matrix.txt",
            "series matrix",
        ),
    ),
    Case(
        "series-matrix-truncated",
        lambda t: (
            _expr(t, path=_series(t, SERIES_HEAD), format="geo", labels=None, label_key="subgroup", scale="normalized"),
            "preprocess",
            "GSE1_series_matrix.txt.gz",
            "truncated",
        ),
    ),
    Case(
        "series-matrix-without-label",
        lambda t: (
            _expr(
                t,
                path=_series(t, SERIES_HEAD + "!series_matrix_table_end\n"),
                format="geo",
                labels=None,
                label_key="subtype",
                scale="normalized",
            ),
            "preprocess",
            "GSE1_series_matrix.txt.gz",
            "'subtype' is not a characteristic",
        ),
    ),
    # --- values
    Case(
        "non-numeric",
        lambda t: (
            _expr(t, path=_write(t / "x.csv", _matrix(cell=(3, 2, "1.2.3")))),
            "preprocess",
            "x.csv",
            "non-numeric value '1.2.3'",
        ),
    ),
    Case(
        "nan", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(cell=(4, 1, "nan")))), "preprocess", "x.csv", "NaN")
    ),
    Case(
        "inf", lambda t: (_expr(t, path=_write(t / "x.csv", _matrix(cell=(4, 1, "inf")))), "preprocess", "x.csv", "inf")
    ),
    Case(
        "negative-counts",
        lambda t: (
            _expr(t, path=_write(t / "x.csv", _matrix(cell=(5, 5, "-3")))),
            "preprocess",
            "x.csv",
            "scale: normalized",
        ),
    ),
    Case(
        "duplicate-sample",
        lambda t: (
            _expr(t, path=_write(t / "x.csv", _matrix(samples=_samples()[:-1] + ["S000"]))),
            "preprocess",
            "x.csv",
            "duplicate",
        ),
    ),
    Case(
        "duplicate-gene",
        lambda t: (
            _expr(t, path=_write(t / "x.csv", _matrix(genes=GENES[:-1] + ["G0"]))),
            "preprocess",
            "x.csv",
            "duplicate",
        ),
    ),
    # --- labels and classes
    Case(
        "labels-match-no-sample",
        lambda t: (
            _expr(t, labels=_write(t / "other.csv", _labels([f"Z{i}" for i in range(60)]))),
            "preprocess",
            "other.csv",
            "sample ids",
        ),
    ),
    Case(
        "labels-missing-column",
        lambda t: (_expr(t, label_key="subtype"), "preprocess", "labels.csv", "expression.label_key 'subtype'"),
    ),
    Case(
        "single-class",
        lambda t: (
            _expr(t, labels=_write(t / "one.csv", _labels(classes=["AC"] * 60))),
            "preprocess",
            "expression.label_key",
            "one class",
        ),
    ),
    Case(
        "class-too-small-for-the-test-split",
        lambda t: (
            _expr(t, labels=_write(t / "rare.csv", _labels(classes=["AC"] * 30 + ["MES"] * 29 + ["NPC"]))),
            "preprocess",
            "NPC",
            "preprocess.small_classes.policy: leave_out",
        ),
    ),
    Case(
        "lsa-grid-too-small",
        lambda t: (
            _config(
                t,
                preprocess={
                    "n_genes": 30,
                    "height": 4,
                    "width": 4,
                    "deepinsight": {"embedding": "pca", "discretization": "lsa"},
                },
            ),
            "preprocess",
            "preprocess.deepinsight.discretization",
            "n_genes (30)",
        ),
    ),
    Case(
        "gene-filter-matches-nothing",
        lambda t: (_expr(t, gene_filter=_write(t / "keep.txt", "ENSG1\nENSG2\n")), "preprocess", "keep.txt", "no gene"),
    ),
    # --- config
    Case(
        "unknown-key",
        lambda t: (_config(t, preprocess={"n_gnes": 5}), "preprocess", "preprocess.n_gnes", "unknown key"),
    ),
    Case(
        "wrong-type",
        lambda t: (_config(t, preprocess={"n_genes": "many"}), "preprocess", "preprocess.n_genes", "integer"),
    ),
    Case(
        "missing-input-file",
        lambda t: (_expr(t, path=str(t / "nowhere.csv")), "preprocess", "nowhere.csv", "not found"),
    ),
    Case("name-with-separator", lambda t: (_config(t, name="a/b"), "preprocess", "name: 'a/b'", "folder name")),
    Case("name-with-dotdot", lambda t: (_config(t, name=".."), "preprocess", "name: '..'", "folder name")),
    Case(
        "name-escaping-outputs",
        lambda t: (_config(t, name="../../etc"), "preprocess", "name: '../../etc'", "folder name"),
    ),
    Case("stage-not-enabled", lambda t: (_config(t), "train_torch", "train_torch", "not enabled")),
    Case(
        "upstream-not-run",
        lambda t: (
            _config(t, stages=["preprocess", "train_torch"], train_torch={"folds": 2}),
            "train_torch",
            "preprocess",
            "make stage-preprocess",
        ),
    ),
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
    return {
        "name": name,
        "seed": 0,
        "device": "cpu",
        "stages": ["train_3d_mri"],
        "mri": {"root": str(root), "layout": "ucsf-pdgm", "metadata": str(root / "UCSF-PDGM-metadata_v2.csv")},
        "train_3d_mri": {"size": [16, 16, 16], "epochs": 1, "batch_size": 2},
    }


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


MRI_CASES = [
    ("nifti-empty", "empty", "is the file complete"),
    ("nifti-truncated", "truncated", "is the file complete"),
    ("nifti-shape-disagrees", "shape", "differs"),
    ("nifti-affine-disagrees", "affine", "affine"),
    ("mask-labels-outside-the-set", "labels", "labels"),
]


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
    cfg = _config(
        tmp,
        stages=["preprocess", "train_torch", "explain"],
        name="trained",
        preprocess={"n_genes": 40, "height": 8, "width": 8},
        train_torch={"folds": 2, "epochs": 1, "batch_size": 32, "baselines": []},
        explain={"methods": ["saliency"]},
    )
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(outputs)}
    run_stages(config, env, "preprocess", "train_torch")
    return tmp, cfg, outputs


TRAINED_CASES = [
    (
        "markers-with-unknown-classes",
        "explain",
        lambda t: {
            "explain": {"methods": ["saliency"], "markers": _write(t / "markers.csv", "class,gene\nOPC,G1\nAC,G2\n")}
        },
        "markers.csv",
        "OPC",
    ),
    (
        "too-few-samples-for-the-folds",
        "train_torch",
        lambda t: {"train_torch": {"folds": 40, "epochs": 1}},
        "train_torch.folds",
        "fold",
    ),
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
    cfg = {
        **cfg,
        "stages": ["preprocess", "train_tf_gradcam"],
        "train_tf_gradcam": {"models": ["reference_cnn"], "folds": 2, "epochs": 1, "explain": {"layer": "conv9"}},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(copy), "ONCOXAI_TEST_TENSORFLOW": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train_tf_gradcam", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "conv9" in errors[0] and "train_tf_gradcam.explain.layer" in errors[0], errors[0]
    assert not (copy / "trained" / "train_tf_gradcam").exists()


# ---------------------------------------------------------------------------------------------------------------
# Kills, concurrent runs, failed writes, determinism
# ---------------------------------------------------------------------------------------------------------------

PIPELINE = ("preprocess", "train_torch", "explain", "report")
#: values that hold wall-clock times (not results): left out when runs are compared
VOLATILE_KEYS = {"seconds", "wall_time_s", "started", "command", "total_wall_time_s", "biology_seconds"}


def _pipeline_config(tmp: Path, light: bool = False) -> Path:
    """The small pipeline; ``light``: one explanation method and no trust or biology checks (for the tests of who
    writes a stage when, where what the stages compute does not matter)."""
    cfg = _config(
        tmp,
        stages=list(PIPELINE),
        name="rel",
        preprocess={"n_genes": 40, "height": 8, "width": 8},
        train_torch={"folds": 2, "epochs": 3, "batch_size": 16, "baselines": ["logistic_regression"]},
        explain={
            "methods": ["saliency", "integrated_gradients"],
            "integrated_gradients": {"steps": 8},
            "faithfulness": {"max_samples": 8, "steps": 4},
            "sanity": {"max_samples": 4},
            "stability": {"max_samples": 8},
        },
        report={},
    )
    if light:
        off = {"enabled": False}
        cfg["explain"] = {"methods": ["saliency"], "faithfulness": off, "sanity": off, "stability": off, "biology": off}
    path = tmp / "rel.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env(outputs: Path) -> dict:
    return {**os.environ, "ONCOXAI_OUTPUTS": str(outputs)}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _json_value(value):
    """uns entries stored as JSON text -> their value."""
    import json

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _snapshot(folder: Path) -> dict:
    """What a stage folder holds, comparable across runs: bytes of every file, except that JSON is compared
    without wall-clock values, .h5ad by content, TensorBoard event files by count (their names hold a time and a
    pid), the report page by its text without times, and manifest.json by the files it lists (minus those)."""
    import json
    import re

    import anndata as ad

    snap: dict = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        if "events.out.tfevents" in path.name:
            key = str(path.parent.relative_to(folder)) + "/<events>"
            snap[key] = snap.get(key, 0) + 1
        elif path.name == "manifest.json":
            files = json.loads(path.read_text())["files"]
            snap[rel] = sorted(
                (f["path"], f["sha256"]) for f in files if f["path"].endswith((".npy", ".npz", ".csv", ".pt"))
            )
        elif path.suffix == ".json":
            snap[rel] = _strip(json.loads(path.read_text()))
        elif path.suffix == ".h5ad":
            a = ad.read_h5ad(path)
            snap[rel] = (
                a.X.tobytes(),
                {k: np.asarray(v).tobytes() for k, v in a.layers.items()},
                a.obs.to_csv(),
                {k: np.asarray(v).tobytes() for k, v in a.varm.items()},
                json.dumps(_strip(_json_value(a.uns.get("trust", {}))), default=str, sort_keys=True),
            )
        elif path.suffix == ".html":  # up to the provenance (wall times, fingerprints), without the generation time
            text = path.read_text().split("<h2>Provenance</h2>")[0]
            snap[rel] = re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated <t>", text)
        else:
            snap[rel] = path.read_bytes()
    return snap


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The small pipeline run once, uninterrupted, stage by stage: (config, outputs, seconds per stage)."""
    import time

    tmp = tmp_path_factory.mktemp("reference")
    config, outputs = _pipeline_config(tmp), tmp / "outputs"
    seconds = {}
    for stage in PIPELINE:
        start = time.monotonic()
        proc = run_stage(stage, config, _env(outputs))
        assert proc.returncode == 0, proc.stderr[-2000:]
        seconds[stage] = time.monotonic() - start
    return config, outputs, seconds


def _copy_upstream(reference: Path, dest: Path, stage: str) -> None:
    """The reference outputs up to (not including) ``stage``."""
    import shutil

    for upstream in PIPELINE[: PIPELINE.index(stage)]:
        shutil.copytree(reference / "rel" / upstream, dest / "rel" / upstream)


@pytest.mark.slow
@pytest.mark.parametrize("stage", PIPELINE)
def test_a_stage_killed_at_random_points_reruns_to_the_uninterrupted_result(stage, reference_run, tmp_path):
    """SIGKILL at two seeded points of the stage's run (as fractions of its uninterrupted time), then a rerun: the
    outputs equal the uninterrupted run's, and no temporary folder, checkpoint or lock holder is left behind.

    Preprocess, explain and report keep no checkpoints, so their rerun is a run from scratch on the reference's
    upstream outputs: with train_torch run twice from scratch below, the whole pipeline run twice gives the same
    files, summary.json included (every file is compared)."""
    config, reference, seconds = reference_run
    rng = np.random.default_rng(PIPELINE.index(stage))
    outputs = tmp_path / "outputs"
    _copy_upstream(reference, outputs, stage)
    fractions = rng.uniform(0.3, 0.95, size=2)
    killed = kill_at_points(stage_cmd(stage, config, "--force"), _env(outputs), seconds[stage], fractions)
    assert killed >= 1, f"{stage} finished before every kill point"
    rerun = run_stage(stage, config, _env(outputs))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _snapshot(outputs / "rel" / stage) == _snapshot(reference / "rel" / stage)
    left = [p.name for p in (outputs / "rel").iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert not left and not (outputs / "rel" / ".checkpoints" / stage).exists(), left


@pytest.mark.slow
def test_train_torch_run_twice_from_scratch_gives_the_same_result(reference_run, tmp_path):
    """The one stage of the small pipeline that resumes from checkpoints, run from scratch on the reference's
    preprocess: the same files as the reference (the killed reruns above may resume instead)."""
    config, reference, _ = reference_run
    outputs = tmp_path / "outputs"
    _copy_upstream(reference, outputs, "train_torch")
    proc = run_stage("train_torch", config, _env(outputs))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _snapshot(outputs / "rel" / "train_torch") == _snapshot(reference / "rel" / "train_torch")


def test_a_second_writer_of_a_stage_stops_at_once_naming_the_first(tmp_path):
    """One writer per stage folder: while a run holds the stage, another run of it exits 2 with one line."""
    config, outputs = _pipeline_config(tmp_path), tmp_path / "outputs"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\nfrom shared import config\nfrom shared.artifacts import StageRun\n"
                "with StageRun(config.load(sys.argv[1]), 'preprocess') as run:\n"
                "    print('holding', flush=True)\n    time.sleep(600)\n"
            ),
            str(config),
        ],
        cwd=REPO,
        env=_env(outputs),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        proc = run_stage("preprocess", config, _env(outputs))
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
        assert "another run is writing this stage now" in errors[0] and f"pid {holder.pid}" in errors[0]
        assert len(list((outputs / "rel").glob(".preprocess.tmp-*"))) == 1  # the holder's folder was not touched
    finally:
        holder.kill()
        holder.wait()
    proc = run_stage("preprocess", config, _env(outputs))
    assert proc.returncode == 0, proc.stderr[-2000:]  # a killed holder leaves no stale lock
    assert not list((outputs / "rel").glob(".preprocess.tmp-*"))


@pytest.mark.slow
def test_two_make_all_runs_of_one_experiment_at_once(tmp_path):
    config, outputs = _pipeline_config(tmp_path, light=True), tmp_path / "outputs"
    cmd = ["make", "--no-print-directory", "-C", str(REPO), "all", f"CONFIG={config}", "RUNNER=local"]
    runs = [
        subprocess.Popen(cmd, env=_env(outputs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=900), p.stderr.read()) for p in runs]
    assert any(code == 0 for code, _ in results), [err[-1500:] for _, err in results]
    for code, err in results:
        assert code == 0 or "another run is writing this stage now" in err, err[-1500:]
    for stage in PIPELINE:
        assert (outputs / "rel" / stage / "manifest.json").is_file()
    follow = subprocess.run(cmd, env=_env(outputs), capture_output=True, text=True, timeout=900)
    assert follow.returncode == 0, follow.stderr[-1500:]


def test_a_write_that_fails_leaves_the_previous_result_and_one_line(tmp_path):
    """Disk full, simulated with a file-size limit (RLIMIT_FSIZE; root ignores a read-only chmod): the forced rerun
    exits 2 with one line, the previous result is untouched, nothing partial is published or left."""
    import resource
    import signal

    config, outputs = _pipeline_config(tmp_path), tmp_path / "outputs"
    first = run_stage("preprocess", config, _env(outputs))
    assert first.returncode == 0, first.stderr[-2000:]
    before = _snapshot(outputs / "rel" / "preprocess")
    manifest = (outputs / "rel" / "preprocess" / "manifest.json").read_bytes()

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run(
        stage_cmd("preprocess", config, "--force"),
        cwd=REPO,
        env={**_env(outputs), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "cannot write" in errors[0] and "previous result" in errors[0], errors[0]
    assert (outputs / "rel" / "preprocess" / "manifest.json").read_bytes() == manifest
    assert _snapshot(outputs / "rel" / "preprocess") == before
    assert not list((outputs / "rel").glob(".preprocess.tmp-*"))


# ---------------------------------------------------------------------------------------------------------------
# Safety
# ---------------------------------------------------------------------------------------------------------------


def test_no_code_executing_loads_of_files_a_user_could_supply():
    """Checkpoints load with weights_only=True, arrays without pickles, YAML safely; no pickle or joblib loads."""
    import re

    offenders = []
    for path in [
        *REPO.glob("shared/**/*.py"),
        *REPO.glob("stages/**/*.py"),
        *REPO.glob("fixtures/*.py"),
        *REPO.glob("bench/*.py"),
    ]:
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"\btorch\.load\(", code) and "weights_only=True" not in code:
                offenders.append(f"{path.relative_to(REPO)}:{n}: torch.load without weights_only=True")
            if re.search(r"\b(pickle|joblib|dill|cloudpickle)\.loads?\(", code):
                offenders.append(f"{path.relative_to(REPO)}:{n}: a pickle load")
            if re.search(r"\byaml\.(load|unsafe_load|full_load)\(", code):
                offenders.append(f"{path.relative_to(REPO)}:{n}: yaml loaded unsafely")
            if "allow_pickle=True" in code:
                offenders.append(f"{path.relative_to(REPO)}:{n}: numpy load with pickles")
    assert not offenders, offenders


def test_stage_containers_run_as_the_user_without_network_on_a_read_only_root():
    from shared.containers import Settings, stage_command

    argv = " ".join(stage_command("report", "c.yaml", Settings(repo=REPO, user="7:7", commit="c")))
    for flag in ("--network none", "--user 7:7", "--read-only", f"{REPO}/data:/app/data:ro"):
        assert flag in argv, flag


@pytest.mark.slow
def test_the_mri_stage_killed_at_random_points_reruns_to_the_uninterrupted_result(cohort, tmp_path):
    import time

    cfg = _mri_config(cohort, name="rel_mri")
    cfg["train_3d_mri"].update(size=[32, 32, 32], epochs=2, trainable_blocks=5)
    config = tmp_path / "mri.yaml"
    config.write_text(yaml.safe_dump(cfg))
    reference, outputs = tmp_path / "reference", tmp_path / "outputs"
    start = time.monotonic()
    proc = run_stage("train_3d_mri", config, _env(reference))
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds = time.monotonic() - start
    fractions = np.random.default_rng(11).uniform(0.4, 0.95, size=2)
    killed = kill_at_points(stage_cmd("train_3d_mri", config, "--force"), _env(outputs), seconds, fractions)
    assert killed >= 1
    rerun = run_stage("train_3d_mri", config, _env(outputs))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _snapshot(outputs / "rel_mri" / "train_3d_mri") == _snapshot(reference / "rel_mri" / "train_3d_mri")
    left = [p.name for p in (outputs / "rel_mri").iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert not left and not (outputs / "rel_mri" / ".checkpoints" / "train_3d_mri").exists(), left
