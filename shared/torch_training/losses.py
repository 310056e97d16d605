"""Losses: cross-entropy (weighted, label-smoothed) or focal loss (Lin et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FocalLoss(nn.Module):
    """mean over samples of -w_y (1 - p_y)^gamma log p_y; gamma = 0 is weighted cross-entropy."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1 - logp.exp()) ** self.gamma) * logp
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


def make_loss(kind: str, weight: torch.Tensor | None, label_smoothing: float, gamma: float) -> nn.Module:
    if kind == "focal":
        return FocalLoss(gamma, weight)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def balanced_weights(labels, n_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights (scikit-learn's 'balanced'): n / (n_classes * count)."""
    import numpy as np

    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)
