"""The documentation site: it builds with no warning, and its generated parts say what the code declares."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing

import pytest

from shared import docs
from shared.config import _section_models

from ..support import REPO

pytestmark = pytest.mark.unit


def _leaves(model, prefix=""):
    for name, field in model.model_fields.items():
        sub = docs._sub_section(field.annotation)
        if sub is not None:
            yield from _leaves(sub, f"{prefix}{name}.")
        else:
            yield prefix + name, field, docs.field_comments(model).get(name)


def _sections():
    return _section_models(docs._own_stages())


def test_site_builds_strict(tmp_path):
    """make docs's build: a broken link, a page left out of the nav or an unknown generated part fails it."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text()
    assert "<!-- generated:" not in page
    assert "explain.faithfulness" in page and "points on each curve" in page  # a nested section's key and comment


def test_config_reference_has_every_key_with_its_type_default_and_comment():
    """Every key a stage declares has a row (key, type, default); every key whose type is not a closed list of
    choices has a comment saying what it does, so the reference is complete when a key is added."""
    text = docs.config_section()
    undocumented = []
    for key, model in _sections().items():
        assert f"`{key}`" in text
        for path, field, comment in _leaves(model, f"{key}."):
            name = path.rsplit(".", 1)[-1]
            row = next((r for r in text.splitlines() if r.startswith(f"| `{name}` |")), None)
            assert row is not None, path
            if comment is None and typing.get_origin(field.annotation) is not typing.Literal:
                undocumented.append(path)
    assert not undocumented, f"config keys without a #: comment: {undocumented}"
    faithfulness = text[text.index("`explain.faithfulness`") :]
    assert re.search(r"^\| `steps` \| integer \(≥ 2\) \| `20` \| points on each curve", faithfulness, re.M)
    assert "| `name` | text | required |" in text


def test_field_comments_are_read_from_the_source():
    from stages.train_torch.params import TrainTorch

    comments = docs.field_comments(TrainTorch)
    assert comments["input_dropout"].startswith("training-time augmentation: each input value (gene) is zeroed")
    assert "epochs" in comments and "optimizer" not in comments  # a closed Literal speaks for itself


def test_render_fills_known_parts_and_refuses_unknown_ones():
    page = "# Title\n\n<!-- generated: test-times -->\n\nafter\n"
    out = docs.render(page, "p.md")
    assert "| date | commit |" in out and out.endswith("after\n") and "generated:" not in out
    with pytest.raises(ValueError, match="p.md: unknown generated part 'nope'"):
        docs.render("<!-- generated: nope -->\n", "p.md")


def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)", text):
        if "://" not in target:
            assert (REPO / target).exists(), target


