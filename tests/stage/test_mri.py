"""train_3d_mri: the releases' layouts and ids, what is left out and why, bad volumes, the model grid and back,
freezing and checkpointing, and the stage end to end with explain's volume checks (the tumour-mask localisation, the
maps in each patient's space) and the report (one process, and training under torchrun)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fixtures.mri import write_mri
from shared.errors import UserError
from stages.train_3d_mri.cohort import find_cohort, idh_label
from stages.train_3d_mri.params import Mri

from ..support import REPO, run_stages


@pytest.fixture(scope="module")
def ucsf(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri") / "ucsf"
    table = write_mri(root, layout="ucsf-pdgm", n_patients=40, mutant_fraction=0.4, seed=5)
    return root, table


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri") / "brats"
    table = write_mri(root, layout="brats", n_patients=8, seed=6)
    return root, table


def _mri(root, table, **kw) -> Mri:
    layout = "brats" if any(p.name.startswith("BraTS") for p in root.iterdir()) else "ucsf-pdgm"
    return Mri(root=str(root), layout=kw.pop("layout", layout), metadata=str(table), **kw)


def _copy(root, table, tmp_path):
    dest = tmp_path / root.name
    shutil.copytree(root, dest)
    return dest, dest / table.name


# -- the cohort as released ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, label",
    [
        ("wildtype", "wildtype"),
        ("Wild-type", "wildtype"),
        ("IDH-wildtype", "wildtype"),
        ("mutant (NOS)", "mutant"),
        ("mutated (NOS)", "mutant"),
        ("IDH1 p.R132H", "mutant"),
        ("IDH1 p.R132C", "mutant"),
        ("IDH2 p.R172K", "mutant"),
        ("mutated", "mutant"),
        ("", None),
        ("unknown", None),
        (float("nan"), None),
        ("NA", None),
    ],
)
def test_idh_values_as_the_releases_spell_them(value, label):
    assert idh_label(value) == label


def test_an_idh_value_that_is_neither_is_an_error_naming_the_file(ucsf, tmp_path):
    root, table = _copy(*ucsf, tmp_path)
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    frame.loc[5, "IDH"] = "codeleted"
    frame.to_csv(table, index=False)
    with pytest.raises(UserError, match=r"UCSF-PDGM-metadata_v2.csv: IDH 'codeleted' of UCSF-PDGM-\d{3} is neither"):
        find_cohort(_mri(root, table))


def test_ucsf_pdgm_three_digit_ids_match_four_digit_folders_and_the_left_out_are_counted(ucsf):
    root, table = ucsf
    meta = pd.read_csv(table, dtype=str)
    assert meta["ID"].str.fullmatch(r"UCSF-PDGM-\d{3}").all()  # the release's 3-digit ids ...
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert all(len(f.split("_")[0].rsplit("-", 1)[1]) == 4 for f in folders)  # ... and 4-digit folders
    patients = find_cohort(_mri(root, table))
    status = {p.id: p.status for p in patients}
    included = [p for p in patients if p.status == "included"]
    assert len(included) == 38  # 40 folders, one without T1c, one without an IDH value
    assert status[folders[1].removesuffix("_nifti")] == "missing T1c"
    assert status[folders[2].removesuffix("_nifti")] == "no IDH value"
    assert sum(s == "no images" for s in status.values()) == 1  # the metadata row without a folder
    # labels come from the table, matched by number: the release's mutant spellings all read as mutant
    by_number = {int(r.ID.rsplit("-", 1)[1]): r.IDH for r in meta.itertuples()}
    for p in included:
        assert p.label == idh_label(by_number[int(p.id.rsplit("-", 1)[1])])
        assert set(p.files) == {"FLAIR", "T1", "T1c", "T2"} and p.mask is not None
    assert {p.label for p in included} == {"wildtype", "mutant"}


def test_the_bias_corrected_suffix_reads_other_files(ucsf, tmp_path):
    root, table = _copy(*ucsf, tmp_path)
    folder = next(p for p in sorted(root.iterdir()) if p.is_dir())
    for f in folder.glob("*_T1.nii.gz"):
        f.rename(f.with_name(f.name.replace("_T1.nii.gz", "_T1_bias.nii.gz")))
    patients = {p.id: p for p in find_cohort(_mri(root, table))}
    pid = folder.name.removesuffix("_nifti")
    assert patients[pid].status == "missing T1"  # the plain T1 is gone
    bias = {p.id: p for p in find_cohort(_mri(root, table, suffix="_bias"))}
    assert bias[pid].status == "missing FLAIR, T1c, T2"  # only T1 has a _bias file here


def test_brats_layout_labelled_through_ucsf_pdgms_brats21_id(brats):
    root, table = brats
    assert table.name == "UCSF-PDGM-metadata_v5.csv"
    rsna = pd.read_csv(root / "train_labels.csv", dtype=str)
    assert list(rsna) == ["BraTS21ID", "MGMT_value"] and rsna["BraTS21ID"].str.fullmatch(r"\d{5}").all()
    patients = find_cohort(_mri(root, table, layout="brats"))
    included = [p for p in patients if p.status == "included"]
    assert len(included) == 4 and all(p.id.startswith("BraTS2021_") for p in included)  # 8 - 2 other - 2 defects
    assert all(p.patient.startswith("UCSF-PDGM-") for p in included)
    assert all(p.files["T1c"].name.endswith("_t1ce.nii.gz") and p.mask.name.endswith("_seg.nii.gz") for p in included)


def test_a_missing_column_names_the_key(ucsf):
    with pytest.raises(UserError, match="no column 'IDH_status' \\(set mri.label_column"):
        find_cohort(_mri(*ucsf, label_column="IDH_status"))


# -- bad volumes -----------------------------------------------------------------------------------------------


def _break(folder, kind):
    flair = next(folder.glob("*_T2.nii.gz"))
    img = nib.load(flair)
    data = np.asarray(img.dataobj).astype(np.float32)
    if kind == "nan":
        data[3, 3, 3] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), flair)
    elif kind == "shape":
        nib.save(nib.Nifti1Image(data[:-2], img.affine), flair)
    elif kind == "affine":
        affine = img.affine.copy()
        affine[0, 3] += 5
        nib.save(nib.Nifti1Image(data, affine), flair)
    else:
        flair.write_bytes(flair.read_bytes()[:200])
    return flair


@pytest.mark.parametrize(
    "kind, message",
    [
        ("nan", "NaN or infinite voxels"),
        ("shape", "shape .* differs from"),
        ("affine", "its affine .* differs"),
        ("truncated", "unreadable NIfTI"),
    ],
)
def test_a_bad_volume_is_a_one_line_error_naming_the_file_or_skipped_and_counted(ucsf, tmp_path, kind, message):
    from stages.train_3d_mri.volumes import prepare

    root, table = _copy(*ucsf, tmp_path)
    folder = sorted(p for p in root.iterdir() if p.is_dir())[0]
    bad = _break(folder, kind)
    patients = find_cohort(_mri(root, table))
    with pytest.raises(UserError, match=f"{bad}: (1 )?{message}") as err:
        prepare(patients, [16, 16, 16], None, tmp_path / "scratch", "error")
    assert str(err.value).endswith("(fix or remove the file, or set mri.on_bad_volume: skip)")
    patients = find_cohort(_mri(root, table))
    data = prepare(patients, [16, 16, 16], None, tmp_path / "scratch2", "skip")
    assert len(data.patients) == 37 and data.x.shape[0] == 37
    assert folder.name.removesuffix("_nifti") not in [p.id for p in data.patients]
    assert [p.status for p in patients if p.folder == folder][0].startswith("bad volume: ")


# -- the model's grid and back ---------------------------------------------------------------------------------


def test_volumes_are_reoriented_robustly_normalised_in_the_brain_and_maps_return_to_the_patients_space(ucsf, tmp_path):
    from shared.nifti import to_native
    from stages.train_3d_mri.volumes import prepare

    patients = [p for p in find_cohort(_mri(*ucsf)) if p.status == "included"][:3]
    zscored = prepare(patients, [32, 32, 32], None, tmp_path / "z", "error")
    for i in range(3):
        inside = zscored.x[i][:, zscored.brain[i]].astype(np.float64)
        assert np.allclose(inside.mean(axis=1), 0, atol=0.02) and np.allclose(inside.std(axis=1), 1, atol=0.02)
    data = prepare(patients, [32, 32, 32], None, tmp_path / "r", "error", "robust")
    assert data.x.shape == (3, 4, 32, 32, 32) and data.x.dtype == np.float16
    for i in range(3):
        inside = data.x[i][:, data.brain[i]].astype(np.float64)
        q1, median, q3 = np.percentile(inside, [25, 50, 75], axis=1)
        assert np.allclose(median, 0, atol=0.02) and np.allclose((q3 - q1) / 1.349, 1, atol=0.02)
        assert nib.aff2axcodes(data.affines[i]) == ("R", "A", "S")  # stored L, P, S: reoriented
        # the tumour mask in the model's grid, sent back through the recorded grids, lands on the patient's own mask
        ref = nib.load(patients[i].files["FLAIR"])
        assert tuple(data.native_shapes[i]) == ref.shape and np.allclose(data.native_affines[i], ref.affine)
        native = to_native(
            (data.tumour[i] > 0).astype(np.float32),
            data.affines[i],
            data.native_shapes[i],
            data.native_affines[i],
            signed=False,
        )
        assert native.shape == ref.shape and np.allclose(native.affine, ref.affine)
        # the labels survive the model grid (nearest resampling): the fixture's necrotic, oedema, enhancing labels
        assert set(np.unique(data.tumour[i])) - {0} <= set(np.unique(np.asarray(nib.load(patients[i].mask).dataobj)))
        mask = np.asarray(nib.load(patients[i].mask).dataobj) > 0
        back = native.get_fdata() > 0.5
        dice = 2 * (back & mask).sum() / (back.sum() + mask.sum())
        assert dice > 0.7, dice


def test_robust_normalisation_keeps_normal_tissue_where_a_large_tumour_would_move_a_z_score():
    from stages.train_3d_mri.volumes import robust_normalise

    rng = np.random.default_rng(0)
    brain = np.ones((1, 20, 20, 20), bool)[0]
    normal = rng.normal(1.0, 0.1, (1, 20, 20, 20)).astype(np.float32)
    with_tumour = normal.copy()
    with_tumour[0, :8] = 3.0  # 40% of the brain bright
    tissue = np.zeros_like(brain)
    tissue[8:] = True
    shift_robust = abs(
        robust_normalise(with_tumour, brain)[0][tissue].mean() - robust_normalise(normal, brain)[0][tissue].mean()
    )
    z = [(v[0] - v[0][brain].mean()) / v[0][brain].std() for v in (with_tumour, normal)]
    shift_z = abs(z[0][tissue].mean() - z[1][tissue].mean())
    assert shift_robust < 0.2 * shift_z, (shift_robust, shift_z)


# -- the network -----------------------------------------------------------------------------------------------


def test_freezing_leaves_the_last_blocks_and_head_trainable_and_keeps_pretrained_statistics(tmp_path):
    from shared.models3d import EfficientNet3d, load_pretrained, trainable_parameters

    full = EfficientNet3d("efficientnet-b0")
    frozen = EfficientNet3d("efficientnet-b0")
    frozen.freeze(2, keep_statistics=True)
    frozen_count = sum(p.numel() for m in (frozen._conv_stem, frozen._bn0, *frozen._blocks[:5]) for p in m.parameters())
    assert trainable_parameters(frozen) == trainable_parameters(full) - frozen_count > 0
    trainable = {
        n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("_blocks") else "")
        for n, p in frozen.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"_blocks.5", "_blocks.6", "_conv_head", "_bn1", "_fc"}
    frozen.train()
    assert not frozen._bn0.training and not frozen._blocks[0].training and frozen._blocks[6].training
    # a training step changes no frozen tensor (weights or BatchNorm statistics)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    opt = torch.optim.AdamW([p for p in frozen.parameters() if p.requires_grad], lr=0.01)
    frozen(torch.randn(2, 4, 32, 32, 32)).sum().backward()
    opt.step()
    after = frozen.state_dict()
    changed = {
        k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("_blocks") else "")
        for k in before
        if not torch.equal(before[k], after[k])
    }
    assert changed and changed <= {"_blocks.5", "_blocks.6", "_conv_head", "_bn1", "_fc"}
    # local pretrained weights: matching tensors load, others keep their initialisation and are reported
    state = {k: v for k, v in full.state_dict().items()}
    state["_fc.weight"] = torch.zeros(1000, 1280)
    torch.save(state, tmp_path / "w.pt")
    report = load_pretrained(frozen, str(tmp_path / "w.pt"))
    assert "_fc.weight" in report["skipped"] and report["loaded"] == len(state) - 1
    assert torch.equal(frozen._blocks[0][0]._depthwise_conv.weight, full._blocks[0][0]._depthwise_conv.weight)
    (tmp_path / "bad.pt").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="bad.pt: not a readable torch state_dict"):
        load_pretrained(frozen, str(tmp_path / "bad.pt"))


def test_gradient_checkpointing_gives_the_same_gradients():
    from shared.models3d import EfficientNet3d

    torch.manual_seed(0)
    a = EfficientNet3d("efficientnet-b0")
    a.freeze(3, keep_statistics=False)
    b = EfficientNet3d("efficientnet-b0")
    b.load_state_dict(a.state_dict())
    b.freeze(3, keep_statistics=False)
    b.checkpointing = True
    x = torch.randn(2, 4, 32, 32, 32)
    for net in (a, b):
        net.train()
        torch.manual_seed(1)  # the same drop-connect draws in both
        net(x).pow(2).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=False):
        if pa.requires_grad:
            assert torch.allclose(pa.grad, pb.grad, rtol=1e-4, atol=1e-6), name


def test_edge_shares_find_a_map_on_the_background_and_the_border():
    from shared.evaluation.localisation import edge_shares, summarise_edges

    brain = np.zeros((16, 16, 16), bool)
    brain[4:12, 4:12, 4:12] = True
    even = edge_shares(np.ones(brain.shape), brain)
    assert even["outside_brain"] == pytest.approx(even["outside_brain_chance"]) == pytest.approx(1 - 512 / 4096)
    assert even["border"] == pytest.approx(even["border_chance"]) == pytest.approx(1 - 12**3 / 16**3)
    rng = np.random.default_rng(0)
    on_brain = [edge_shares(rng.random(brain.shape) * brain, brain) for _ in range(8)]
    assert summarise_edges(on_brain)["flags"] == []
    edge = np.zeros(brain.shape)
    edge[0] = 1.0  # a map on the volume's first plane: background and border
    leaning = [edge_shares(edge + 0.1 * rng.random(brain.shape), brain) for _ in range(8)]
    result = summarise_edges(leaning)
    assert result["flags"] == ["outside_brain", "border"] and result["border"]["p_sign_test"] == pytest.approx(1 / 256)


def test_localisation_share_against_chance():
    from shared.evaluation.localisation import localisation

    brain = np.zeros((10, 10, 10), bool)
    brain[1:9, 1:9, 1:9] = True
    tumour = np.zeros_like(brain)
    tumour[2:4, 2:4, 2:4] = True
    cam = np.zeros((10, 10, 10))
    cam[2:4, 2:4, 2:4] = 3.0
    cam[6, 6, 6] = 8.0
    loc = localisation(cam, tumour, brain)
    assert loc["cam_in_mask"] == pytest.approx(24 / 32) and loc["chance"] == pytest.approx(8 / 512)
    assert loc["ratio"] == pytest.approx((24 / 32) / (8 / 512))
    assert np.isnan(localisation(np.zeros_like(cam), tumour, brain)["cam_in_mask"])


# -- the stage -------------------------------------------------------------------------------------------------


def _config(tmp_path, root, table, **train) -> tuple:
    cfg = {
        "name": "m",
        "seed": 0,
        "device": "cpu",
        "stages": ["train_3d_mri", "explain", "report"],
        "mri": {"root": str(root), "layout": "ucsf-pdgm", "metadata": str(table)},
        "train_3d_mri": {
            "size": [32, 32, 32],
            "epochs": 2,
            "batch_size": 8,
            "trainable_blocks": 2,
            "augment": {"elastic": 0.0},
            **train,
        },
        "explain": {
            "methods": ["grad_cam", "saliency"],
            "grad_cam": {"layer": "_blocks.2"},
            "batch_size": 8,
            "sanity": {"max_samples": 4},
            "biology": {"enabled": False},
        },
        "report": {},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**__import__("os").environ, "ONCOXAI_OUTPUTS": str(tmp_path / "out"), "ONCOXAI_PROGRESS": "0"}
    return path, env, tmp_path / "out" / "m"


@pytest.mark.slow
def test_the_stage_end_to_end_with_its_report(ucsf, tmp_path):
    from ..support import check_declared_outputs

    path, env, exp = _config(tmp_path, *ucsf)
    run_stages(path, env, "train_3d_mri", "explain", "report")
    out = exp / "train_3d_mri"
    check_declared_outputs(out, "train_3d_mri")
    cohort = pd.read_csv(out / "cohort.csv", dtype=str, keep_default_na=False)
    assert list(cohort)[:3] == ["exam", "patient", "follow_up_of"] and (cohort["exam"] == cohort["patient"]).all()
    assert (cohort["status"] == "included").sum() == 38 and set(cohort["status"]) >= {
        "missing T1c",
        "no IDH value",
        "no images",
    }
    test = cohort[cohort["split"] == "test"]
    assert len(test) == 6 and set(test["label"]) == {"wildtype", "mutant"}  # 15% of 38, stratified
    model = json.loads((out / "efficientnet-b0" / "model.json").read_text())
    assert model["trainable_blocks"] == 2 and model["trainable_parameters"] == 3591838  # the last 2 stages + head
    member = torch.load(out / "efficientnet-b0" / "member0.pt", weights_only=True)
    assert "_fc.weight" in member
    # the volume dataset: the exams' rows in samples.csv order, the masks as the fixture's labels, the grids
    assert model["input"]["kind"] == "volume" and model["input"]["array"] == "train_3d_mri/volumes.npy"
    samples = pd.read_csv(out / "samples.csv", dtype={"sample": str})
    volumes, masks = np.load(out / "volumes.npy", mmap_mode="r"), np.load(out / "masks.npy", mmap_mode="r")
    assert volumes.shape == (38, 4, 32, 32, 32) and volumes.dtype == np.float16 and masks.shape == (38, 2, 32, 32, 32)
    assert set(np.unique(masks[:, 1])) <= {0, 1, 2, 4} and (masks[:, 1][masks[:, 0] == 0] == 0).all()
    assert samples["tumour_mask"].all() and samples["sample"].is_unique and len(samples) == 38

    # explain: every test exam's maps scored against its tumour mask, and written back to its own scan's grid
    explained = exp / "explain" / "efficientnet-b0"
    for method in ("grad_cam", "saliency"):
        loc = pd.read_csv(explained / method / "localisation.csv", dtype={"sample": str, "target": str})
        assert sorted(loc["sample"]) == sorted(test["exam"]) and set(loc["target"]) == {"true"}
        # an empty map (Grad-CAM of a barely trained network can be all zero after its ReLU) has no share: NaN
        share = loc["cam_in_mask"].dropna()
        assert ((share >= 0) & (share <= 1)).all() and (method == "grad_cam" or len(share) == len(loc))
        assert np.allclose(loc["ratio"], loc["cam_in_mask"] / loc["chance"], equal_nan=True)
        for row in loc.itertuples():
            nifti = nib.load(explained / method / row.nifti)
            flair = nib.load(next((ucsf[0] / f"{row.sample}_nifti").glob("*_FLAIR.nii.gz")))
            assert nifti.shape == flair.shape and np.allclose(nifti.affine, flair.affine)
            if method == "grad_cam":  # unsigned: non-negative
                assert np.asarray(nifti.dataobj).min() >= 0
        assert (explained / method / "figures" / "overlays.png").is_file()
        # per sub-region: a row per exam and BraTS region it has; mutant tumours have no enhancing tumour
        regions = pd.read_csv(explained / method / "subregions.csv", dtype={"sample": str})
        assert set(regions["sample"]) == set(test["exam"]) and set(regions["region"]) <= {"NCR/NET", "ED", "ET"}
        assert not ((regions["class"] == "mutant") & (regions["region"] == "ET")).any()
        wildtype = regions[regions["class"] == "wildtype"]
        assert set(wildtype.loc[wildtype["region"] == "ET", "sample"]) == set(wildtype["sample"])
        assert np.allclose(regions["ratio"], regions["energy_share"] / regions["volume_share"], equal_nan=True)
    check_declared_outputs(exp / "explain", "explain")
    metrics = json.loads((exp / "explain" / "metrics.json").read_text())
    entry = metrics["models"]["efficientnet-b0"]["methods"]["grad_cam"]
    loc = pd.read_csv(explained / "grad_cam" / "localisation.csv").dropna(subset=["cam_in_mask"])
    assert entry["layer"] == "_blocks.2" and entry["localisation"]["true"]["n"] == len(loc)
    assert entry["localisation"]["true"]["chance_mean"] == pytest.approx(loc["chance"].mean())
    assert entry["localisation"]["true"]["above_chance"] == int((loc["cam_in_mask"] > loc["chance"]).sum())
    assert {"faithfulness", "sanity"} <= set(entry)
    summary = json.loads((exp / "report" / "summary.json").read_text())
    assert summary["models"]["efficientnet-b0"]["kind"] == "deep"
    assert summary["explanations"]["efficientnet-b0/grad_cam"]["localisation"] == entry["localisation"]
    # the sub-region table: metrics.json's counts are the CSV's exams with a share, summary.json keeps it (no time)
    sub = metrics["models"]["efficientnet-b0"]["methods"]["saliency"]["subregions"]
    regions = pd.read_csv(explained / "saliency" / "subregions.csv").dropna(subset=["energy_share"])
    counts = regions.groupby(["class", "region"]).size()
    assert {(c, r): v["n"] for c, per in sub["per_class"].items() for r, v in per.items()} == counts.to_dict()
    above = (regions["energy_share"] > regions["volume_share"]).groupby([regions["class"], regions["region"]]).sum()
    assert {(c, r): v["above_chance"] for c, per in sub["per_class"].items() for r, v in per.items()} == above.to_dict()
    assert summary["explanations"]["efficientnet-b0/saliency"]["subregions"] == {
        k: v for k, v in sub.items() if k != "seconds"
    }
    # the shortcut audit's edge checks: each method's share outside the brain and at the border, per exam in
    # localisation.csv, summarised with a sign test in the model's shortcuts entry and summary.json
    shortcuts = metrics["models"]["efficientnet-b0"]["shortcuts"]
    for method in ("grad_cam", "saliency"):
        loc = pd.read_csv(explained / method / "localisation.csv").dropna(subset=["outside_brain"])
        edge = shortcuts["volume"][method]["outside_brain"]
        assert edge["n"] == len(loc) and edge["above_chance"] == int(
            (loc["outside_brain"] > loc["outside_brain_chance"]).sum()
        )
        assert ((loc["border"] >= 0) & (loc["border"] <= 1)).all() and (loc["border_chance"] > 0).all()
    assert shortcuts["flagged"] == [f"{m}: {f}" for m, e in shortcuts["volume"].items() for f in e["flags"]]
    assert summary["shortcuts"]["efficientnet-b0"] == shortcuts
    html = (exp / "report" / "index.html").read_text()
    assert "Shortcut audit" in html and "outside brain (chance)" in html
    assert "38 included" in html and "1 missing T1c" in html and "inside the tumour mask" in html
    assert "The map per tumour sub-region" in html and "enhancing tumour" in html and "no .h5ad" in html


def test_the_explained_grad_cam_of_a_volume_is_the_fold_models_mean_map_scored_against_the_mask(tmp_path):
    """explain's volume checks on a tiny 3-D network: the localisation of each exam is the share of its map's
    energy inside the tumour, and its sub-region table the share in each BraTS label it has, computed by hand
    here."""
    from stages.explain.volumes import VolumeChecks, volume_map

    attr = np.zeros((2, 2, 4, 4, 4), np.float32)
    attr[0, :, 0, 0, 0] = [1.0, 3.0]  # 4 of energy in the tumour voxel
    attr[0, 0, 3, 3, 3] = -4.0  # 4 outside it (absolute values count)
    attr[1, 1, 2, 2, 2] = 2.0  # all of it outside
    masks = np.zeros((2, 2, 4, 4, 4), np.uint8)
    masks[:, 0] = 1
    masks[:, 1, 0, 0, 0] = 2  # one oedema voxel each
    masks[0, 1, 1, 1, 1] = 4  # and exam a an enhancing one, without energy

    class Data:  # what VolumeChecks reads of ModelInputs
        samples = pd.DataFrame({"sample": ["a", "b"]})
        labels = np.array([0, 1])
        proba = np.array([[0.9, 0.1], [0.2, 0.8]])
        has_mask = np.array([True, True])
        grids = None
        channels = ["FLAIR", "T1"]

        def __init__(self):
            self.masks, self.array = masks, attr

    checks = VolumeChecks(Data(), ["wt", "mut"], signed=True, folder=tmp_path, nifti=False)
    checks.add(attr, np.arange(2))
    summary = checks.finish()
    table = pd.read_csv(tmp_path / "localisation.csv")
    assert table["cam_in_mask"].tolist() == pytest.approx([0.5, 0.0])
    assert table["chance"].tolist() == pytest.approx([2 / 64, 1 / 64])
    assert summary["localisation"]["true"]["above_chance"] == 1 and summary["localisation"]["true"]["n"] == 2
    # per sub-region: exam a's oedema and enhancing voxel, exam b's oedema (it has no enhancing tumour: no row)
    regions = pd.read_csv(tmp_path / "subregions.csv", keep_default_na=False, na_values=[""])
    assert regions[["sample", "class", "region"]].values.tolist() == [
        ["a", "wt", "ED"],
        ["a", "wt", "ET"],
        ["b", "mut", "ED"],
    ]
    assert regions["energy_share"].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert regions["volume_share"].tolist() == pytest.approx([1 / 64] * 3)
    sub = summary["subregions"]
    assert sub["target"] == "true" and sub["regions"]["ET"] == {"labels": [3, 4], "description": "enhancing tumour"}
    assert set(sub["per_class"]) == {"wt", "mut"} and set(sub["per_class"]["mut"]) == {"ED"}
    assert sub["per_class"]["wt"]["ED"] == pytest.approx(
        {
            "n": 1,
            "energy_share_mean": 0.5,
            "volume_share_mean": 1 / 64,
            "ratio_mean": 32.0,
            "above_chance": 1,
            "p_sign_test": 1.0,
        }
    )
    assert sub["per_class"]["wt"]["ET"]["above_chance"] == 0 and sub["seconds"] >= 0
    assert volume_map(attr, signed=True)[0, 0, 0, 0] == 4.0 and volume_map(attr, signed=False)[0, 0, 0, 0] == 2.0


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun(ucsf, tmp_path):
    path, env, exp = _config(tmp_path, *ucsf, epochs=1)
    env = {**env, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "stages.train_3d_mri",
        "--config",
        str(path),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((exp / "train_3d_mri" / "manifest.json").read_text())
    assert "2 processes" in manifest["device"]
    history = pd.read_csv(exp / "train_3d_mri" / "efficientnet-b0" / "history.csv")
    assert len(history) == 1 and np.isfinite(history["train_loss"]).all()


def test_the_memory_benchmark_measures_one_step_of_each_variant(tmp_path):
    from bench.mri import main

    out = tmp_path / "mri.json"
    assert main(["--size", "32", "--batch", "2", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    frozen, full = result["frozen"], result["full"]
    assert frozen["trainable_params"] < full["trainable_params"] == full["total_params"]
    assert frozen["peak_step_memory_bytes"] > 0 and full["peak_step_memory_bytes"] > 0
    assert (
        result["peak_memory_ratio_frozen_vs_full"] == frozen["peak_step_memory_bytes"] / full["peak_step_memory_bytes"]
    )
    assert result["trainable_params_ratio_frozen_vs_full"] == pytest.approx(3591838 / 4693534)
