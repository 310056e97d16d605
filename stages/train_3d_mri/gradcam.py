"""The MRI stage's Grad-CAM: the maps of its fold models (shared.cam, the implementation explain uses too), scored
against the tumour mask (shared.evaluation.localisation), and the overlay figure.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.cam import grad_cam
from shared.models import Ensemble

DESCRIPTION = (
    "Grad-CAM (3-D): the chosen layer's feature maps weighted by the class logit's mean gradient, ReLU, "
    "trilinear up-sampling to the input grid; maps are the mean over the fold models. Localisation: the "
    "share of the map's energy inside the tumour mask beside the mask's share of the brain (chance)."
)


def grad_cams(members: list[nn.Module], layer: str, x: torch.Tensor, target: int) -> np.ndarray:
    """(n, *spatial) non-negative CAMs of class ``target`` for the batch ``x``, on the input grid: the fold models'
    mean (their ensemble's Grad-CAM at the layer of each)."""
    for net in members:
        net.eval()
    layers = [dict(net.named_modules())[layer] for net in members]
    cam = grad_cam(Ensemble(members), layers, x, target)
    return cam.detach()[:, 0].cpu().numpy()


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
