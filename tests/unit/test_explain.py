"""explain's methods against hand computations on tiny models, and the trust measures against planted cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shared.errors import UserError
from shared.models import Ensemble, Standardize
from stages.explain.methods import METHODS
from stages.explain.params import Explain
from stages.explain.quality import faithfulness, randomisation

IGOptions, GradCamOptions = METHODS["integrated_gradients"].Options, METHODS["grad_cam"].Options


def _cnn(seed: int, channels: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        Standardize([0.4] * channels, [0.3] * channels, spatial_dims=2),
        nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 3),
        ),
    ).eval()


def test_integrated_gradients_satisfies_completeness():
    torch.manual_seed(0)
    model = nn.Sequential(
        Standardize([0.5] * 6, [0.2] * 6, spatial_dims=0), nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    ).eval()
    x = torch.rand(5, 6)
    target = torch.tensor([0, 1, 2, 0, 1])
    for baseline in ("zeros", "mean"):
        method = METHODS["integrated_gradients"](model, IGOptions(steps=200, baseline=baseline))
        attr = method.attribute(x.clone().requires_grad_(True), target)
        with torch.no_grad():
            base = method.baseline(x)
            gap = (model(x) - model(base)).gather(1, target[:, None])[:, 0]
        np.testing.assert_allclose(attr.sum(1).detach().numpy(), gap.numpy(), rtol=1e-3, atol=1e-4)
        if baseline == "mean":  # the training mean, read from the model's first layer
            assert torch.allclose(base, torch.full_like(x, 0.5))


def test_gradient_methods_on_a_linear_model_are_its_weights_with_their_signs():
    """logit = W x + b: the gradient is W[target] (signs kept), saliency |W[target]|, gradient x input x * W[target]."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3).eval()
    weights = model.weight.detach()
    assert (weights > 0).any() and (weights < 0).any()
    x = torch.rand(4, 6) + 0.5
    target = torch.tensor([0, 1, 2, 1])
    expected = weights[target]

    def attribute(name):
        return METHODS[name](model).attribute(x.clone().requires_grad_(True), target).detach()

    torch.testing.assert_close(attribute("gradient"), expected)
    torch.testing.assert_close(attribute("saliency"), expected.abs())
    torch.testing.assert_close(attribute("input_x_gradient"), x * expected)
    # the gradient is the same everywhere, so noise changes nothing: SmoothGrad is W[target] too, signs kept
    torch.testing.assert_close(attribute("smoothgrad"), expected, rtol=1e-5, atol=1e-6)
    # DeepLIFT and Integrated Gradients from zeros are (x - 0) * W[target] on a linear model
    torch.testing.assert_close(attribute("deeplift"), x * expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attribute("integrated_gradients"), x * expected, rtol=1e-4, atol=1e-5)


def test_grad_cam_is_the_activations_weighted_by_pooled_gradients():
    members = [_cnn(1), _cnn(2)]
    model = Ensemble(members).eval()
    x = torch.rand(3, 2, 8, 8)
    target = torch.tensor([2, 0, 1])
    method = METHODS["grad_cam"](model, GradCamOptions(layer="auto"))
    got = method.attribute(x.clone().requires_grad_(True), target).detach()
    assert method.layer_name == "3"  # the last layer with spatial extent: the second convolution's ReLU
    # by hand: for each fold model, its ReLU's activations A and the gradient of the ensemble's logit w.r.t. them
    total = torch.zeros(3, 1, 8, 8)
    for m in members:
        acts = {}
        handle = m[1][3].register_forward_hook(lambda mod, i, out, acts=acts: acts.setdefault("a", out))
        logits = model(x)
        handle.remove()
        a = acts["a"]
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), a)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        total += (weights * a).sum(1, keepdim=True).detach()  # 8x8 already: up-sampling is the identity
    expected = torch.relu(total).expand_as(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # Guided Grad-CAM: guided backpropagation times that map, element by element
    from captum.attr import GuidedBackprop

    guided = METHODS["guided_grad_cam"](model, GradCamOptions()).attribute(x.clone().requires_grad_(True), target)
    gb = GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=target)
    torch.testing.assert_close(guided.detach(), (gb * expected).detach(), rtol=1e-4, atol=1e-6)


