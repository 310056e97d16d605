"""train_3d_mri's cohort on tiny volumes in the published layouts: UCSF-PDGM's follow-up exams (read, keyed by patient
and suffix, optionally left out and counted), splits that keep a patient's exams together, BraTS 2021 labelled
through UCSF-PDGM's ``BraTS21 ID``, and labels that are not IDH (MGMT's 0/1 or positive/negative) refused in one
line unless mapped explicitly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fixtures.mri import write_mri
from shared.errors import UserError
from shared.evaluation.splits import Protocol
from stages.train_3d_mri.cohort import (
    CLASSES,
    FOLLOW_UP,
    NO_BRATS_ID,
    Patient,
    cohort_table,
    find_cohort,
    idh_label,
    split_patients,
)
from stages.train_3d_mri.params import Mri

TINY = (10, 10, 10)


@pytest.fixture(scope="module")
def ucsf(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri") / "ucsf"
    return root, write_mri(
        root, n_patients=12, mutant_fraction=0.5, follow_ups=3, shape=TINY, seed=7, release_files=True
    )


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri") / "brats"
    return root, write_mri(root, layout="brats", n_patients=16, mutant_fraction=0.5, follow_ups=1, shape=TINY, seed=8)


def _table(patients, root) -> pd.DataFrame:
    return cohort_table(patients, root).set_index("exam")


def test_ucsf_pdgm_follow_ups_are_read_as_exams_of_their_baselines_patient(ucsf):
    root, table = ucsf
    assert table.name == "UCSF-PDGM-metadata_v5.csv"
    meta = pd.read_csv(table, dtype=str, keep_default_na=False)
    follow_ids = [i for i in meta["ID"] if "_FU" in i]
    assert len(follow_ids) == 3 and all(len(i.split("_")[0].rsplit("-", 1)[1]) == 4 for i in follow_ids)
    folder = root / f"{follow_ids[0]}_nifti"
    assert (folder / f"{follow_ids[0]}_FLAIR.nii.gz").is_file()  # the suffix is part of every file name

    cohort = _table(find_cohort(Mri(root=str(root), layout="ucsf-pdgm", metadata=str(table), exams="all")), root)
    for exam in follow_ids:
        baseline = exam.split("_")[0]
        assert cohort.loc[exam, "status"] == "included"
        assert cohort.loc[exam, "patient"] == cohort.loc[baseline, "patient"] == baseline
        assert cohort.loc[exam, "follow_up_of"] == baseline and cohort.loc[baseline, "follow_up_of"] == ""
        assert cohort.loc[exam, "label"] == cohort.loc[baseline, "label"]
    assert (cohort["status"] == "included").sum() == 13  # 12 baselines + 3 follow-ups - T1c, IDH missing
    assert set(cohort["status"]) == {"included", "missing T1c", "no IDH value", "no images"}


def test_baselines_only_leaves_the_follow_ups_out_and_counts_them(ucsf):
    root, table = ucsf
    cohort = _table(find_cohort(Mri(root=str(root), layout="ucsf-pdgm", metadata=str(table))), root)  # the default
    left = cohort[cohort["status"] == FOLLOW_UP]
    assert len(left) == 3 and (left["follow_up_of"] != "").all() and (left.index.str.contains("_FU")).all()
    assert (cohort["status"] == "included").sum() == 10
    assert cohort["status"].value_counts()[FOLLOW_UP] == 3


def _exams(n_patients: int, with_follow_up: int, seed: int = 0) -> list[Patient]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_patients):
        label = CLASSES[int(i % 3 == 0)]
        pid = f"UCSF-PDGM-{i:04d}"
        out.append(Patient(id=pid, folder=None, label=label, patient=pid))
        if i < with_follow_up:
            fu = f"{pid}_FU{int(rng.integers(1, 200)):03d}d"
            out.append(Patient(id=fu, folder=None, label=label, patient=pid, follow_up_of=pid))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_patient_sits_on_both_sides_of_the_held_out_split_or_any_fold(seed):
    exams = _exams(60, with_follow_up=30, seed=seed)
    samples = split_patients(exams, 0.2, seed)
    assert (samples["group"] == [p.patient for p in exams]).all()
    sides = samples.groupby("group")["split"].nunique()
    assert (sides == 1).all(), sides[sides > 1]
    assert set(samples["split"]) == {"train", "test"} and set(samples.loc[samples.split == "test", "label"]) == set(
        CLASSES
    )
    for folds in (1, 4):
        proto = Protocol(samples, list(CLASSES), folds, 2, seed, validation_fraction=0.2)
        assert proto.groups is not None
        for _, _, tr, va in proto.splits:
            train_groups = set(proto.groups[proto.train_rows[tr]])
            assert not train_groups & set(proto.groups[proto.train_rows[va]])
            assert not train_groups & set(proto.groups[proto.test_rows])


def test_one_exam_per_patient_keeps_the_plain_stratified_split():
    exams = _exams(40, with_follow_up=0)
    samples = split_patients(exams, 0.15, 0)
    assert "group" not in samples and (samples["split"] == "test").sum() == 6  # ceil(0.15 * 40), as before


def test_brats_cases_get_idh_through_ucsf_pdgms_brats21_id_and_keep_a_patients_cases_together(brats):
    root, table = brats
    meta = pd.read_csv(table, dtype=str, keep_default_na=False)
    assert meta["BraTS21 ID"].str.fullmatch(r"(BraTS2021_\d{5})?").all() and (meta["BraTS21 ID"] == "").sum() == 2
    assert list(pd.read_csv(root / "train_labels.csv", dtype=str)) == ["BraTS21ID", "MGMT_value"]
    mri = Mri(root=str(root), layout="brats", metadata=str(table), exams="all")
    assert mri.id_column == "auto"  # finds UCSF-PDGM's "BraTS21 ID" when there is no "BraTS21ID"
    patients = find_cohort(mri)
    cohort = _table(patients, root)
    assert cohort["status"].value_counts().to_dict() == {
        "included": 12,  # 16 cases - 2 from other collections - one without T1c - one without IDH
        "no metadata row": 2,
        NO_BRATS_ID: 2,  # the UCSF rows with an empty BraTS21 ID: left out and counted, not an error
        "missing T1c": 1,
        "no IDH value": 1,
        "no images": 1,
    }
    follow = cohort[cohort["follow_up_of"] != ""]
    assert len(follow) == 1
    baseline = follow["follow_up_of"].iloc[0]
    assert baseline.startswith("BraTS2021_") and cohort.loc[baseline, "patient"] == follow["patient"].iloc[0]
    assert follow["patient"].iloc[0].startswith("UCSF-PDGM-")
    by_case = dict(zip(meta["BraTS21 ID"], meta["IDH"], strict=True))
    for exam, row in cohort[cohort["status"] == "included"].iterrows():
        assert row["idh_value"] == by_case[exam]
    included = [p for p in patients if p.status == "included"]
    samples = split_patients(included, 0.25, 0)
    assert samples.groupby("group")["split"].nunique().max() == 1 and samples["group"].nunique() == 11
    baselines = _table(find_cohort(Mri(root=str(root), layout="brats", metadata=str(table))), root)
    assert baselines.loc[follow.index[0], "status"] == FOLLOW_UP


@pytest.mark.parametrize(
    "value, label",
    [
        ("wildtype", "wildtype"),
        ("IDH-wildtype", "wildtype"),
        ("mutated (NOS)", "mutant"),
        ("IDH1 p.R132G", "mutant"),
        ("IDH1 p.Arg132His", "mutant"),
        ("IDH2 p.R172K", "mutant"),
        ("", None),
    ],
)
def test_ucsf_pdgm_v5_idh_spellings(value, label):
    assert idh_label(value) == label


@pytest.mark.parametrize("value", ["0", "1", "positive", "negative", "true", "no", "methylated", "co-deletion"])
def test_values_that_are_not_idh_are_refused(value):
    with pytest.raises(ValueError):
        idh_label(value)


def test_a_declared_mapping_reads_the_codes_it_names_and_nothing_else():
    mapping = {"0": "wildtype", "1": "mutant"}
    assert [idh_label(v, mapping) for v in ("0", " 1 ", "", "NA")] == ["wildtype", "mutant", None, None]
    with pytest.raises(ValueError):
        idh_label("wildtype", mapping)  # the declared codes replace the spellings


def test_pointing_the_label_column_at_mgmt_is_a_one_line_error_naming_file_column_and_value(brats):
    root, table = brats
    labels = root / "train_labels.csv"
    first = pd.read_csv(labels, dtype=str).iloc[0]
    mri = Mri(root=str(root), layout="brats", metadata=str(labels), label_column="MGMT_value")
    with pytest.raises(UserError) as err:
        find_cohort(mri)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"{labels}: MGMT_value '{first.MGMT_value}' of {first.BraTS21ID} is neither IDH wild-type nor mutant"
    )
    assert "mri.label_values" in message
    with pytest.raises(UserError, match=r"UCSF-PDGM-metadata_v5.csv: MGMT status '(positive|negative|unknown)' of"):
        find_cohort(Mri(root=str(root), layout="brats", metadata=str(table), label_column="MGMT status"))
    declared = find_cohort(mri.model_copy(update={"label_values": {"0": "wildtype", "1": "mutant"}}))
    assert sum(p.status == "included" for p in declared) == 15  # every case with its 4 sequences


def test_exam_ids_that_do_not_parse_and_exams_of_one_patient_that_disagree_are_one_line_errors(ucsf, tmp_path):
    root, table = ucsf
    meta = pd.read_csv(table, dtype=str, keep_default_na=False)
    bad = tmp_path / table.name
    meta.assign(ID=meta["ID"].where(meta.index != 4, "UCSF-PDGM-12a")).to_csv(bad, index=False)
    with pytest.raises(UserError, match=r"UCSF-PDGM-metadata_v5.csv: ID 'UCSF-PDGM-12a' is not an exam id"):
        find_cohort(Mri(root=str(root), layout="ucsf-pdgm", metadata=str(bad)))
    follow = meta.index[meta["ID"].str.contains("_FU")][0]
    flipped = "wildtype" if meta.loc[follow, "IDH"] != "wildtype" else "IDH1 p.R132H"
    meta.loc[follow, "IDH"] = flipped
    meta.to_csv(bad, index=False)
    with pytest.raises(UserError, match=r"two exams of patient UCSF-PDGM-\d{4} disagree; correct one row$"):
        find_cohort(Mri(root=str(root), layout="ucsf-pdgm", metadata=str(bad)))


@pytest.mark.parametrize("name, cohort", [("ucsf-pdgm", "ucsf"), ("brats2021", "brats")])
def test_the_shipped_configs_read_the_published_layouts(name, cohort, request):
    from shared import config

    from ..support import REPO

    root, table = request.getfixturevalue(cohort)
    exp = config.load(REPO / "configs" / f"{name}.yaml", check_files=False)
    settings = exp.section("mri").model_dump() | {"root": str(root), "metadata": str(table)}
    patients = find_cohort(Mri(**settings))
    if name == "ucsf-pdgm":  # the release's bias-corrected volumes, not the ones as acquired, ADC or DWI
        assert settings["suffix"] == "_bias"
        files = [f.name for p in patients if p.status == "included" for f in p.files.values()]
        assert files and all(
            f.endswith(("_FLAIR_bias.nii.gz", "_T1_bias.nii.gz", "_T1c_bias.nii.gz", "_T2_bias.nii.gz")) for f in files
        )
    counts = pd.Series([p.status for p in patients]).value_counts()
    assert counts["included"] == (10 if name == "ucsf-pdgm" else 11) and counts[FOLLOW_UP] == (
        3 if cohort == "ucsf" else 1
    )
