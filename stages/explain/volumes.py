"""What explain adds for volume inputs whose dataset has masks and grids (train_3d_mri's, ``shared.dataset``): each
explained exam's map scored against its tumour mask (``shared.evaluation.localisation``, a trust check), returned to
the exam's own scan as NIfTI (``shared.nifti``), and drawn over the FLAIR.

A method's map of an exam is its attributions over the channels: their sum for a signed method (positive: evidence
for the class), their mean for an unsigned one (Grad-CAM's map itself, which is the same in every channel). The
localisation scores the map's energy, the absolute attributions summed over the channels, as the maps are read.

The same energy is split over the tumour's sub-regions of the segmentation (``BRATS_REGIONS``: necrotic /
non-enhancing core, oedema, enhancing tumour), each beside the region's share of the brain: which part of the
tumour the map leans on, per class (subregions.csv, one row per exam and region it has; the summary under the
method's ``subregions``). Volume inputs have no genes, so explain writes no .h5ad for them: these tables and the
report's summary.json are where the per-exam and per-class figures live.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from shared.evaluation.localisation import (
    BRATS_REGIONS,
    edge_shares,
    localisation,
    subregions,
    summarise,
    summarise_edges,
    summarise_subregions,
)

from .inputs import ModelInputs

NIFTI = "nifti"


def volume_map(attr: np.ndarray, signed: bool) -> np.ndarray:
    """(n, C, D, H, W) attributions -> (n, D, H, W) maps."""
    return attr.sum(1) if signed else attr.mean(1)


class VolumeChecks:
    """Collects, chunk by chunk, one method's localisation and sub-region rows and writes its NIfTI maps;
    ``finish`` writes localisation.csv and subregions.csv and returns their summaries (``localisation``: per target,
    mean share against chance, patients above, sign test; ``subregions``: the same per class and region)."""

    def __init__(self, data: ModelInputs, classes: list[str], signed: bool, folder: Path, nifti: bool):
        self.data, self.classes, self.signed, self.folder = data, classes, signed, folder
        self.nifti = nifti and data.grids is not None
        self.rows: list[dict] = []
        self.region_rows: list[dict] = []
        self.region_seconds = 0.0
        if self.nifti:
            (folder / NIFTI).mkdir(parents=True, exist_ok=True)

    def add(self, attr: np.ndarray, rows: np.ndarray) -> None:
        data = self.data
        masks = data.masks[rows]
        energy = np.abs(attr).sum(1)
        maps = volume_map(attr, self.signed) if self.nifti else None
        for j, row in enumerate(rows):
            sample = str(data.samples["sample"].iat[row])
            label, predicted = int(data.labels[row]), int(data.proba[row].argmax())
            brain, tumour = masks[j, 0] > 0, masks[j, 1] > 0
            loc = (
                localisation(energy[j], tumour, brain)
                if data.has_mask[row]
                else {"cam_in_mask": float("nan"), "chance": float("nan"), "ratio": float("nan")}
            )
            nifti = ""
            if self.nifti:
                from shared.nifti import to_native

                grid = {k: v[row] for k, v in data.grids.items()}
                nifti = f"{NIFTI}/{sample}.nii.gz"
                to_native(
                    maps[j], grid["model_affine"], grid["native_shape"], grid["native_affine"], self.signed
                ).to_filename(self.folder / nifti)
            exam = {
                "sample": sample,
                "label": self.classes[label],
                "predicted": self.classes[predicted],
                # explain's attributions are of the true class
                "target": "true",
                "class": self.classes[label],
            }
            self.rows.append({**exam, **loc, **edge_shares(energy[j], brain), "nifti": nifti})
            if data.has_mask[row]:
                t0 = time.perf_counter()
                regions = subregions(energy[j], masks[j, 1], brain)
                self.region_rows += [{**exam, "region": name, **shares} for name, shares in regions.items()]
                self.region_seconds += time.perf_counter() - t0

    def finish(self) -> dict:
        """Writes the per-exam tables; returns the method's ``localisation`` and ``subregions`` entries."""
        import pandas as pd

        pd.DataFrame(self.rows).to_csv(self.folder / "localisation.csv", index=False)
        columns = ["sample", "label", "predicted", "target", "class", "region", "energy_share", "volume_share", "ratio"]
        pd.DataFrame(self.region_rows, columns=columns).to_csv(self.folder / "subregions.csv", index=False)
        t0 = time.perf_counter()
        per_class = summarise_subregions(self.region_rows)
        seconds = self.region_seconds + time.perf_counter() - t0
        return {
            "localisation": summarise(self.rows),
            # the shortcut audit's edge checks; explain_model gathers them into the model's shortcuts entry
            "shortcuts": summarise_edges(self.rows),
            "subregions": {
                "target": "true",
                "regions": {
                    name: {"labels": list(r.labels), "description": r.description} for name, r in BRATS_REGIONS.items()
                },
                "per_class": per_class,
                "seconds": round(seconds, 4),
            },
        }

    def overlay_entries(self, rows: np.ndarray, attr: np.ndarray) -> list[dict]:
        """What ``plot_volume_overlays`` draws for the exams ``rows`` (their attributions ``attr``)."""
        data, by_sample = self.data, {r["sample"]: r for r in self.rows}
        channels = list(data.channels or [])
        flair = channels.index("FLAIR") if "FLAIR" in channels else 0
        masks, inputs = data.masks[rows], data.array[rows]
        maps = np.abs(volume_map(attr, self.signed))
        out = []
        for j, row in enumerate(rows):
            sample = str(data.samples["sample"].iat[row])
            out.append(
                {
                    "patient": sample,
                    "label": by_sample[sample]["label"],
                    "predicted": by_sample[sample]["predicted"],
                    "flair": np.asarray(inputs[j, flair], np.float32),
                    "cam": maps[j],
                    "tumour": masks[j, 1] > 0,
                    "brain": masks[j, 0] > 0,
                    "share": by_sample[sample]["cam_in_mask"],
                    "chance": by_sample[sample]["chance"],
                }
            )
        return out