def test_grad_cam_layer_by_name_and_a_layer_that_does_not_exist():
    model = _cnn(0)
    x = torch.rand(2, 2, 8, 8, requires_grad=True)
    method = METHODS["grad_cam"](model, GradCamOptions(layer="0"))  # the first convolution, named in the network
    assert method.attribute(x, torch.tensor([0, 1])).shape == x.shape and method.layer_name == "0"
    with pytest.raises(UserError, match=r"explain.grad_cam.layer: no layer 'layer9'.*candidates"):
        METHODS["grad_cam"](model, GradCamOptions(layer="layer9")).attribute(x, torch.tensor([0, 1]))


def test_option_that_does_not_apply_and_unknown_method_are_config_errors():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="layer"):
        Explain.model_validate({"smoothgrad": {"layer": "x"}})
    with pytest.raises(ValidationError, match="methods"):
        Explain.model_validate({"methods": ["gradcam++"]})
    e = Explain()
    assert e.options("guided_grad_cam") is e.grad_cam and e.options("saliency") is None


def _planted_linear(n_features: int = 40, informative: int = 5):
    """A model whose class-1 logit rises with features 0..informative-1 only (class 0 is the opposite)."""
    w = torch.zeros(2, n_features)
    w[1, :informative], w[0, :informative] = 2.0, -2.0
    model = nn.Linear(n_features, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    return model.eval(), w


def test_deletion_with_the_true_ranking_beats_random_and_a_reversed_one_does_not():
    model, w = _planted_linear()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((60, 40)).astype(np.float32))
    x[:, :5] += 1.0  # the informative features are high: class 1 is confident
    target = torch.ones(60, dtype=torch.long)
    truth = np.broadcast_to(w[1].numpy(), (60, 40)).copy()
    good = faithfulness(model, x, target, truth, signed=True, steps=10, seed=0)
    assert good["better_than_random"] and good["deletion_auc"].mean() < good["random_deletion_auc"].mean()
    assert good["insertion_auc"].mean() > good["random_insertion_auc"].mean()
    bad = faithfulness(model, x, target, -truth, signed=True, steps=10, seed=0)
    assert not bad["better_than_random"]


class InputAsAttribution:
    """An 'edge detector': returns the input itself, whatever the weights."""

    signed, kinds = False, ("image",)

    def __init__(self, model, options=None):
        pass

    def attribute(self, inputs, target):
        return inputs.detach().clone()


def test_randomisation_flags_a_method_that_ignores_the_weights_and_passes_the_gradient():
    model = Ensemble([_cnn(3)]).eval()
    torch.manual_seed(0)
    x = torch.rand(16, 2, 8, 8)
    x[:, :, 2:5, 2:5] += 1.0
    target = torch.zeros(16, dtype=torch.long)
    ignore = randomisation(model, InputAsAttribution, x, target, x.numpy(), seed=0)
    assert ignore["all_at_once"] > 0.99 and all(c["spearman"] > 0.99 for c in ignore["cascade"])
    gradient = METHODS["gradient"]
    trained = gradient(model).attribute(x.clone().requires_grad_(True), target).detach().numpy()
    real = randomisation(model, gradient, x, target, trained, seed=0)
    assert real["all_at_once"] < 0.5, real
    assert [c["randomised_down_to"] for c in real["cascade"]] == ["6", "2", "0"]  # Linear, Conv, Conv: top down


# -- stability, per-sample tables, markers, options --------------------------------------------------------------
def _vector_inputs(x: np.ndarray, labels: np.ndarray):
    """A ModelInputs of vectors held in memory (explain reads them from the experiment folder)."""
    import pandas as pd

    from stages.explain.inputs import ModelInputs

    data = object.__new__(ModelInputs)
    data.kind, data.scale, data.array, data.labels = "vector", 1.0, x, labels
    data.samples = pd.DataFrame({"sample": [f"s{i}" for i in range(len(x))]})
    data.features = np.array([f"g{i}" for i in range(x.shape[1])])
    data.gmap = data.gene_values = data.genes_table = None
    return data