def test_record_demo_keeps_each_models_scores_and_each_methods_trust_figures(tmp_path, monkeypatch):
    """The demo page's tables come from docs/data/demos/EXPERIMENT.json, made by record-demo from a run's summary."""
    import json

    faith = {
        "deletion_auc": 0.2,
        "random_deletion_auc": 0.6,
        "insertion_auc": 0.8,
        "random_insertion_auc": 0.6,
        "p_deletion": 0.01,
        "p_insertion": 0.2,
        "deletion_better_than_random": True,
        "insertion_better_than_random": False,
    }
    summary = {
        "experiment": "demo",
        "n_test": 10,
        "models": {"m": {"macro_f1": 0.9, "accuracy": 0.8, "macro_auc": 1.0, "kind": "deep", "provider": "t"}},
        "explanations": {
            "m/saliency": {
                "faithfulness": faith,
                "sanity": {"spearman_all_at_once": 0.7, "insensitive_to_model": True},
                "stability": {"folds": {"shared_top_k": 0.5}, "draws": {"shared_top_k": 0.9}},
                "marker_precision_at_10": 0.95,
                "localisation": {
                    "true": {
                        "n": 18,
                        "cam_in_mask_mean": 0.25,
                        "chance_mean": 0.16,
                        "above_chance": 18,
                        "p_sign_test": 4e-6,
                    }
                },
                "subregions": {
                    "target": "true",
                    "per_class": {
                        "wildtype": {
                            "ET": {
                                "n": 13,
                                "energy_share_mean": 0.063,
                                "volume_share_mean": 0.03,
                                "ratio_mean": 2.2,
                                "above_chance": 13,
                                "p_sign_test": 0.00024,
                            }
                        },
                        "mutant": {
                            "NCR/NET": {
                                "n": 5,
                                "energy_share_mean": 0.074,
                                "volume_share_mean": 0.038,
                                "ratio_mean": 1.9,
                                "above_chance": 5,
                                "p_sign_test": 0.0625,
                            }
                        },
                    },
                },
            }
        },
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    record = docs.record_demo(tmp_path / "summary.json", "abc1234", {"train_images_per_s": None, "cores": 2})
    assert record["models"] == {"m": {"macro_f1": 0.9, "accuracy": 0.8, "macro_auc": 1.0, "kind": "deep"}}
    method = record["methods"]["m/saliency"]
    assert method["precision_k"] == 10 and method["precision"] == 0.95 and method["insensitive_to_model"]
    assert method["insertion_better_than_random"] is False and method["draws_shared_top_k"] == 0.9
    assert method["localisation"]["above_chance"] == 18
    # the page's table, from the recorded file: a volume model's rows get the localisation column
    monkeypatch.setattr(docs.records, "DEMOS", tmp_path)  # read there when a part is made
    (tmp_path / "demo.json").write_text(json.dumps(record))
    table = docs.render("<!-- generated: demo-methods demo -->")
    assert "tumour mask" in table and "0.250 (0.160), 18 of 18, p = 4e-06" in table
    assert "**no: insertion not shown better than random**" in table
    # a volume demo's sub-region table, from the same file
    regions = docs.render("<!-- generated: demo-subregions demo -->")
    assert "| saliency | wildtype | ET (enhancing tumour) | 0.063 (0.030) | 13 of 13 | 0.00024 |" in regions
    assert "| saliency | mutant | NCR/NET (necrotic / non-enhancing tumour core) | 0.074 (0.038) | 5 of 5 |" in regions
    assert "With 5 exams a row cannot reach p < 0.05" in regions
    # a provider that runs no faithfulness check (train_tf_gradcam) is "not measured", not "yes"; two models: named
    record["methods"]["k/grad_cam"] = {k: None for k in method} | {"precision": 0.05, "layer": "conv1"}
    (tmp_path / "demo.json").write_text(json.dumps(record))
    rows = docs.render("<!-- generated: demo-methods demo -->").splitlines()
    assert rows[-1].startswith("| k/grad_cam (conv1) | 0.05 |  |  | not measured |") and rows[-2].startswith(
        "| m/saliency"
    )


def test_record_demo_keeps_the_stage_times_and_the_page_says_them_with_the_machine(tmp_path, monkeypatch):
    """record-demo reads each stage's wall time from the manifests beside the report's folder; the demo page's
    times line says them in the order the stages started, with the machine's speed."""
    import json

    exp = tmp_path / "demo"
    for stage, started, seconds in (("train_torch", "T2", 60.04), ("preprocess", "T1", 3.0), ("report", "T4", 0.7)):
        (exp / stage).mkdir(parents=True)
        (exp / stage / "manifest.json").write_text(
            json.dumps({"stage": stage, "started": started, "wall_time_s": seconds})
        )
    (exp / "explain").mkdir()  # a stage not finished: no manifest, no time
    summary = {"experiment": "demo", "n_test": 10, "models": {}, "explanations": {}}
    (exp / "report" / "summary.json").write_text(json.dumps(summary))
    record = docs.record_demo(exp / "report" / "summary.json", "abc1234", {"train_images_per_s": 399, "cores": 2})
    assert list(record["stage_seconds"].items()) == [("preprocess", 3.0), ("train_torch", 60.0), ("report", 0.7)]
    monkeypatch.setattr(docs.records, "DEMOS", tmp_path)
    (tmp_path / "demo.json").write_text(json.dumps(record))
    line = docs.render("<!-- generated: demo-times demo -->")
    assert "on a machine of 2 cores, 399 train images/s: preprocess 3.0 s, train_torch 60.0 s, report 0.7 s;" in line
    assert "64 s of stage time in all" in line
    (tmp_path / "demo.json").write_text(json.dumps(record | {"stage_seconds": {}}))
    assert "keeps no stage times" in docs.render("<!-- generated: demo-times demo -->")


def test_demo_shortcuts_renders_the_recorded_audit(tmp_path, monkeypatch):
    """record-demo keeps summary.json's shortcut audit; the demo page's table shows each feature set's skills and
    flags from it, and says so where the recorded run has none."""
    import json

    def result(skill, p, flags=()):
        nuisance = {"kind": "categorical", "score": 0.9, "chance": 0.5, "skill": skill, "p": p, "p_within_class": p}
        cls = {"kind": "categorical", "score": 0.6, "chance": 0.25, "skill": 0.47, "p": 0.005}
        return {"class": cls, "nuisances": {"batch": nuisance}, "flags": list(flags)}

    audit = {
        "nuisances": {"batch": "categorical"},
        "top_k": 10,
        "predictions": result(0.1, 0.3),
        "methods": {"saliency": result(0.95, 0.005, ["batch"]) | {"genes": 26}},
        "flagged": ["saliency: batch"],
    }
    summary = {"experiment": "demo", "n_test": 10, "models": {}, "explanations": {}, "shortcuts": {"m": audit}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    record = docs.record_demo(tmp_path / "summary.json", "abc1234", {"train_images_per_s": None, "cores": 2})
    assert record["shortcuts"] == {"m": audit}
    monkeypatch.setattr(docs.records, "DEMOS", tmp_path)
    (tmp_path / "demo.json").write_text(json.dumps(record))
    rows = docs.render("<!-- generated: demo-shortcuts demo -->").splitlines()
    assert rows[0] == "| model | features | class | batch | flagged |"
    assert rows[2] == "| m | predicted probabilities | 0.47 (p 0.005) | 0.10 (p 0.3) | no |"
    assert rows[3] == "| m | saliency: top 10 genes per class (26 genes) | 0.47 (p 0.005) | 0.95 (p 0.005) | batch |"
    (tmp_path / "demo.json").write_text(json.dumps(record | {"shortcuts": None}))
    assert "records no shortcut audit" in docs.render("<!-- generated: demo-shortcuts demo -->")


def _train_json(path, ours=399.4, plain=387.0):
    import json

    cpu = {
        "device": "cpu",
        "arch": "resnet18",
        "samples": 1024,
        "image": [1, 32, 32],
        "batch_size": 64,
        "ours_images_per_s": ours,
        "plain_images_per_s": plain,
        "throughput_ratio_vs_plain_loop": ours / plain,
    }
    dense = {
        "genes": 2000,
        "preset": "small",
        "ours_samples_per_s": 1.0,
        "plain_samples_per_s": 2.0,
        "throughput_ratio_vs_plain_loop": 0.5,
    }
    path.write_text(json.dumps({**cpu, "cpu": cpu, "cpu_threads": 2, "dense": {"2000": dense}}))
    return path


def test_record_bench_adds_a_generated_entry_that_the_benchmarks_page_renders(tmp_path, monkeypatch):
    """make bench's last step: each outputs/bench/NAME.json through bench/NAME.py's headline into
    docs/data/benchmarks.yaml; the hand-carried entries stay as written, and the page shows the new run first."""
    data = tmp_path / "benchmarks.yaml"
    original = (REPO / "docs" / "data" / "benchmarks.yaml").read_text()
    data.write_text(original)
    kept = len(docs._load(data)["benchmarks"])
    monkeypatch.setattr(docs.records, "BENCHMARKS", data)  # read there, by record-bench too
    results = tmp_path / "bench"
    results.mkdir()
    train = _train_json(results / "train.json")
    assert docs.main(["record-bench", str(train), "--commit", "abc1234+dirty"]) == 0
    text = data.read_text()
    assert text.startswith(original)  # every earlier entry kept, byte for byte
    entry = docs._load(data)["benchmarks"][-1]
    assert entry["generated"] is True and (entry["file"], entry["commit"]) == ("train.json", "abc1234+dirty")
    assert entry["machine"] == {"train_images_per_s": 399, "cores": os.cpu_count()}  # from the same run's train.json
    assert entry["figures"][0]["ours"] == 399 and entry["command"] == "python -m bench.train"

    page = docs.render("<!-- generated: benchmarks -->\n")
    section = page[page.index("### `train.json`") :]
    section = section[: section.index("### ", 4)]
    assert section.index("at commit abc1234+dirty") < section.index("carried over by hand")  # newest first
    assert f"machine: {os.cpu_count()} cores, 399 train images/s." in section
    assert "| ResNet-18 images/s (32 x 32, batch 64, CPU) | 399 | 387 | 1.03 |  |" in section
    assert "machine: 2 cores, train images/s not recorded." in page  # a hand-carried entry without the speed
    assert "train images/s (cores)" not in page  # the old garbled "not recorded (2) train images/s (cores)"

    # the same file at the same commit again: its entry is replaced, not repeated; another commit adds one
    _train_json(train, ours=500.0)
    assert docs.main(["record-bench", str(train), "--commit", "abc1234+dirty", "--images-per-s", "321"]) == 0
    runs = docs._load(data)["benchmarks"][kept:]
    assert len(runs) == 1 and runs[0]["figures"][0]["ours"] == 500 and runs[0]["machine"]["train_images_per_s"] == 321
    assert data.read_text().startswith(original)
    assert docs.main(["record-bench", str(train), "--commit", "def5678", "--note", "the CPU was shared"]) == 0
    assert [b["commit"] for b in docs._load(data)["benchmarks"][kept:]] == ["abc1234+dirty", "def5678"]
    assert "at commit def5678" in (page := docs.render("<!-- generated: benchmarks -->\n"))
    assert "train images/s; the CPU was shared." in page

    # a file no benchmark writes is refused, and nothing is written
    before = data.read_text()
    (results / "nope.json").write_text("{}")
    assert docs.main(["record-bench", str(results / "nope.json"), "--commit", "x"]) == 2
    assert data.read_text() == before


def test_every_benchmark_make_bench_runs_has_a_headline():
    """make bench records every JSON it writes: each of its benchmarks reads its own (bench/NAME.py's headline)."""
    import importlib

    text = (REPO / "Makefile").read_text()
    names = re.search(r"^BENCH_NAMES := (.+)$", text, re.M).group(1).split()
    recipe = text[text.index("\nbench:") :].split("\n\n")[0]
    assert [
        re.search(r"-m bench\.(\w+)", line).group(1) for line in recipe.splitlines() if "-m bench." in line
    ] == names
    assert "record-bench" in recipe.splitlines()[-1]
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        assert callable(module.headline) and module.WHAT and module.REFERENCE, name
