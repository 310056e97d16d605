"""train_tf_gradcam: guided backpropagation is real, Grad-CAM equals its definition, CAMs keep their place when
up-sampled, bad configs fail before training, and the stage is deterministic.

TensorFlow is never imported into the pytest process: loading it before torchvision's triton (which later tests
import) crashes the interpreter (a native-library clash), and the stage itself never runs beside torch. Each check
that needs TensorFlow (``check_*``) runs in a fresh interpreter (``_isolated``); the stage runs as a subprocess.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from shared.errors import UserError

from ..support import REPO, run_stage, write_config


def _installed(*names: str) -> bool:
    for name in names:
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            continue
    return False


pytestmark = pytest.mark.skipif(
    not _installed("tensorflow-cpu", "tensorflow"),
    reason="TensorFlow is not installed (pyproject.toml's train_tf_gradcam extra)",
)


def _isolated(check: str) -> None:
    """Run ``check`` of this module in a fresh interpreter; its assertion errors fail the test with their text."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {__name__} as t; t.{check}()"],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ONCOXAI_TEST_TENSORFLOW": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from stages.train_tf_gradcam import cams, networks

    return tf, keras, cams, networks


def _tiny(seed: int = 0):
    """conv(2, relu) -> global average pooling -> dense(3, relu) -> dense(2): two ReLUs whose gating matters."""
    _, keras, _, _ = _tf()
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((5, 5, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, activation="relu", name="hidden")(x)
    return keras.Model(inp, keras.layers.Dense(2, name="logits")(x))


def _guided_by_hand(model, x: np.ndarray, target: int) -> np.ndarray:
    """Guided backprop of the tiny network written out: at each ReLU the gradient passes only where the forward
    input is positive AND the incoming gradient is positive."""
    conv, hidden, out = model.get_layer("conv"), model.get_layer("hidden"), model.get_layer("logits")
    k, b = [v.numpy() for v in conv.weights]  # (3, 3, 1, 2), (2,)
    w1, b1 = [v.numpy() for v in hidden.weights]  # (2, 3), (3,)
    w2 = out.weights[0].numpy()  # (3, 2)
    img = np.pad(x[0, :, :, 0], 1)
    pre = np.zeros((5, 5, 2))
    for i in range(5):
        for j in range(5):
            pre[i, j] = np.tensordot(img[i : i + 3, j : j + 3], k[:, :, 0, :], axes=([0, 1], [0, 1])) + b
    act = np.maximum(pre, 0)
    pooled = act.mean(axis=(0, 1))
    h_pre = pooled @ w1 + b1
    g_h = w2[:, target].copy()  # d logit / d relu(h_pre)
    g_h = g_h * (h_pre > 0) * (g_h > 0)  # guided gate at the hidden ReLU
    g_pooled = w1 @ g_h
    g_act = np.broadcast_to(g_pooled / 25.0, (5, 5, 2)).copy()
    g_pre = g_act * (pre > 0) * (g_act > 0)  # guided gate at the conv ReLU
    g_img = np.zeros((7, 7))
    for i in range(5):
        for j in range(5):
            g_img[i : i + 3, j : j + 3] += (k[:, :, 0, :] * g_pre[i, j]).sum(axis=-1)
    return g_img[1:-1, 1:-1]


def test_guided_backprop_equals_the_hand_computation_and_differs_from_the_gradient():
    _isolated("check_guided_backprop")


def check_guided_backprop():
    tf, _, cams, _ = _tf()
    rng = np.random.default_rng(0)
    checked = differs = 0
    for seed in range(6):
        model = _tiny(seed)
        x = rng.normal(size=(1, 5, 5, 1)).astype(np.float32)
        for target in (0, 1):
            guided = cams.guided_backprop([model], x, np.array([target]))[0, :, :, 0]
            np.testing.assert_allclose(guided, _guided_by_hand(model, x, target), rtol=1e-4, atol=1e-6)
            xt = tf.convert_to_tensor(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                logit = model(xt)[0, target]
            plain = tape.gradient(logit, xt).numpy()[0, :, :, 0]
            checked += 1
            differs += not np.allclose(guided, plain, atol=1e-6)
    assert differs >= checked // 2, (differs, checked)  # the gates change the result: it is not plain Grad-CAM's no-op


def test_grad_cam_is_the_activations_weighted_by_pooled_gradients_upsampled_in_place():
    _isolated("check_grad_cam")


def check_grad_cam():
    tf, keras, cams, networks = _tf()
    model = networks.build("reference_cnn", (16, 16, 1), 3, 0.0)
    x = np.random.default_rng(1).random((2, 16, 16, 1)).astype(np.float32)
    targets = np.array([0, 2])
    got = cams.cam([model], x, targets, "conv2")[..., 0]
    feature = keras.Model(model.inputs, [model.get_layer("conv2").output, model.output])
    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        a, logits = feature(xt)
        score = tf.gather(logits, targets, batch_dims=1)
    g = tape.gradient(score, a).numpy()
    raw = (a.numpy() * g.mean(axis=(1, 2), keepdims=True)).sum(-1)  # (2, 8, 8), before the ReLU
    # up-sampled with pixel centres (output pixel 2i + 1/2 lies a quarter pixel from input i: no shift), then ReLU
    expected = np.maximum(tf.image.resize(raw[..., None], (16, 16), method="bilinear").numpy()[..., 0], 0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # the map of a single hot cell stays centred on that cell's 2 x 2 block (a one-pixel shift would move it)
    one = np.zeros((1, 8, 8), np.float32)
    one[0, 3, 5] = 1.0
    up = cams.upsample(one, (16, 16))[0]
    rows, cols = np.nonzero(up == up.max())
    assert set(rows) == {6, 7} and set(cols) == {10, 11}


def test_layer_and_depth_errors_name_the_key():
    _isolated("check_layer_errors")


def check_layer_errors():
    _, _, _, networks = _tf()
    model = networks.build("reference_cnn", (16, 16, 1), 3, 0.5)
    assert networks.target_layer(model, "auto") == "conv3"
    with pytest.raises(UserError, match="train_tf_gradcam.explain.layer: no layer 'conv9'"):
        networks.target_layer(model, "conv9")
    with pytest.raises(UserError, match="'dense1' is not a convolutional feature map"):
        networks.target_layer(model, "dense1")
    with pytest.raises(UserError, match="train_tf_gradcam.models: reference_cnn .* at least 8 x 8"):
        networks.build("reference_cnn", (6, 6, 1), 3, 0.5)
    assert networks.target_layer(networks.build("small_resnet", (16, 16, 1), 3, 0.5), "auto") == "block3_out"


@pytest.fixture(scope="module")
def tcga(tmp_path_factory):
    from fixtures.synthetic import write_tcga

    data = tmp_path_factory.mktemp("tcga")
    write_tcga(data, n_samples=300, n_genes=200)
    return data


def _tf_config(path, data, **tf_section):
    cfg = write_config(
        path,
        data,
        stages=["preprocess", "train_tf_gradcam"],
        preprocess={"n_genes": 64, "height": 8, "width": 8, "transform": "gene-grid"},
        train_tf_gradcam={
            "models": ["reference_cnn"],
            "folds": 2,
            "epochs": 3,
            "min_epochs": 0,
            "explain": {"methods": ["grad_cam", "guided_grad_cam"], "markers": str(data / "markers.csv")},
            **tf_section,
        },
    )
    import yaml

    raw = yaml.safe_load(cfg.read_text())
    raw["expression"] = {
        "path": str(data / "expression.tsv"),
        "format": "tcga",
        "labels": str(data / "tumour_types.tsv"),
        "label_key": "cancer_type",
        "group_key": "participant",
    }
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    return cfg


@pytest.mark.slow
def test_two_runs_give_identical_metrics_and_explain_layout(tcga, tmp_path):
    from ..support import check_declared_outputs

    results = []
    for k in range(2):
        env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp_path / f"out{k}")}
        cfg = _tf_config(tmp_path / f"c{k}.yaml", tcga)
        if k == 1:  # the second run also reports: the TF models and their explanations appear like any other
            import yaml

            raw = yaml.safe_load(cfg.read_text())
            raw["stages"] = ["preprocess", "train_tf_gradcam", "report"]
            cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
        for stage in ("preprocess", "train_tf_gradcam", "report")[: 2 + k]:
            proc = run_stage(stage, cfg, env)
            assert proc.returncode == 0, proc.stderr[-3000:]
        stage_dir = tmp_path / f"out{k}" / "t" / "train_tf_gradcam"
        results.append(
            (
                json.loads((stage_dir / "reference_cnn" / "metrics.json").read_text()),
                np.load(stage_dir / "reference_cnn" / "guided_grad_cam" / "attributions.npy"),
            )
        )
    check_declared_outputs(stage_dir, "train_tf_gradcam")
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    explained = json.loads((stage_dir / "metrics.json").read_text())
    entry = explained["models"]["reference_cnn"]["methods"]["guided_grad_cam"]
    assert entry["layer"] == "conv3" and 0 <= entry["marker_precision_at_10"] <= 1
    models = json.loads((stage_dir / "models.json").read_text())
    assert models[0]["framework"] == "tensorflow"
    summary = json.loads((tmp_path / "out1" / "t" / "report" / "summary.json").read_text())
    assert summary["models"]["reference_cnn"]["provider"] == "train_tf_gradcam"
    assert {"reference_cnn/grad_cam", "reference_cnn/guided_grad_cam"} <= set(summary["explanations"])
    html = (tmp_path / "out1" / "t" / "report" / "index.html").read_text()
    assert "Explanation: reference_cnn · guided_grad_cam" in html


def test_bad_configs_fail_before_training_with_one_line_naming_the_key(tcga, tmp_path):
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp_path / "out")}
    cfg = _tf_config(tmp_path / "ok.yaml", tcga)
    assert run_stage("preprocess", cfg, env).returncode == 0
    for name, section, expected in (
        ("layer", {"explain": {"layer": "dense2"}}, "train_tf_gradcam.explain.layer"),
        ("missing", {"explain": {"layer": "nope"}}, "no layer 'nope'"),
    ):
        bad = _tf_config(tmp_path / f"{name}.yaml", tcga, **section)
        proc = run_stage("train_tf_gradcam", bad, env)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr[-2000:]
        assert "epochs in" not in proc.stderr  # nothing was trained
        assert not (tmp_path / "out" / "t" / "train_tf_gradcam").exists()