def _dense(seed: int, planted: bool) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Linear(40, 2)
    if planted:  # class 1 rises with genes 0..4, class 0 with genes 5..9; the rest ignored
        with torch.no_grad():
            net.weight.zero_()
            net.weight[1, :5], net.weight[0, 5:10] = 2.0, 2.0
    return nn.Sequential(Standardize([0.5] * 40, [0.3] * 40, spatial_dims=0), net).eval()


def test_stability_is_perfect_for_identical_fold_models_and_not_for_unrelated_ones():
    from stages.explain.quality import stability

    rng = np.random.default_rng(0)
    x = rng.random((30, 40)).astype(np.float32)
    labels = np.arange(30) % 2
    data, settings = _vector_inputs(x, labels), Explain.model_validate({"top_k": 5, "stability": {"draws": 3}})
    same = Ensemble([_dense(0, True), _dense(0, True), _dense(0, True)]).eval()
    s = stability(same, "input_x_gradient", settings, data, ["a", "b"], torch.device("cpu"), seed=0)
    assert s["folds"]["n"] == 3 and s["folds"]["shared_top_k"] == 1.0 and s["folds"]["spearman"] > 0.999
    assert "draws" not in s  # a deterministic method has no draws to compare
    unrelated = Ensemble([_dense(0, True), _dense(1, False), _dense(2, False)]).eval()
    u = stability(unrelated, "input_x_gradient", settings, data, ["a", "b"], torch.device("cpu"), seed=0)
    assert u["folds"]["shared_top_k"] < 0.7 and u["folds"]["spearman"] < 0.5, u["folds"]
    linear = stability(same, "smoothgrad", settings, data, ["a", "b"], torch.device("cpu"), seed=0)
    assert linear["draws"]["spearman"] > 0.999  # a linear model's gradient is the same at every noisy copy
    torch.manual_seed(0)
    curved = Ensemble(
        [
            nn.Sequential(
                Standardize([0.5] * 40, [0.3] * 40, spatial_dims=0), nn.Linear(40, 16), nn.Tanh(), nn.Linear(16, 2)
            ).eval()
        ]
    )
    noisy = stability(curved, "smoothgrad", settings, data, ["a", "b"], torch.device("cpu"), seed=0)
    assert "folds" not in noisy  # one model: nothing to compare across folds
    assert noisy["draws"]["n"] == 3 and 0 < noisy["draws"]["spearman"] < 0.9999, noisy["draws"]


def test_per_sample_table_keeps_the_top_genes_above_the_threshold():
    from stages.explain.__main__ import per_sample_top

    data = _vector_inputs(np.zeros((2, 4), np.float32), np.array([0, 1]))
    data.proba = np.array([[0.9, 0.1], [0.6, 0.4]])
    scores = np.array([[1.0, 0.5, 0.05, -2.0], [0.2, 0.4, 0.3, 0.1]], np.float32)
    signed = per_sample_top(scores, data, ["a", "b"], data.features, True, k=3, threshold=0.1)
    assert signed.loc[signed["sample"] == "s0", "gene"].tolist() == ["g0", "g1"]  # 0.05 < 0.1 x 1.0; -2 not positive
    assert signed.loc[signed["sample"] == "s1", "gene"].tolist() == ["g1", "g2", "g0"]  # top 3 of 4
    assert signed.loc[signed["sample"] == "s1", "prediction"].iat[0] == "a"
    assert list(signed.columns) == ["sample", "class", "prediction", "gene", "score", "rank"]


def test_markers_with_unknown_genes_warn_and_unknown_classes_are_an_error(tmp_path, caplog):
    from shared.evaluation.rankings import read_markers

    path = tmp_path / "markers.csv"
    path.write_text("class,gene\na,g1\na,NOPE1\nb,g2\nb,g3\n")
    with caplog.at_level("WARNING"):
        markers = read_markers(str(path), ["a", "b"], genes=["g1", "g2", "g3"])
    assert markers == {"a": {"g1"}, "b": {"g2", "g3"}}
    assert "NOPE1" in caplog.text
    with pytest.raises(UserError, match="none of its genes"):
        read_markers(str(path), ["a", "b"], genes=["x", "y"])
    with pytest.raises(UserError, match="no class"):
        read_markers(str(path), ["c"], genes=["g1"])
    path.write_text("class,gene\na,g1\nzz,g3\n")  # a misspelt or foreign class
    with pytest.raises(UserError, match=r"1 classes are not classes of the data \(zz; the data's: a, b\)"):
        read_markers(str(path), ["a", "b"], genes=["g1", "g3"])


