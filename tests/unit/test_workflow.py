"""The generated Snakemake workflow (shared.workflow): one rule per stage per experiment, with make's prerequisites,
the stage's image and its resources; Snakemake itself parses it (a dry run). Resources in the config."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from shared import config, workflow
from shared.containers import image_name, source_hash
from shared.errors import UserError
from shared.pipeline import stage_prerequisites

from ..support import REPO, write_config

pytestmark = pytest.mark.unit
STAGES = ("preprocess", "train_torch", "explain", "report")


def _config(tmp_path, small_data, **extra):
    path = write_config(tmp_path / "c.yaml", small_data, stages=STAGES)
    raw = yaml.safe_load(path.read_text())
    raw.update(extra)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _rules(text: str) -> dict[str, str]:
    """{rule name: its text} of a Snakefile."""
    parts = re.split(r"^rule (\w+):\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_one_rule_per_stage_per_experiment_with_makes_prerequisites(tmp_path, small_data, outputs):
    cfg = _config(tmp_path, small_data, resources={"train_torch": {"gpus": 1, "extra": {"slurm_partition": "gpu"}}})
    snakefile = workflow.generate([str(cfg)], seeds=[0, 1], out=tmp_path / "wf")
    text = snakefile.read_text()
    rules = _rules(text)
    assert len(rules) == 2 * len(STAGES) + 1 and "all" in rules  # 2 seeds x 4 stages, and the default target
    assert set(rules) - {"all"} == {f"t_seed{s}__{stage}" for s in (0, 1) for stage in STAGES}
    assert f'os.environ["ONCOXAI_OUTPUTS"] = "{outputs}"' in text
    exp = config.load(outputs / "t_seed1" / "config.yaml")
    assert exp.seed == 1 and exp.name == "t_seed1"
    version = re.search(r'^version = "(.*)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    for stage in STAGES:
        rule = rules[f"t_seed1__{stage}"]
        needs = stage_prerequisites(exp, stage, outputs / "t_seed1", outputs / "t_seed1" / "config.yaml")
        for path in [p for paths in needs.values() for p in paths]:  # every prerequisite make's target has
            assert f'"{path}"' in rule, (stage, path)
        assert f"stages/{stage}/__main__.py" in rule
        assert f'update("{outputs}/t_seed1/{stage}/manifest.json")' in rule
        assert f'"python -m stages.{stage} --config {outputs}/t_seed1/config.yaml"' in rule
        tag = f"{version}-{source_hash(stage)}"
        assert f'container:\n        "docker://{image_name(stage)}:{tag}"' in rule
        assert f'"{outputs}/t_seed1/{stage}/manifest.json",' in rules["all"]
    assert f'"{outputs}/t_seed1/preprocess/manifest.json"' in rules["t_seed1__train_torch"].split("output:")[0]
    assert "upstream=[]" in rules["t_seed1__preprocess"]
    assert str(small_data / "expression.h5ad") in rules["t_seed1__preprocess"]
    # resources: the config's over the stage's defaults; gpus under the name the executors read
    torch = rules["t_seed1__train_torch"]
    defaults = config.DEFAULT_RESOURCES["train_torch"]
    assert f"threads: {defaults['threads']}" in torch and f"mem_mb={defaults['mem_mb']}," in torch
    assert "gpu=1," in torch and 'slurm_partition="gpu",' in torch
    assert "gpu=" not in rules["t_seed1__report"] and "threads: 1" in rules["t_seed1__report"]  # no GPU: no gpu=
    # the profile beside it: Snakemake compares times only, the stages' fingerprints decide the rest
    profile = yaml.safe_load((tmp_path / "wf" / "profiles" / "default" / "config.yaml").read_text())
    assert profile == {"rerun-triggers": ["mtime"]}
    # and Snakemake reads it: a dry run plans every job
    command, env = workflow.snakemake_command(snakefile, 2, ["-n"])
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^total\s+9$", proc.stdout, re.M), proc.stdout[-2000:]


def test_variants_and_no_container(tmp_path, small_data, outputs):
    cfg = _config(tmp_path, small_data, variants={"short": {"train_torch.epochs": 1}})
    text = workflow.generate([str(cfg)], all_variants=True, out=tmp_path / "wf", container_uri="").read_text()
    rules = _rules(text)
    assert {"t__report", "t_short__report"} <= set(rules) and len(rules) == 2 * len(STAGES) + 1
    assert "container:" not in text
    assert config.load(outputs / "t_short" / "config.yaml").sections["train_torch"].epochs == 1


def test_two_experiments_with_one_name_are_refused(tmp_path, small_data, outputs):
    cfg = _config(tmp_path, small_data)
    with pytest.raises(UserError, match="two experiments named 't'"):
        workflow.generate([str(cfg), str(cfg)], out=tmp_path / "wf")


def test_resources_section_is_validated_and_kept_out_of_fingerprints(tmp_path, small_data):
    cfg = _config(tmp_path, small_data, resources={"explain": {"threads": 2, "mem_mb": 1000}})
    exp = config.load(cfg)
    assert exp.resources_for("explain") == {**config.DEFAULT_RESOURCES["explain"], "threads": 2, "mem_mb": 1000}
    assert exp.resources_for("report") == config.DEFAULT_RESOURCES["report"]
    assert "resources" not in exp.stage_sections("explain")
    assert config.validate(exp.to_dict(), check_files=False).resources == exp.resources  # the resolved config
    for bad, message in (
        ({"nope": {}}, "resources: unknown stage 'nope'"),
        ({"explain": {"cpus": 2}}, "unknown key 'resources.explain.cpus'"),
        ({"explain": {"gpus": -1}}, "resources.explain.gpus"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            config.load(_config(tmp_path, small_data, resources=bad))


def test_cluster_page_lists_each_stages_default_resources():
    page = (REPO / "docs" / "how-to" / "cluster.md").read_text()
    for stage, res in config.DEFAULT_RESOURCES.items():
        row = f"| `{stage}` | {res['threads']} | {res['mem_mb']:,} | {res['gpus']} | {res['runtime']:,} |"
        assert row in page, row