def test_gene_rankings_without_a_pixel_to_gene_map_fail_before_training():
    _isolated("check_no_gene_map")


def check_no_gene_map():
    """sample-spot images have no pixel->gene map: asking for the CAMs' genes is an error naming the key."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from stages.train_tf_gradcam.__main__ import Images, check_before_training
    from stages.train_tf_gradcam.params import TrainTfGradcam

    folder = Path(tempfile.mkdtemp()) / "preprocess"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"classes": ["a", "b"], "transform": "sample-spot"}))
    np.save(folder / "images.npy", np.zeros((4, 1, 16, 16), np.uint8))
    pd.DataFrame(
        {"sample": list("wxyz"), "label": list("abab"), "label_index": [0, 1, 0, 1], "split": ["train"] * 4}
    ).to_csv(folder / "samples.csv", index=False)
    data = Images(folder)
    with pytest.raises(
        UserError, match="train_tf_gradcam.explain.methods: preprocess.transform 'sample-spot' has no pixel->gene map"
    ):
        check_before_training(TrainTfGradcam(), data)
    assert check_before_training(TrainTfGradcam.model_validate({"explain": {"methods": []}}), data) is None


def test_tensorflow_stays_out_of_the_test_process():
    """The checks above ran TensorFlow in their own interpreters (see the module docstring)."""
    assert sys.modules.get("tensorflow") is None and sys.modules.get("keras") is None