def test_markers_and_gene_sets_in_symbols_match_data_keyed_by_ensembl_ids(tmp_path, caplog):
    """GTEx and GDC data are keyed by Ensembl ids with a symbol column: a markers file or GMT in symbols matches through
    it (a symbol carried by several genes stands for all of them, named in the log), and a markers file naming
    classes as the label table spells them ('Whole Blood') matches the data's renamed classes ('whole_blood')."""
    from shared.evaluation.rankings import read_markers
    from stages.explain.biology import gene_sets

    genes = ["ENSG00000223972.5", "ENSG00000199916.1", "ENSG00000201317.1", "ENSG00000244734.3"]
    symbols = ["DDX11L1", "Y_RNA", "Y_RNA", "HBB"]
    path = tmp_path / "markers.csv"
    path.write_text("class,gene\nWhole Blood,HBB\nBrain - Cortex,Y_RNA\nBrain - Cortex,ENSG00000223972.5\n")
    classes = ["brain_cortex", "whole_blood"]
    with caplog.at_level("INFO"):
        markers = read_markers(str(path), classes, genes, symbols)
    assert markers == {"whole_blood": {genes[3]}, "brain_cortex": {genes[0], genes[1], genes[2]}}
    assert "Y_RNA (2 genes)" in caplog.text
    path.write_text("class,gene\nwhole_blood,HBB\nbrain_cortex,Y_RNA\n")
    with pytest.raises(UserError, match="none of its genes is a gene of the data"):
        read_markers(str(path), classes, genes)  # without the symbols, ids only
    path.write_text("class,gene\nWhole  blood,HBB\nLung,HBB\n")
    with pytest.raises(UserError, match=r"1 classes are not classes of the data \(Lung;"):
        read_markers(str(path), classes, genes, symbols)

    gmt = tmp_path / "sets.gmt"
    gmt.write_text("RNA\td\tY_RNA\tDDX11L1\nBLOOD\td\tHBB\tENSG00000199916.1\n")
    matched, _ = gene_sets.match_gene_sets(gene_sets.read_gmt(gmt), np.array(genes), np.array(symbols), str(gmt), 2)
    assert list(matched["RNA"]) == [0, 1, 2] and list(matched["BLOOD"]) == [1, 3]


def test_options_of_a_method_that_is_not_run_are_named_in_a_warning(caplog):
    with caplog.at_level("WARNING"):
        Explain.model_validate({"methods": ["saliency"], "grad_cam": {"layer": "layer3"}})
    assert "explain.grad_cam" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        Explain.model_validate({"methods": ["guided_grad_cam"], "grad_cam": {"layer": "layer3"}})
    assert not caplog.text


# -- chunked storage (stages/explain/store.py) ----------------------------------------------------------------------
def test_lazy_rows_read_what_numpy_reads(tmp_path):
    from stages.explain.store import LazyRows

    rng = np.random.default_rng(0)
    for k, array in enumerate([rng.random((50, 3, 4), dtype=np.float32), rng.integers(0, 255, (40, 7), np.uint8)]):
        path = tmp_path / f"a{k}.npy"
        np.save(path, array)
        rows = np.sort(rng.choice(len(array), 25, replace=False))
        lazy = LazyRows(path, rows)
        assert lazy.shape == (25, *array.shape[1:]) and len(lazy) == 25 and lazy.ndim == array.ndim
        np.testing.assert_array_equal(lazy[3:17], array[rows[3:17]])
        np.testing.assert_array_equal(lazy[np.array([0, 5, 6, 7, 24])], array[rows[[0, 5, 6, 7, 24]]])
        np.testing.assert_array_equal(lazy[4], array[rows[4]])
        np.testing.assert_array_equal(lazy.take(np.array([1, 2, 9]), axis=0)[:], array[rows[[1, 2, 9]]])
        assert lazy[5:5].shape == (0, *array.shape[1:])
    wide = tmp_path / "v2.npy"  # a version 2.0 header (what NpyRows writes)
    with open(wide, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (4, 2)})
        fh.write(np.arange(8, dtype=np.float32).tobytes())
    np.testing.assert_array_equal(LazyRows(wide)[:], np.arange(8, dtype=np.float32).reshape(4, 2))


