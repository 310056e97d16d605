"""How much of a volume's attribution map lies on the tumour, against chance: a trust check for maps that a mask can
score (framework-free: numpy and scipy).

For one map, the share of its energy (its sum over the brain) inside the tumour mask, beside the share a map spread
evenly over the brain would put there (the mask's volume over the brain's): a ratio above 1 means the map prefers
the tumour. Over the held-out patients, the mean share and chance, how many patients beat chance, and a one-sided
sign test of share > chance, per target class (the predicted or the true one) and per class.

Per tumour sub-region (``subregions``, ``summarise_subregions``): the same share and chance for each region of the
BraTS segmentation the exam has (``BRATS_REGIONS``), so a map can be read as leaning on the enhancing rim, the core
or the oedema; per class and region, the exams above chance and a two-sided sign test (a map may also avoid a
region). An exam without a region (a tumour without enhancement) is left out of that region's test: it has no share
to compare, and a zero would count as a map avoiding it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Region(NamedTuple):
    """One tumour sub-region of a segmentation: the label values that mark it and what it is."""

    labels: tuple[int, ...]
    description: str


#: The BraTS sub-regions, by their BraTS abbreviations. Label 1 is the necrotic core (NCR) of BraTS 2021 and the
#: necrotic and non-enhancing core (NCR/NET) of the releases before; the enhancing tumour is 4 up to BraTS 2021 and
#: 3 in BraTS 2023 (shared/dataset.py documents masks.npy's labels so).
BRATS_REGIONS: dict[str, Region] = {
    "NCR/NET": Region((1,), "necrotic / non-enhancing tumour core"),
    "ED": Region((2,), "peritumoral oedema"),
    "ET": Region((3, 4), "enhancing tumour"),
}


def localisation(cam: np.ndarray, tumour: np.ndarray, brain: np.ndarray) -> dict:
    """CAM share inside the tumour (within the brain), the chance share, and their ratio (NaN for an empty map)."""
    inside = brain & tumour
    energy = float(cam[brain].sum())
    chance = float(inside.sum() / max(brain.sum(), 1))
    share = float(cam[inside].sum() / energy) if energy > 0 else float("nan")
    return {"cam_in_mask": share, "chance": chance, "ratio": share / chance if chance > 0 else float("nan")}


#: voxels from each face of the volume that make its border: where padding and the crop's edge are, and no tumour
BORDER = 2
#: the edge checks of the shortcut audit: a map's share outside the brain mask and in the volume's border
EDGES = ("outside_brain", "border")


def edge_shares(energy: np.ndarray, brain: np.ndarray, border: int = BORDER) -> dict:
    """A map's energy share outside the brain mask and in the volume's ``border`` (its outermost voxels on every
    face), each beside its voxel share (what a map spread evenly over the volume would put there); NaN for an empty
    map. A model that reads the background or the edge of the crop, not the brain, shows here."""
    edge = np.ones(energy.shape, bool)
    edge[tuple(slice(border, n - border) for n in energy.shape)] = False
    total = float(energy.sum())
    out = {}
    for name, where in (("outside_brain", ~brain), ("border", edge)):
        out[name] = float(energy[where].sum() / total) if total > 0 else float("nan")
        out[f"{name}_chance"] = float(where.mean())
    return out


def summarise_edges(rows: list[dict], alpha: float = 0.05) -> dict:
    """Per edge check: the exams, mean share and chance, how many exams put more of the map there than chance, a
    one-sided sign test of share > chance; ``flags``: the checks significant at ``alpha`` with a mean share above
    chance. ``rows``: ``edge_shares``'s output per exam."""
    from scipy.stats import binomtest

    out: dict = {}
    for name in EDGES:
        sel = [r for r in rows if np.isfinite(r[name])]
        if not sel:
            continue
        share = np.array([r[name] for r in sel])
        chance = np.array([r[f"{name}_chance"] for r in sel])
        above = int((share > chance).sum())
        out[name] = {
            "n": len(sel),
            "share_mean": float(share.mean()),
            "chance_mean": float(chance.mean()),
            "above_chance": above,
            "p_sign_test": float(binomtest(above, len(sel), 0.5, alternative="greater").pvalue),
        }
    out["flags"] = [
        n for n in EDGES if n in out and out[n]["p_sign_test"] < alpha and out[n]["share_mean"] > out[n]["chance_mean"]
    ]
    return out


