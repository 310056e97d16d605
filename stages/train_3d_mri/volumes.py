"""Volumes into the model's grid with TorchIO, and maps back into each patient's own space.

Per patient: the four sequences and the tumour mask are read with nibabel and checked (readable, finite, the same
shape and affine as the FLAIR), then TorchIO reorients them to RAS (``ToCanonical``), resamples to the configured
spacing and crops or pads about the brain's centre (``CropOrPad(mask_name='brain')``) or, without a spacing, resizes
to the configured size; each channel is then normalised inside the brain (voxels where any sequence is non-zero:
both releases are skull-stripped): z-scored (``ZNormalization``) or by its median and inter-quartile range
(``robust_normalise``). The results go into one memory-mapped array (n, 4, *size) float16, so a cohort of any
size trains in bounded memory; with the masks and grids it becomes the stage's dataset (``shared.dataset``'s volume
layout), which explain reads. Augmentation (flips, affine, elastic, intensity) is drawn per training patient and
epoch from torch's generator, which the fold checkpoints carry, and is never applied to validation or test patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.errors import UserError, first_line
from shared.logs import get_logger, progress

from .cohort import CHANNELS, Patient
from .params import Augment

log = get_logger(__name__)


class BadVolume(Exception):
    """A volume that cannot be used; the message names the file."""


def _load(path: Path):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds (ImageFileError, EOFError, zlib errors, OSError)
        raise BadVolume(
            f"{path}: unreadable NIfTI ({type(exc).__name__}: {first_line(exc)}); is the file complete? "
            "copy or download it again"
        ) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadVolume(f"{path}: expected a 3-D volume, got shape {data.shape}")
    return img, data


#: the tumour-mask labels the releases document: BraTS 2021 and UCSF-PDGM 0, 1, 2, 4; BraTS 2023 0, 1, 2, 3
MASK_LABELS = (0, 1, 2, 3, 4)


def check_patient(patient: Patient) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{channel or 'mask': (array, affine)} of one patient, after the checks; raises BadVolume naming the file."""
    out = {}
    ref_shape = ref_affine = None
    for name in (*CHANNELS, "mask"):
        path = patient.files.get(name) if name != "mask" else patient.mask
        if path is None:
            continue
        img, data = _load(path)
        affine = img.affine
        if name != "mask" and not np.isfinite(data).all():
            raise BadVolume(f"{path}: {int((~np.isfinite(data)).sum())} NaN or infinite voxels")
        if name == "mask":
            outside = np.setdiff1d(np.unique(data), MASK_LABELS)
            if len(outside):
                raise BadVolume(
                    f"{path}: tumour-mask labels {outside[:5].tolist()} outside the documented set "
                    f"{list(MASK_LABELS)} (BraTS: 1 necrotic core, 2 oedema, 3 or 4 enhancing); is this "
                    "the tumour segmentation?"
                )
        if ref_shape is None:
            ref_shape, ref_affine, ref_path = data.shape, affine, path
        elif data.shape != ref_shape:
            raise BadVolume(f"{path}: shape {data.shape} differs from {ref_path.name}'s {ref_shape}")
        elif not np.allclose(affine, ref_affine, atol=1e-3):
            raise BadVolume(
                f"{path}: its affine (voxel-to-world) differs from {ref_path.name}'s; the sequences must be "
                "co-registered on one grid"
            )
        out[name] = (data, affine)
    return out


def model_space(size: list[int], spacing: list[float] | None, normalisation: str = "zscore"):
    """The TorchIO transform from a patient's subject to the model's grid (the same for every patient)."""
    import torchio as tio

    steps = [tio.ToCanonical()]
    if spacing is not None:
        steps += [tio.Resample(tuple(spacing)), tio.CropOrPad(tuple(size), mask_name="brain")]
    else:
        steps += [tio.Resize(tuple(size))]
    if normalisation == "zscore":
        steps += [tio.ZNormalization(masking_method="brain", include=list(CHANNELS))]
    return tio.Compose(steps)


