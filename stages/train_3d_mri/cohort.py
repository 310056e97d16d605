"""The cohort as released: which exams have all four sequences and an IDH value, which patient each exam belongs to,
and why the others are left out.

UCSF-PDGM (v5: 501 exams of 495 patients): ``<root>/UCSF-PDGM-0004_nifti/UCSF-PDGM-0004_{FLAIR,T1,T1c,T2}<suffix>
.nii.gz`` with ``UCSF-PDGM-0004_tumor_segmentation.nii.gz`` (and other maps the release ships beside them: DWI, ADC,
SWI, ASL, brain segmentations, ..., not read), labels in ``UCSF-PDGM-metadata_v*.csv`` whose ``ID`` has three digits
(``UCSF-PDGM-004``) where the folders have four. Since v3 six follow-up exams carry their baseline's number and a
suffix: ``UCSF-PDGM-0433_FU007d_nifti/UCSF-PDGM-0433_FU007d_FLAIR_bias.nii.gz`` (also 0391_FU016d, 0396_FU175d,
0409_FU001d, 0429_FU003d, 0431_FU001d), ``ID`` ``UCSF-PDGM-0433_FU007d``. Exams are keyed by (patient number,
follow-up suffix); every exam of a patient shares the patient's split group (``split_patients``).

BraTS 2021: ``<root>/BraTS2021_00000/BraTS2021_00000_{flair,t1,t1ce,t2,seg}.nii.gz``. It has no IDH table of its
own (the RSNA-MICCAI ``train_labels.csv`` is ``BraTS21ID,MGMT_value``: MGMT, not IDH). IDH for BraTS cases comes
from UCSF-PDGM's metadata, whose ``BraTS21 ID`` column (``BraTS2021_00097``; empty for the exams not in BraTS) names
the case: rows with an empty ``BraTS21 ID`` are left out and counted, and the row's ``ID`` gives the UCSF patient,
so that two BraTS cases of one patient (UCSF-PDGM-0429 is BraTS2021_00639 and its follow-up BraTS2021_00557; 0433
is 00626 and 00758) share a split group. Any other table keyed by ``BraTS21ID`` (``0``, ``00000`` or
``BraTS2021_00000``) works too, each case then being its own patient. One release (one root, one table) per run.

Nothing is guessed: an exam missing a sequence, an IDH value, a metadata row or its images is left out, and counted
with its reason; a label that is not an IDH status is an error unless ``mri.label_values`` declares its mapping.

Sources confirmed (public, read through a code index; the releases themselves were not downloaded here):

- github.com/MedARC-AI/brainmarks-smri ``scripts/ucsf_pdgm/build_tables.py`` (v5 exam ids ``UCSF-PDGM-(\\d+)
  (_FU\\d+d)?``, 501 exams / 495 patients, metadata columns ``ID``, ``IDH``, ``MGMT status``, ``1p/19q``, ``WHO CNS
  Grade``, ``BraTS21 ID``, ``BraTS21 Segmentation Cohort``, ``BraTS21 MGMT Cohort``), ``scripts/ucsf_pdgm/tables/
  images.tsv`` (the follow-up folders and file names: ``UCSF-PDGM-0429_FU003d_nifti/UCSF-PDGM-0429_FU003d_T1_bias
  .nii.gz``, ``..._tumor_segmentation.nii.gz``), ``scripts/ucsf_pdgm/tables/samples.tsv`` (the metadata's values:
  IDH ``wildtype``, ``mutated (NOS)``, ``IDH1 p.R132H/C/G``, ``IDH1 p.Arg132His``, ``IDH2 p.R172K``; ``BraTS21 ID``
  as ``BraTS2021_00097`` or empty; follow-ups with their baseline's IDH; the pre-v3 numbers 138, 175, 181 absent
  from v5), ``scripts/ucsf_pdgm/README.md`` (298 exams in BraTS 2021; v3 renamed the follow-ups),
  ``scripts/brats2021/build_tables.py`` (BraTS case files ``<case>_{t1,t1ce,t2,flair,seg}.nii.gz``; the two UCSF
  patients with two BraTS cases).
- TorchIO ``torchio/datasets/rsna_miccai.py`` (installed here): the RSNA-MICCAI ``train_labels.csv`` columns
  ``BraTS21ID`` and ``MGMT_value``; github.com/pwoznicki/RadiomicsHub ``radfeat/BraTS_2021/README.md``: the
  ``BraTS2021_00001/BraTS2021_00001_flair.nii.gz`` layout beside ``train_labels.csv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import UserError

from .params import Mri

#: the model's channels, in order, and each layout's file name for them
CHANNELS = ("FLAIR", "T1", "T1c", "T2")
LAYOUTS = {
    "ucsf-pdgm": {
        # UCSF-PDGM-0004_nifti, UCSF-PDGM-0433_FU007d_nifti: (exam id, patient number, follow-up suffix)
        "folder": re.compile(r"^(UCSF-PDGM-(\d+)(?:_(FU\d+d))?)_nifti$"),
        "id_columns": ("ID",),
        "files": {"FLAIR": "FLAIR", "T1": "T1", "T1c": "T1c", "T2": "T2"},
        "mask": "tumor_segmentation",
        "suffixed": True,
    },
    "brats": {
        "folder": re.compile(r"^(BraTS20\d\d_(\d+))()$"),
        # the RSNA-MICCAI table's column, then UCSF-PDGM metadata's
        "id_columns": ("BraTS21ID", "BraTS21 ID"),
        "files": {"FLAIR": "flair", "T1": "t1", "T1c": "t1ce", "T2": "t2"},
        "mask": "seg",
        "suffixed": False,
    },
}
#: UCSF-PDGM's BraTS column: a table with it is UCSF-PDGM's metadata, whose ``ID`` names each case's patient
UCSF_BRATS_COLUMN = "BraTS21 ID"
CLASSES = ("wildtype", "mutant")
_MISSING = {"", "nan", "na", "n/a", "none", "unknown", "not available", "not tested", "not done", "-", "?"}
_UCSF_ID = re.compile(r"^(?:UCSF-PDGM-)?(\d+)(?:_(FU\d+d))?$", re.I)
_BRATS_ID = re.compile(r"^(?:BraTS20\d\d_)?(\d+)$", re.I)
#: the statuses of exams left out by mri.exams and by an empty BraTS21 ID
FOLLOW_UP = "follow-up exam (mri.exams: baselines)"
NO_BRATS_ID = "no BraTS21 ID (not in BraTS 2021)"


def idh_label(value, mapping: dict[str, str] | None = None) -> str | None:
    """An IDH value as a release writes it -> 'wildtype', 'mutant', or None (not known). Raises ValueError for a
    value that is neither. ``mapping`` (mri.label_values) replaces the spellings below with the declared ones."""
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip().lower()
    if mapping is not None:
        declared = {str(k).strip().lower(): v for k, v in mapping.items()}
        if text in declared:
            return declared[text]
        if text in _MISSING:
            return None
        raise ValueError(text)
    if text in _MISSING:
        return None
    # Only words that name IDH status itself are read: 0/1, true/false, yes/no and positive/negative are how the
    # RSNA-MICCAI MGMT_value and UCSF-PDGM's "MGMT status" are written, so reading them would train another marker.
    if "wild" in text or text == "wt":
        return "wildtype"
    if "mut" in text or re.search(r"idh[12]?\s*[-_ ]?\s*p\.", text) or re.search(r"\br1(32|72)[a-z]", text):
        return "mutant"
    raise ValueError(text)


@dataclass
class Patient:
    """One exam (the name is historical: most patients have one). ``id`` is the exam's folder id."""

    id: str  # the folder's id (UCSF-PDGM-0004, UCSF-PDGM-0433_FU007d, BraTS2021_00000)
    folder: Path
    label: str | None = None  # wildtype / mutant
    idh_value: str = ""  # as the table writes it
    files: dict[str, Path] = field(default_factory=dict)  # channel -> NIfTI
    mask: Path | None = None
    status: str = "included"
    patient: str = ""  # the patient the exam belongs to (its split group); the exam's own id when it is alone
    follow_up_of: str = ""  # a follow-up's baseline exam (empty for a baseline)

    def __post_init__(self):
        self.patient = self.patient or self.id