def summarise(rows: list[dict]) -> dict:
    """Per target ("predicted", "true"): mean share and chance over patients, how many beat chance, a one-sided sign
    test of share > chance, and per class. ``rows``: {"target", "class", "cam_in_mask", "chance"} per patient."""
    from scipy.stats import binomtest

    out = {}
    for target in ("predicted", "true"):
        sel = [r for r in rows if r["target"] == target and np.isfinite(r["cam_in_mask"])]
        if not sel:
            continue
        share = np.array([r["cam_in_mask"] for r in sel])
        chance = np.array([r["chance"] for r in sel])
        above = int((share > chance).sum())
        out[target] = {
            "n": len(sel),
            "cam_in_mask_mean": float(share.mean()),
            "chance_mean": float(chance.mean()),
            "ratio_mean": float(np.mean(share / chance)),
            "above_chance": above,
            "p_sign_test": float(binomtest(above, len(sel), 0.5, alternative="greater").pvalue),
            "per_class": {
                c: {
                    "n": int(sum(r["class"] == c for r in sel)),
                    "cam_in_mask_mean": float(np.mean([r["cam_in_mask"] for r in sel if r["class"] == c])),
                    "chance_mean": float(np.mean([r["chance"] for r in sel if r["class"] == c])),
                }
                for c in sorted({r["class"] for r in sel})
            },
        }
    return out


def subregions(
    energy: np.ndarray, labels: np.ndarray, brain: np.ndarray, regions: dict[str, Region] = BRATS_REGIONS
) -> dict[str, dict]:
    """Per region the exam has inside the brain: the share of the map's energy there (``energy_share``, NaN for an
    empty map), the region's share of the brain (``volume_share``, what a map spread evenly would put there) and
    their ratio. ``energy``: the non-negative map; ``labels``: the segmentation's label values, voxel by voxel.
    A region with no voxel is absent from the result, not a zero."""
    inside = labels[brain].astype(np.intp)
    size = max(int(inside.max(initial=0)), *(max(r.labels) for r in regions.values())) + 1
    voxels = np.bincount(inside, minlength=size)
    weights = np.bincount(inside, weights=energy[brain].astype(np.float64), minlength=size)
    total, brain_voxels = float(weights.sum()), max(len(inside), 1)
    out = {}
    for name, region in regions.items():
        count = int(voxels[list(region.labels)].sum())
        if not count:
            continue
        chance = count / brain_voxels
        share = float(weights[list(region.labels)].sum() / total) if total > 0 else float("nan")
        out[name] = {"energy_share": share, "volume_share": chance, "ratio": share / chance}
    return out


def summarise_subregions(rows: list[dict], regions: dict[str, Region] = BRATS_REGIONS) -> dict:
    """Per class and region: the exams that have the region (``n``; empty maps left out too), the mean energy and
    volume shares and ratio, how many exams put more of the map there than chance, and an exact two-sided sign test
    of share against chance (ties dropped, as a sign test does). ``rows``: {"class", "region", "energy_share",
    "volume_share"} per exam and region present (``subregions``'s output, one row per region)."""
    from scipy.stats import binomtest

    out: dict[str, dict] = {}
    for c in sorted({r["class"] for r in rows}):
        per_region = {}
        for name in regions:
            sel = [r for r in rows if r["class"] == c and r["region"] == name and np.isfinite(r["energy_share"])]
            if not sel:
                continue
            share = np.array([r["energy_share"] for r in sel])
            chance = np.array([r["volume_share"] for r in sel])
            above, below = int((share > chance).sum()), int((share < chance).sum())
            per_region[name] = {
                "n": len(sel),
                "energy_share_mean": float(share.mean()),
                "volume_share_mean": float(chance.mean()),
                "ratio_mean": float(np.mean(share / chance)),
                "above_chance": above,
                "p_sign_test": float(binomtest(above, above + below, 0.5).pvalue) if above + below else 1.0,
            }
        if per_region:
            out[c] = per_region
    return out
