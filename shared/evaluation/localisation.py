"""How much of a volume's attribution map lies on the tumour, against chance: a trust check for maps that a mask can
score (framework-free: numpy and scipy).

For one map, the share of its energy (its sum over the brain) inside the tumour mask, beside the share a map spread
evenly over the brain would put there (the mask's volume over the brain's): a ratio above 1 means the map prefers
the tumour. Over the held-out patients, the mean share and chance, how many patients beat chance, and a one-sided
sign test of share > chance, per target class (the predicted or the true one) and per class.
"""

from __future__ import annotations

import numpy as np


def localisation(cam: np.ndarray, tumour: np.ndarray, brain: np.ndarray) -> dict:
    """CAM share inside the tumour (within the brain), the chance share, and their ratio (NaN for an empty map)."""
    inside = brain & tumour
    energy = float(cam[brain].sum())
    chance = float(inside.sum() / max(brain.sum(), 1))
    share = float(cam[inside].sum() / energy) if energy > 0 else float("nan")
    return {"cam_in_mask": share, "chance": chance, "ratio": share / chance if chance > 0 else float("nan")}


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