@dataclass
class Row:
    """One row of the label table."""

    exam: str  # the exam's id in the layout's naming
    raw_id: str  # as the table writes it
    value: str  # the label column's value as written
    label: str | None
    patient: str
    follow_up_of: str = ""
    ucsf: tuple[int, str] | None = None  # UCSF-PDGM (number, follow-up suffix), when the table is UCSF-PDGM's


def _nifti(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def _ucsf_ids(number: int, follow_up: str) -> tuple[str, str]:
    """(exam id, patient id) in the folders' four-digit naming."""
    patient = f"UCSF-PDGM-{number:04d}"
    return (f"{patient}_{follow_up}" if follow_up else patient), patient


def _parse(raw: str, pattern: re.Pattern, where: str, column: str, expected: str) -> tuple[int, str]:
    match = pattern.match(raw)
    if not match:
        raise UserError(f"{where}: {column} '{raw}' is not an exam id (expected e.g. {expected}); fix the row")
    follow_up = match.group(2) if pattern.groups > 1 else None
    return int(match.group(1)), f"FU{follow_up[2:-1]}d" if follow_up else ""


def id_column(mri: Mri, columns) -> str:
    """The table's exam id column: mri.id_column, or the layout's first column the table has."""
    if mri.id_column != "auto":
        return mri.id_column
    names = LAYOUTS[mri.layout]["id_columns"]
    return next((c for c in names if c in columns), names[0])


def read_labels(mri: Mri) -> tuple[dict[tuple[int, str], Row], list[Row]]:
    """({(number, follow-up suffix): row}, rows without an exam id) from the metadata table. Numbers are the
    folders' (UCSF-PDGM patient numbers, or BraTS case numbers)."""
    where = mri.metadata
    try:
        table = pd.read_csv(where, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{where}: not a readable CSV table ({exc})") from None
    table.columns = [c.strip() for c in table.columns]
    column = id_column(mri, table.columns)
    ucsf = mri.layout == "brats" and column == UCSF_BRATS_COLUMN
    needed = [(column, "mri.id_column"), (mri.label_column, "mri.label_column")] + ([("ID", "")] if ucsf else [])
    for name, key in needed:
        if name not in table:
            fix = f"set {key}" if key else f"UCSF-PDGM's metadata has one beside {UCSF_BRATS_COLUMN}"
            raise UserError(f"{where}: no column '{name}' ({fix}; columns: {', '.join(table.columns[:12])})")
    rows: dict[tuple[int, str], Row] = {}
    unkeyed: list[Row] = []
    for raw_id, value, ucsf_id in zip(
        table[column].str.strip(),
        table[mri.label_column],
        table["ID"].str.strip() if ucsf else table[column],
        strict=True,
    ):
        try:
            label = idh_label(value, mri.label_values)
        except ValueError:
            if mri.label_values is not None:
                raise UserError(
                    f"{where}: {mri.label_column} '{value}' of {raw_id or ucsf_id} is not in mri.label_values "
                    f"({', '.join(mri.label_values)}); add it there, or empty the cell for unknown"
                ) from None
            raise UserError(
                f"{where}: {mri.label_column} '{value}' of {raw_id or ucsf_id} is neither IDH wild-type nor mutant "
                "(expected e.g. wildtype, mutated (NOS), IDH1 p.R132H; empty for unknown); point mri.label_column "
                "at the IDH column, or declare the table's codes in mri.label_values (e.g. {'0': wildtype, "
                "'1': mutant})"
            ) from None
        if mri.layout == "ucsf-pdgm":
            key = _parse(raw_id, _UCSF_ID, where, column, "UCSF-PDGM-004 or UCSF-PDGM-0433_FU007d")
            exam, patient = _ucsf_ids(*key)
            row = Row(exam, raw_id, str(value).strip(), label, patient, patient if key[1] else "", key)
        else:
            home = None
            if ucsf:
                home = _parse(ucsf_id, _UCSF_ID, where, "ID", "UCSF-PDGM-004 or UCSF-PDGM-0433_FU007d")
            if not raw_id:
                if home is None:
                    raise UserError(f"{where}: a row without a {column}; fill it or remove the row")
                exam, patient = _ucsf_ids(*home)
                unkeyed.append(Row(exam, "", str(value).strip(), label, patient, patient if home[1] else "", home))
                continue
            key = (_parse(raw_id, _BRATS_ID, where, column, "BraTS2021_00000, 00000 or 0")[0], "")
            exam = f"BraTS2021_{key[0]:05d}"
            patient = _ucsf_ids(*home)[1] if home else exam
            row = Row(exam, raw_id, str(value).strip(), label, patient, "", home)
        if key in rows:
            if rows[key].label != label:
                raise UserError(
                    f"{where}: {raw_id} appears twice with different {mri.label_column} values "
                    f"('{rows[key].value}', '{value}'); keep one row"
                )
            continue
        rows[key] = row
    # a patient's exams are one tumour: its IDH status cannot differ between them
    by_patient: dict[str, Row] = {}
    for row in [*rows.values(), *unkeyed]:
        first = by_patient.setdefault(row.patient, row)
        if row.label is not None and first.label is not None and row.label != first.label:
            raise UserError(
                f"{where}: {mri.label_column} '{first.value}' of {first.raw_id or first.exam} and '{row.value}' of "
                f"{row.raw_id or row.exam}: two exams of patient {row.patient} disagree; correct one row"
            )
        if first.label is None and row.label is not None:
            by_patient[row.patient] = row
    if ucsf:  # a BraTS case that is a UCSF follow-up: its baseline's BraTS case, or else the UCSF baseline
        baselines = {r.ucsf[0]: r.exam for r in rows.values() if r.ucsf and not r.ucsf[1]}
        for row in rows.values():
            if row.ucsf and row.ucsf[1]:
                row.follow_up_of = baselines.get(row.ucsf[0], row.patient)
    return rows, unkeyed


def find_cohort(mri: Mri) -> list[Patient]:
    """Every exam found in the folder or the table; ``status`` says 'included' or why the exam is left out."""
    lay = LAYOUTS[mri.layout]
    root = Path(mri.root)
    rows, unkeyed = read_labels(mri)
    patients: list[Patient] = []
    seen: set[tuple[int, str]] = set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        match = lay["folder"].match(folder.name)
        if not match:
            continue
        exam, key = match.group(1), (int(match.group(2)), match.group(3) or "")
        seen.add(key)
        row = rows.get(key)
        if mri.layout == "ucsf-pdgm":
            patient = _ucsf_ids(*key)[1]
            follow_up_of = patient if key[1] else ""
        else:
            patient, follow_up_of = (row.patient, row.follow_up_of) if row else (exam, "")
        p = Patient(id=exam, folder=folder, patient=patient, follow_up_of=follow_up_of)
        suffix = mri.suffix if lay["suffixed"] else ""
        missing = []
        for channel in CHANNELS:
            path = _nifti(folder, f"{exam}_{lay['files'][channel]}{suffix}")
            if path is None:
                missing.append(channel)
            else:
                p.files[channel] = path
        p.mask = _nifti(folder, f"{exam}_{lay['mask']}")
        if row is not None:
            p.idh_value, p.label = row.value, row.label
        if follow_up_of and mri.exams == "baselines":
            p.status = FOLLOW_UP
        elif missing:
            p.status = f"missing {', '.join(missing)}"
        elif row is None:
            p.status = "no metadata row"
        elif p.label is None:
            p.status = f"no IDH value ('{p.idh_value}')" if p.idh_value else "no IDH value"
        patients.append(p)
    if not patients:
        example = "UCSF-PDGM-0004_nifti" if mri.layout == "ucsf-pdgm" else "BraTS2021_00000"
        raise UserError(
            f"{root}: no patient folders of the {mri.layout} layout (folders like {example}/); check "
            "mri.root and mri.layout"
        )
    for key, row in sorted(rows.items()):
        if key not in seen:
            status = FOLLOW_UP if row.follow_up_of and mri.exams == "baselines" else "no images"
            patients.append(_unseen(row, root, status))
    patients += [_unseen(row, root, NO_BRATS_ID) for row in unkeyed]
    return patients


def _unseen(row: Row, root: Path, status: str) -> Patient:
    return Patient(
        id=row.exam,
        folder=root,
        label=row.label,
        idh_value=row.value,
        status=status,
        patient=row.patient,
        follow_up_of=row.follow_up_of,
    )


def cohort_table(patients: list[Patient], root: Path) -> pd.DataFrame:
    """One row per exam: its id, its patient, the baseline it follows up (empty for a baseline), where it is, its
    label and whether it was included or why not."""
    return pd.DataFrame(
        [
            {
                "exam": p.id,
                "patient": p.patient,
                "follow_up_of": p.follow_up_of,
                "folder": str(p.folder.relative_to(root)) if p.folder != root else "",
                "idh_value": p.idh_value,
                "label": p.label or "",
                "has_mask": p.mask is not None,
                "status": p.status,
            }
            for p in patients
        ],
        columns=["exam", "patient", "follow_up_of", "folder", "idh_value", "label", "has_mask", "status"],
    )


def split_patients(patients: list[Patient], test_fraction: float, seed: int) -> pd.DataFrame:
    """samples.csv's table (``sample``: the exam, ``label``, ``label_index``, ``split``; ``group``: the patient,
    when some patient has several exams): a stratified held-out test split in which all exams of a patient fall on
    one side. The ``group`` column makes the protocol's folds group-aware too."""
    from shared.evaluation.splits import holdout_split

    labels = np.array([CLASSES.index(pt.label) for pt in patients])
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 4:
        raise UserError(
            f"{counts[0]} wild-type and {counts[1]} mutant exams are usable: each class needs at least "
            "4 for a held-out test split and training (see cohort.csv for the exams left out)"
        )
    groups = np.array([pt.patient for pt in patients])
    # with one exam per patient a group-aware split is the plain stratified one, which keeps test_fraction exactly
    grouped = len(set(groups)) < len(groups)
    is_test = holdout_split(labels, groups if grouped else None, test_fraction, seed)
    samples = pd.DataFrame(
        {
            "sample": [pt.id for pt in patients],
            "label": [pt.label for pt in patients],
            "label_index": labels,
            "split": np.where(is_test, "test", "train"),
        }
    )
    if grouped:
        samples["group"] = groups
    return samples
