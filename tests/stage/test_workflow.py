"""The generated Snakemake workflow, run for real on this machine: configs/demo.yaml, shrunk to seconds on the small
fixture, through Snakemake (`python -m shared.workflow run`, 2 cores) gives the same summary.json as the stages run
as make runs them (its plan's resolved config, one stage after the other); a second Snakemake run does nothing; an
edit of the report's section reruns the report's work only. And MultiQC, where it is installed, shows the report's
custom-content sections."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from ..support import REPO, check_declared_outputs, json_differences, shared_root, shrunk_demo_args, shrunk_demo_made

pytestmark = pytest.mark.slow
STAGES = ("preprocess", "train_torch", "explain", "report")


def _snakemake(args: list[str], env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "shared.workflow", "run", "configs/demo.yaml", *args, "--cores", "2"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_data):
    tmp = tmp_path_factory.mktemp("workflow")
    args = shrunk_demo_args(small_data)
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "snakemake")}
    proc = _snakemake(args, env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # the make route (built once for this and the SLURM test; Snakemake exports each job's threads, min(rule threads,
    # --cores) = 2 here, as OMP_NUM_THREADS and its kin, and the make route gets the same, so both sum in one order)
    made = shrunk_demo_made(shared_root(tmp_path_factory), small_data)
    return {"tmp": tmp, "args": args, "env": env, "made": made}


def test_snakemake_run_equals_the_make_route(runs):
    exp = runs["tmp"] / "snakemake" / "demo"
    for stage in STAGES:
        assert (exp / stage / "manifest.json").is_file(), stage
        check_declared_outputs(exp / stage, stage)
    snake = json.loads((exp / "report" / "summary.json").read_text())
    made = json.loads((runs["made"] / "report" / "summary.json").read_text())
    assert not json_differences(snake, made), json_differences(snake, made)[:10]
    # the same fingerprint (downstream ones name their upstream manifests' paths, which differ between the two)
    prints = [json.loads((e / "preprocess" / "manifest.json").read_text()) for e in (exp, runs["made"])]
    assert prints[0]["fingerprint"] == prints[1]["fingerprint"]
    assert (exp / "report" / "multiqc" / "demo_models_mqc.yaml").is_file()


def test_second_run_does_nothing_and_an_edit_reruns_only_its_stage(runs):
    exp = runs["tmp"] / "snakemake" / "demo"
    stamps = {s: (exp / s / "manifest.json").stat().st_mtime_ns for s in STAGES}
    proc = _snakemake(runs["args"], runs["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert stamps == {s: (exp / s / "manifest.json").stat().st_mtime_ns for s in STAGES}
    before = {s: json.loads((exp / s / "manifest.json").read_text()) for s in STAGES}
    # another title rewrites the resolved config: Snakemake starts every stage (their input is newer), and each
    # but the report finds its fingerprint unchanged and keeps its result
    proc = _snakemake([*runs["args"], "--set", "report.title=Changed"], runs["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {s: json.loads((exp / s / "manifest.json").read_text()) for s in STAGES}
    for stage in ("preprocess", "train_torch", "explain"):
        assert after[stage] == before[stage], stage  # same result, same started time: not redone
        assert f"{stage}: up to date" in proc.stderr
    assert after["report"]["started"] >= before["report"]["started"]
    assert after["report"]["fingerprint"] != before["report"]["fingerprint"]
    assert json.loads((exp / "report" / "summary.json").read_text())["title"] == "Changed"


def test_multiqc_shows_the_reports_sections(runs, tmp_path):
    """MultiQC run on the report's folder finds both custom-content files and makes their sections. MultiQC is
    heavy (plotly, polars, kaleido) and no dependency of the project: set MULTIQC to its executable, or have it on
    PATH, to run this check."""
    multiqc = os.environ.get("MULTIQC") or shutil.which("multiqc")
    if not multiqc:
        pytest.skip("multiqc is not installed (set MULTIQC=/path/to/multiqc to run this check)")
    folder = runs["tmp"] / "snakemake" / "demo" / "report" / "multiqc"
    proc = subprocess.run(
        [multiqc, str(folder), "-o", str(tmp_path), "--no-ansi", "-f", "--no-version-check", "--no-ai"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # --no-version-check: no network
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    html = (tmp_path / "multiqc_report.html").read_text()
    for section in ("oncoxai_models", "oncoxai_comparisons"):
        assert f'id="{section}"' in html, section
    assert "Classifiers: held-out scores" in html and "demo: logistic_regression" in html
    data = json.loads((tmp_path / "multiqc_data" / "multiqc_data.json").read_text())
    assert "demo: resnet18" in json.dumps(data)
