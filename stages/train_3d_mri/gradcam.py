"""3-D Grad-CAM (Captum's LayerGradCam on 5-D inputs) and how much of it falls on the tumour.

For each fold model the CAM of a class is the ReLU-free weighted sum of the layer's feature maps (weights: the
spatially averaged gradients of that class's logit); the fold models' maps are averaged, then the ReLU keeps the
evidence for the class (Selvaraju et al.), and the map is trilinearly up-sampled to the model's grid. Localisation
is the share of the CAM's energy (its sum over the brain) that lies inside the tumour mask, beside the share a map
spread evenly over the brain would put there (the mask's volume over the brain's): a ratio above 1 means the map
prefers the tumour.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DESCRIPTION = (
    "Grad-CAM (3-D): the chosen layer's feature maps weighted by the class logit's mean gradient, ReLU, "
    "trilinear up-sampling to the input grid; maps are the mean over the fold models. Localisation: the "
    "share of the map's energy inside the tumour mask beside the mask's share of the brain (chance)."
)


def grad_cams(members: list[nn.Module], layer: str, x: torch.Tensor, target: int) -> np.ndarray:
    """(n, *spatial) non-negative CAMs of class ``target`` for the batch ``x``, on the input grid."""
    from captum.attr import LayerAttribution, LayerGradCam

    total = None
    for net in members:
        net.eval()
        module = dict(net.named_modules())[layer]
        cam = LayerGradCam(net, module).attribute(x, target=target, relu_attributions=False)
        cam = cam.detach()
        total = cam if total is None else total + cam
    cam = torch.relu(total / len(members))
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")
    return cam[:, 0].cpu().numpy()


def localisation(cam: np.ndarray, tumour: np.ndarray, brain: np.ndarray) -> dict:
    """CAM share inside the tumour (within the brain), the chance share, and their ratio (NaN for an empty map)."""
    inside = brain & tumour
    energy = float(cam[brain].sum())
    chance = float(inside.sum() / max(brain.sum(), 1))
    share = float(cam[inside].sum() / energy) if energy > 0 else float("nan")
    return {"cam_in_mask": share, "chance": chance, "ratio": share / chance if chance > 0 else float("nan")}


def summarise(rows: list[dict]) -> dict:
    """Mean share and chance over patients (per target), how many patients beat chance, and a one-sided sign
    test of share > chance."""
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


def plot_overlays(entries: list[dict], path, title: str) -> None:
    """Rows of patients, columns of the three orthogonal planes through the tumour's centre of mass: FLAIR in grey,
    the CAM of the predicted class in colour, the tumour mask's outline in white."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(entries), 3, figsize=(7.5, 2.6 * len(entries)), squeeze=False)
    for row, e in zip(axes, entries, strict=False):
        where = e["tumour"] if e["tumour"].any() else e["brain"]
        centre = [int(round(c)) for c in np.argwhere(where).mean(axis=0)]
        cam = e["cam"] / (e["cam"].max() or 1.0)
        for ax, axis, name in zip(row, range(3), ("sagittal", "coronal", "axial"), strict=False):
            take = [slice(None)] * 3
            take[axis] = centre[axis]
            flair, c, mask = (np.rot90(a[tuple(take)]) for a in (e["flair"], cam, e["tumour"]))
            ax.imshow(flair, cmap="gray")
            ax.imshow(np.ma.masked_less(c, 0.05), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if axis == 0:
                ax.set_ylabel(f"{e['patient']}\ntrue {e['label']}\npred. {e['predicted']}", fontsize=7)
            ax.set_title(
                f"{name}: in mask {e['share']:.2f} (chance {e['chance']:.2f})" if axis == 1 else name, fontsize=7
            )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
