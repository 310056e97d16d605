"""The cohort as released: which patients have all four sequences and an IDH value, and why the others are left out.

UCSF-PDGM: ``<root>/UCSF-PDGM-0004_nifti/UCSF-PDGM-0004_{FLAIR,T1,T1c,T2}<suffix>.nii.gz`` with
``UCSF-PDGM-0004_tumor_segmentation.nii.gz`` (and other maps the release ships beside them: DWI, ADC, SWI, ASL,
brain segmentations, ..., not read), labels in ``UCSF-PDGM-metadata_v*.csv`` whose ``ID`` has three digits
(``UCSF-PDGM-004``) where the folders have four. BraTS 2021: ``<root>/BraTS2021_00000/BraTS2021_00000_{flair,t1,
t1ce,t2,seg}.nii.gz`` with a label table keyed by ``BraTS21ID`` (``0``, ``00000`` or ``BraTS2021_00000``). Patients
are matched on the number in their ids. Nothing is guessed: a patient missing a sequence, an IDH value, a
metadata row or its images is left out, and counted with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shared.errors import UserError

from .params import Mri

#: the model's channels, in order, and each layout's file name for them
CHANNELS = ("FLAIR", "T1", "T1c", "T2")
LAYOUTS = {
    "ucsf-pdgm": {
        "folder": re.compile(r"^(UCSF-PDGM-(\d+))_nifti$"),
        "id_column": "ID",
        "files": {"FLAIR": "FLAIR", "T1": "T1", "T1c": "T1c", "T2": "T2"},
        "mask": "tumor_segmentation",
        "suffixed": True,
    },
    "brats": {
        "folder": re.compile(r"^(BraTS20\d\d_(\d+))$"),
        "id_column": "BraTS21ID",
        "files": {"FLAIR": "flair", "T1": "t1", "T1c": "t1ce", "T2": "t2"},
        "mask": "seg",
        "suffixed": False,
    },
}
CLASSES = ("wildtype", "mutant")
_MISSING = {"", "nan", "na", "n/a", "none", "unknown", "not available", "not tested", "not done", "-", "?"}


def idh_label(value) -> str | None:
    """An IDH value as a release writes it -> 'wildtype', 'mutant', or None (not known). Raises ValueError for a
    value that is neither."""
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip().lower()
    if text in _MISSING:
        return None
    if "wild" in text or text in ("wt", "negative", "0", "0.0", "false", "no"):
        return "wildtype"
    if (
        "mut" in text
        or re.search(r"idh[12]?\s*[-_ ]?\s*p\.", text)
        or re.search(r"r1(32|72)", text)
        or text in ("positive", "1", "1.0", "true", "yes")
    ):
        return "mutant"
    raise ValueError(text)


def _number(text) -> int | None:
    match = re.search(r"(\d+)\s*$", str(text).strip())
    return int(match.group(1)) if match else None


@dataclass
class Patient:
    id: str  # the folder's id (UCSF-PDGM-0004, BraTS2021_00000)
    folder: Path
    label: str | None = None  # wildtype / mutant
    idh_value: str = ""  # as the table writes it
    files: dict[str, Path] = field(default_factory=dict)  # channel -> NIfTI
    mask: Path | None = None
    status: str = "included"


def _nifti(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def read_labels(mri: Mri) -> dict[int, tuple[str, str | None]]:
    """{patient number: (IDH value as written, label or None)} from the metadata table."""
    lay = LAYOUTS[mri.layout]
    id_column = lay["id_column"] if mri.id_column == "auto" else mri.id_column
    try:
        table = pd.read_csv(mri.metadata, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{mri.metadata}: not a readable CSV table ({exc})") from None
    table.columns = [c.strip() for c in table.columns]
    for column, key in ((id_column, "mri.id_column"), (mri.label_column, "mri.label_column")):
        if column not in table:
            raise UserError(
                f"{mri.metadata}: no column '{column}' (set {key}; columns: {', '.join(table.columns[:12])})"
            )
    labels: dict[int, tuple[str, str | None]] = {}
    for raw_id, value in zip(table[id_column], table[mri.label_column], strict=False):
        number = _number(raw_id)
        if number is None:
            raise UserError(f"{mri.metadata}: {id_column} '{raw_id}' has no patient number")
        try:
            label = idh_label(value)
        except ValueError:
            raise UserError(
                f"{mri.metadata}: {mri.label_column} '{value}' of {raw_id} is neither wild-type nor mutant "
                "(expected e.g. wildtype, mutant (NOS), IDH1 p.R132H; empty for unknown)"
            ) from None
        if number in labels and labels[number][1] != label:
            raise UserError(
                f"{mri.metadata}: patient {raw_id} appears twice with different {mri.label_column} "
                f"values ('{labels[number][0]}', '{value}'); keep one row"
            )
        labels[number] = (str(value).strip(), label)
    return labels


def find_cohort(mri: Mri) -> list[Patient]:
    """Every patient found in the folder or the table; ``status`` says 'included' or why the patient is left out."""
    lay = LAYOUTS[mri.layout]
    root = Path(mri.root)
    labels = read_labels(mri)
    patients: list[Patient] = []
    seen: set[int] = set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        match = lay["folder"].match(folder.name)
        if not match:
            continue
        pid, number = match.group(1), int(match.group(2))
        seen.add(number)
        patient = Patient(id=pid, folder=folder)
        suffix = mri.suffix if lay["suffixed"] else ""
        missing = []
        for channel in CHANNELS:
            path = _nifti(folder, f"{pid}_{lay['files'][channel]}{suffix}")
            if path is None:
                missing.append(channel)
            else:
                patient.files[channel] = path
        patient.mask = _nifti(folder, f"{pid}_{lay['mask']}")
        value, label = labels.get(number, ("", None))
        patient.idh_value, patient.label = value, label
        if missing:
            patient.status = f"missing {', '.join(missing)}"
        elif number not in labels:
            patient.status = "no metadata row"
        elif label is None:
            patient.status = f"no IDH value ('{value}')" if value else "no IDH value"
        patients.append(patient)
    if not patients:
        example = "UCSF-PDGM-0004_nifti" if mri.layout == "ucsf-pdgm" else "BraTS2021_00000"
        raise UserError(
            f"{root}: no patient folders of the {mri.layout} layout (folders like {example}/); check "
            "mri.root and mri.layout"
        )
    width = 4 if mri.layout == "ucsf-pdgm" else 5
    prefix = "UCSF-PDGM-" if mri.layout == "ucsf-pdgm" else "BraTS2021_"
    for number, (value, label) in sorted(labels.items()):
        if number not in seen:
            patients.append(
                Patient(id=f"{prefix}{number:0{width}d}", folder=root, label=label, idh_value=value, status="no images")
            )
    return patients


def cohort_table(patients: list[Patient], root: Path) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "patient": p.id,
                "folder": str(p.folder.relative_to(root)) if p.folder != root else "",
                "idh_value": p.idh_value,
                "label": p.label or "",
                "has_mask": p.mask is not None,
                "status": p.status,
            }
            for p in patients
        ]
    )