def test_npy_rows_round_trip_and_an_incomplete_file_is_not_left(tmp_path):
    from stages.explain.store import NpyRows

    data = np.arange(60, dtype=np.float32).reshape(10, 2, 3)
    w = NpyRows(tmp_path / "a.npy", data.shape, np.float16)
    for s in range(0, 10, 4):
        w.write(data[s : s + 4])
    assert not (tmp_path / "a.npy").exists()  # only once complete
    w.close()
    back = np.load(tmp_path / "a.npy")
    assert back.dtype == np.float16 and np.array_equal(back, data.astype(np.float16))
    short = NpyRows(tmp_path / "b.npy", data.shape, np.float32)
    short.write(data[:4])
    with pytest.raises(ValueError, match="4 rows written of 10"):
        short.close()
    wrong = NpyRows(tmp_path / "c.npy", (2, 3), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        wrong.write(np.zeros((3, 3)))
    wrong.abort()  # what explain_method does on any error
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_class_means_and_kept_rows_over_blocks_equal_all_at_once():
    from shared.evaluation.rankings import class_means
    from stages.explain.store import ClassMeans, KeptRows

    rng = np.random.default_rng(1)
    values, labels = rng.normal(size=(37, 2, 5)), rng.integers(0, 3, 37)
    labels[labels == 2] = 1  # class 2 absent: NaN as class_means gives
    acc, kept = ClassMeans(3), KeptRows(np.array([30, 2, 2, 17]))
    for s in range(0, 37, 8):
        acc.add(values[s : s + 8], labels[s : s + 8])
        kept.offer(s, values[s : s + 8])
    np.testing.assert_allclose(acc.result(), class_means(values, labels, 3), rtol=1e-12)
    assert np.isnan(acc.result()[2]).all()
    np.testing.assert_array_equal(kept[np.array([17, 2])], values[[17, 2]])
    with pytest.raises(KeyError):
        kept[np.array([3])]


def test_anndata_written_in_parts_reads_back_in_anndata(tmp_path):
    import anndata as ad
    import pandas as pd

    from stages.explain.store import AnnDataFile

    obs = pd.DataFrame({"label": pd.Categorical(["a", "b", "a"])}, index=pd.Index(["s0", "s1", "s2"], name="sample"))
    var = pd.DataFrame(index=pd.Index(["g0", "g1"], name="gene"))
    f = AnnDataFile(tmp_path / "x.h5ad", obs, var)
    x, layer = f.dense("X", np.float32), f.dense("layers/saliency", np.float16)
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    for s in (0, 2):
        x.write(values[s : s + 2])
        layer.write(-values[s : s + 2])
    assert not (tmp_path / "x.h5ad").exists()
    f.finish({"varm": {"saliency_class_means": np.ones((2, 2), np.float32)}, "uns": {"classes": ["a", "b"]}})
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    np.testing.assert_array_equal(back.X, values)
    assert back.layers["saliency"].dtype == np.float16 and np.array_equal(back.layers["saliency"], -values)
    assert list(back.obs_names) == ["s0", "s1", "s2"] and list(back.var_names) == ["g0", "g1"]
    assert back.varm["saliency_class_means"].shape == (2, 2) and list(back.uns["classes"]) == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5ad"]


class _ReusedReLU(nn.Module):
    """A residual block calling one ReLU module twice, as torchvision's ResNet blocks do."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.relu, self.head = nn.Linear(6, 6), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x):
        out = self.relu(self.fc1(x))
        return self.head(self.relu(self.fc2(out) + x))


def test_deeplift_adds_up_to_the_logit_difference_even_where_a_module_is_called_twice():
    """DeepLIFT's rescale rule through ReLU and linear layers: a sample's attributions sum to its logit minus the
    reference's. Captum refuses a ReLU module called twice in a forward pass; the method splits it into one copy per
    call (the function is unchanged) and the sums still hold, from zeros and from the training mean."""
    from captum.attr import DeepLift as CaptumDeepLift

    from stages.explain.attributions import one_module_per_call

    torch.manual_seed(0)
    model = Ensemble([nn.Sequential(Standardize([0.5] * 6, [0.2] * 6, spatial_dims=0), _ReusedReLU())]).eval()
    x, target = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    with pytest.raises(RuntimeError, match="used more than once"):
        CaptumDeepLift(model).attribute(x.clone().requires_grad_(True), target=target)
    split = one_module_per_call(model, x)
    with torch.no_grad():
        torch.testing.assert_close(split(x), model(x))
    cls = METHODS["deeplift"]
    for baseline, value in (("zeros", 0.0), ("mean", 0.5)):
        attr = cls(model, cls.Options(baseline=baseline)).attribute(x.clone().requires_grad_(True), target).detach()
        with torch.no_grad():
            gap = (model(x) - model(torch.full_like(x, value))).gather(1, target[:, None])[:, 0]
        torch.testing.assert_close(attr.sum(1), gap, rtol=1e-4, atol=1e-5)


def test_deeplift_runs_on_resnet18_and_declines_efficientnet():
    from shared.models import build_model

    spec = {"arch": "resnet18", "input_shape": [3, 16, 16], "n_classes": 3}
    model = Ensemble([build_model(spec, [0.5] * 3, [0.2] * 3).eval()]).eval()
    x = torch.rand(2, 3, 16, 16)
    attr = METHODS["deeplift"](model).attribute(x.clone().requires_grad_(True), torch.tensor([0, 2]))
    assert attr.shape == x.shape and torch.isfinite(attr).all() and attr.abs().sum() > 0
    assert METHODS["deeplift"].not_applicable("image", "resnet18") is None
    assert "efficientnet_b0 has nonlinearities" in METHODS["deeplift"].not_applicable("image", "efficientnet_b0")
    assert "applies to vector and image" in METHODS["deeplift"].not_applicable("volume", None)


def test_gradient_shap_is_the_gradient_times_the_distance_to_the_training_background():
    """On a linear model the gradient is W[target] everywhere, so GradientSHAP (expected gradients) is
    W[target] * (x - the mean of the background rows drawn): exact when every background row is the same, and its sum
    tends to the logit minus the background's mean logit as draws grow."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3).eval()
    x, target = torch.rand(4, 6), torch.tensor([0, 1, 2, 1])
    cls = METHODS["gradient_shap"]
    one = torch.full((8, 6), 0.3)
    attr = cls(model, cls.Options(samples=5), one).attribute(x.clone().requires_grad_(True), target).detach()
    torch.testing.assert_close(attr, model.weight.detach()[target] * (x - 0.3), rtol=1e-5, atol=1e-6)
    background = torch.rand(64, 6)
    attr = cls(model, cls.Options(samples=2000), background).attribute(x.clone().requires_grad_(True), target).detach()
    with torch.no_grad():
        gap = model(x).gather(1, target[:, None])[:, 0] - model(background)[:, target].mean(0)
    torch.testing.assert_close(attr.sum(1), gap, rtol=0.05, atol=0.03)
    with pytest.raises(ValueError, match="needs its training background"):
        cls(model).attribute(x, target)


def test_every_method_is_declared_once_and_the_config_follows_the_declarations():
    """The config's choices, its option sections and the options each method reads come from METHODS; every method
    has a description (its docstring) and says whether it is signed."""
    from typing import get_args

    from stages.explain.methods import option_sections, owners

    assert list(get_args(Explain.model_fields["methods"].annotation.__args__[0])) == list(METHODS)
    assert {"deeplift", "gradient_shap"} <= set(METHODS)
    for key, section in option_sections().items():
        assert Explain.model_fields[key].annotation is section and owners(key)
    assert owners("grad_cam") == ["grad_cam", "guided_grad_cam"]
    settings = Explain(methods=["guided_grad_cam", "deeplift"], grad_cam={"layer": "layer3"})
    assert settings.options("guided_grad_cam").layer == "layer3" and settings.options("saliency") is None
    for cls in METHODS.values():
        assert len(cls.description) > 80 and isinstance(cls.signed, bool), cls.name