def robust_normalise(x: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Each channel minus its median inside the brain, over its inter-quartile range / 1.349 (the standard deviation
    of a normal distribution with that IQR). Unlike the mean and standard deviation (TorchIO's ZNormalization), the
    quartiles of the brain barely move when a large, bright tumour fills part of it: with a plain z-score the
    tumour's brightness shifts every normal voxel's value, so a classifier can read the tumour's class anywhere in
    the brain, not only in the tumour."""
    out = np.empty_like(x, dtype=np.float32)
    for c in range(x.shape[0]):
        inside = x[c][brain]
        q1, median, q3 = np.percentile(inside, [25, 50, 75]) if inside.size else (0.0, 0.0, 1.0)
        scale = (q3 - q1) / 1.349
        out[c] = (x[c] - median) / (scale if scale > 1e-6 else 1.0)
    return out


def subject(volumes: dict[str, tuple[np.ndarray, np.ndarray]]):
    import torchio as tio

    data = {}
    for name, (array, affine) in volumes.items():
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float32 if name != "mask" else np.int16)[None].copy())
        data[name] = (tio.LabelMap if name == "mask" else tio.ScalarImage)(tensor=tensor, affine=affine)
    brain = np.any([np.asarray(volumes[c][0]) != 0 for c in CHANNELS], axis=0)
    data["brain"] = tio.LabelMap(tensor=torch.from_numpy(brain[None].astype(np.int16)), affine=volumes["FLAIR"][1])
    return tio.Subject(data)


@dataclass
class Prepared:
    """The included patients in the model's grid: x (n, 4, *size) float16 memory-mapped (in ``path``), the tumour
    mask's labels (n, *size) uint8 (0 outside the tumour) and the brain (n, *size) bool, the model-grid affines
    (n, 4, 4), each exam's own grid (its FLAIR's affine and shape), and which patients have a tumour mask."""

    patients: list[Patient]
    x: np.ndarray
    path: Path
    tumour: np.ndarray
    brain: np.ndarray
    affines: np.ndarray
    native_affines: np.ndarray
    native_shapes: np.ndarray
    has_mask: np.ndarray

    def write_dataset(self, folder: Path) -> None:
        """volumes.npy (moved from the scratch folder: no copy), masks.npy and grids.npz, in the dataset layout."""
        from shared.artifacts import replace_or_copy
        from shared.dataset import GRIDS, MASKS, VOLUMES

        replace_or_copy(self.path, folder / VOLUMES)
        masks = np.lib.format.open_memmap(
            folder / MASKS, mode="w+", dtype=np.uint8, shape=(len(self.brain), 2, *self.brain.shape[1:])
        )
        masks[:, 0], masks[:, 1] = self.brain, self.tumour
        masks.flush()
        del masks
        np.savez(
            folder / GRIDS,
            model_affine=self.affines,
            native_affine=self.native_affines,
            native_shape=self.native_shapes,
        )


def prepare(
    patients: list[Patient],
    size: list[int],
    spacing: list[float] | None,
    scratch: Path,
    on_bad: str,
    normalisation: str = "zscore",
) -> Prepared:
    """Check and transform every included patient; a bad volume is an error or (on_bad 'skip') a left-out patient
    whose ``status`` says why."""
    transform = model_space(size, spacing, normalisation)
    included = [p for p in patients if p.status == "included"]
    scratch.mkdir(parents=True, exist_ok=True)
    x = np.lib.format.open_memmap(
        scratch / "volumes.npy", mode="w+", dtype=np.float16, shape=(len(included), len(CHANNELS), *size)
    )
    tumour = np.zeros((len(included), *size), np.uint8)
    brain = np.zeros((len(included), *size), bool)
    affines, native_affines = np.zeros((len(included), 4, 4)), np.zeros((len(included), 4, 4))
    native_shapes = np.zeros((len(included), 3), np.int64)
    keep = []
    for i, patient in enumerate(progress(included, "volumes", unit="patient")):
        try:
            volumes = check_patient(patient)
        except BadVolume as exc:
            if on_bad == "error":
                raise UserError(f"{exc} (fix or remove the file, or set mri.on_bad_volume: skip)") from None
            log.warning("left out: %s", exc)
            patient.status = f"bad volume: {exc}"
            continue
        done = transform(subject(volumes))
        brain[i] = done["brain"].data[0].numpy() > 0
        volume = np.stack([done[c].data[0].numpy() for c in CHANNELS])
        x[i] = (robust_normalise(volume, brain[i]) if normalisation == "robust" else volume).astype(np.float16)
        if "mask" in volumes:
            tumour[i] = done["mask"].data[0].numpy().astype(np.uint8)  # the labels, resampled nearest (LabelMap)
        affines[i] = done["FLAIR"].affine
        native_affines[i], native_shapes[i] = volumes["FLAIR"][1], volumes["FLAIR"][0].shape[:3]
        keep.append(i)
    keep = np.asarray(keep, dtype=np.int64)
    x.flush()
    kept = [included[i] for i in keep]
    if len(keep) < len(included):  # rewrite the array without the skipped rows
        compact = np.lib.format.open_memmap(
            scratch / "volumes.kept.npy", mode="w+", dtype=np.float16, shape=(len(keep), len(CHANNELS), *size)
        )
        for j, i in enumerate(keep):
            compact[j] = x[i]
        compact.flush()
        del x
        (scratch / "volumes.kept.npy").replace(scratch / "volumes.npy")
        x = np.load(scratch / "volumes.npy", mmap_mode="r")
    return Prepared(
        kept,
        x,
        scratch / "volumes.npy",
        tumour[keep],
        brain[keep],
        affines[keep],
        native_affines[keep],
        native_shapes[keep],
        np.array([p.mask is not None for p in kept], bool),
    )


def augmentation(a: Augment):
    """The TorchIO augmentation of training patients (None when every probability is 0)."""
    import torchio as tio

    steps = []
    if a.flip:
        steps.append(tio.RandomFlip(axes=("LR",), flip_probability=a.flip))
    if a.affine:
        steps.append(tio.RandomAffine(scales=0.1, degrees=10, translation=5, p=a.affine))
    if a.elastic:
        steps.append(tio.RandomElasticDeformation(num_control_points=7, max_displacement=7.5, p=a.elastic))
    if a.intensity:
        steps += [
            tio.RandomGamma(log_gamma=0.2, p=a.intensity),
            tio.RandomBiasField(coefficients=0.3, p=a.intensity),
            tio.RandomNoise(std=0.05, p=a.intensity),
        ]
    return tio.Compose(steps) if steps else None


class Volumes(Dataset):
    """(x float32 (4, *size), label) of the given rows; training rows are augmented on every draw."""

    def __init__(self, prepared: Prepared, labels: np.ndarray, rows: np.ndarray, augment=None):
        self.prepared, self.labels, self.rows, self.augment = prepared, labels, np.asarray(rows), augment

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        x = torch.from_numpy(np.asarray(self.prepared.x[row], dtype=np.float32))
        if self.augment is not None:
            import torchio as tio

            x = self.augment(tio.ScalarImage(tensor=x, affine=self.prepared.affines[row])).data.float()
        return x, int(self.labels[row])
