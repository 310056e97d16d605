"""Config loading: unknown keys and wrong types are one-line errors naming the key, before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from shared import config
from shared.errors import UserError

from ..support import REPO, write_config


def _load(tmp_path, small_data, mutate, overrides=()):
    path = write_config(tmp_path / "c.yaml", small_data, stages=("preprocess", "train_torch"))
    raw = yaml.safe_load(path.read_text())
    mutate(raw)
    path.write_text(yaml.safe_dump(raw))
    return config.load(path, list(overrides))


def test_valid_config_fills_defaults(tmp_path, small_data):
    exp = _load(tmp_path, small_data, lambda raw: None)
    assert exp.stages == ("preprocess", "train_torch")
    assert exp.section("train_torch").lr == pytest.approx(1e-3)
    assert exp.section("preprocess").deepinsight.embedding == "pca"


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda r: r["train_torch"].update(epoch=3), "train_torch.epoch"),
        (lambda r: r["preprocess"]["deepinsight"].update(embeding="pca"), "preprocess.deepinsight.embeding"),
        (lambda r: r.update(colour="red"), "colour"),
    ],
)
def test_unknown_key_is_named(tmp_path, small_data, mutate, key):
    with pytest.raises(UserError, match=rf"unknown key '{key}'"):
        _load(tmp_path, small_data, mutate)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda r: r["train_torch"].update(epochs="ten"), "train_torch.epochs"),
        (lambda r: r["train_torch"].update(epochs=2.5), "train_torch.epochs"),
        (lambda r: r["preprocess"].update(height=-1), "preprocess.height"),
        (lambda r: r["expression"].update(format="xlsx"), "expression.format"),
        (lambda r: r.update(seed="0"), "seed"),
    ],
)
def test_wrong_type_is_named(tmp_path, small_data, mutate, key):
    with pytest.raises(UserError) as err:
        _load(tmp_path, small_data, mutate)
    message = str(err.value)
    assert f": {key}: " in message and "\n" not in message


def test_missing_input_file_and_unknown_stage(tmp_path, small_data):
    with pytest.raises(UserError, match="input file not found: .*nope.h5ad"):
        _load(tmp_path, small_data, lambda r: r["expression"].update(path=str(tmp_path / "nope.h5ad")))
    with pytest.raises(UserError, match="unknown stage 'trian_torch'"):
        _load(tmp_path, small_data, lambda r: r.update(stages=["preprocess", "trian_torch"]))
    with pytest.raises(UserError, match=r"'train_torch' needs a stage that provides dataset \(preprocess\)"):
        _load(tmp_path, small_data, lambda r: r.update(stages=["train_torch"]))


def test_set_overrides_parse_values_and_check_keys(tmp_path, small_data):
    exp = _load(
        tmp_path,
        small_data,
        lambda r: None,
        ["train_torch.epochs=7", "train_torch.lr=0.01", "preprocess.deepinsight.embedding=tsne"],
    )
    assert exp.section("train_torch").epochs == 7
    assert exp.section("train_torch").lr == pytest.approx(0.01)
    assert exp.section("preprocess").deepinsight.embedding == "tsne"
    with pytest.raises(UserError, match="unknown key 'train_torch.epoks'"):
        _load(tmp_path, small_data, lambda r: None, ["train_torch.epoks=7"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        _load(tmp_path, small_data, lambda r: None, ["train_torch.epochs"])


def test_bad_config_exits_2_with_one_line_before_any_work(tmp_path, small_data, outputs):
    path = write_config(tmp_path / "c.yaml", small_data)
    raw = yaml.safe_load(path.read_text())
    raw["preprocess"]["n_gnes"] = 10
    path.write_text(yaml.safe_dump(raw))
    for cmd in (
        [sys.executable, "-m", "stages.preprocess", "--config", str(path)],
        [sys.executable, "-m", "shared.pipeline", "plan", str(path)],
    ):
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 2
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines == [
            f"error: config error in {path}: unknown key 'preprocess.n_gnes' "
            "(check the spelling; see docs/reference/configuration.md)"
        ]
    assert not outputs.exists()


def test_invalid_yaml_and_empty_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(bad)
    bad.write_text("")
    with pytest.raises(UserError, match="empty"):
        config.load(bad)
    with pytest.raises(UserError, match="config file not found"):
        config.load(tmp_path / "missing.yaml")


def test_every_shipped_config_and_variant_validates():
    """`python -m shared.config check configs/*.yaml`: each config, and each of its variants, is valid (the data of
    the reference datasets need not be here); and every data file they read is one that make fetch writes."""
    configs = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.yaml"))
    assert {
        "configs/gtex.yaml",
        "configs/gse85217.yaml",
        "configs/gbm-smartseq2.yaml",
        "configs/tcga.yaml",
        "configs/ucsf-pdgm.yaml",
    } <= set(configs)
    proc = subprocess.run(
        [sys.executable, "-m", "shared.config", "check", *configs], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    expected = sum(1 + len(config.variant_names(REPO / c)) for c in configs)
    assert len([line for line in proc.stdout.splitlines() if line.startswith("ok: ")]) == expected
    assert "(variant reference)" in proc.stdout

    from fetch.registry import REGISTRY

    fetched = {f"data/{name}/{f['path']}" for name, ds in REGISTRY.items() for f in ds["files"]}
    for c in configs:
        exp = config.load(REPO / c, check_files=False)
        for stage in exp.stages:
            for path in exp.input_files(stage):
                folder = path.split("/")[1]
                if folder in REGISTRY:
                    assert path in fetched, f"{c}: {path} is not a file make fetch DATASET={folder} writes"
    gtex = config.load(REPO / "configs/gtex.yaml", check_files=False).section("expression")
    assert len([gtex.path, *gtex.more_paths]) == 54


def test_a_variant_applies_its_settings_under_its_own_name(tmp_path, small_data):
    path = write_config(tmp_path / "c.yaml", small_data)
    raw = yaml.safe_load(path.read_text())
    raw["variants"] = {"reference": {"preprocess.n_genes": 3, "preprocess.transform": "vector"}}
    path.write_text(yaml.safe_dump(raw))
    base, ref = config.load(path), config.load(path, variant="reference")
    assert ref.name == f"{base.name}_reference" and ref.section("preprocess").n_genes == 3
    assert ref.section("preprocess").transform == "vector" and base.section("preprocess").transform != "vector"
    with pytest.raises(UserError, match="no variant 'other' \\(variants: reference\\)"):
        config.load(path, variant="other")
    raw["variants"]["bad"] = {"preprocess.n_gnes": 1}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="unknown key 'preprocess.n_gnes'"):
        config.load(path, variant="bad")
