"""One fold model as both torch trainers make it (train_torch's deep models, train_3d_mri's volumes): seeded by the
experiment's seed and the split, class-weighted loss and the epoch-seeded sampler over the fold's training rows,
trained with early stopping on its validation rows (``fit.train_fold``), then its validation and held-out test
probabilities. What differs between the trainers (the network, the loaders) comes in as two callables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import distributed
from .distributed import Dist
from .fit import EarlyStopping, FoldRecords, TrainSettings, predict_proba, train_fold
from .losses import balanced_weights, make_loss
from .sampling import EpochShuffle, class_balanced_weights


@dataclass(frozen=True)
class FoldPlan:
    """One fold's training: its name in the log, its seed, its training rows' labels and what the loss and the
    sampler make of them (the trainers' settings of those names), and where it is recorded."""

    desc: str
    seed: int
    labels: np.ndarray  # the fold's training rows' labels
    n_classes: int
    batch_size: int
    loss: str
    class_weights: str  # "balanced" or "none"
    sampler: str  # "weighted" or "shuffle"
    focal_gamma: float
    label_smoothing: float
    checkpoint: Path
    log_dir: Path | None  # TensorBoard events (the main process only); None: none

    @classmethod
    def of(cls, settings, split: tuple, seed: int, labels: np.ndarray, n_classes: int, **where) -> FoldPlan:
        """The plan of fold ``split`` = (repeat, fold) from a trainer's settings (batch_size, loss, class_weights,
        sampler, focal_gamma and, where it has one, label_smoothing): seeded ``seed + 1000 x repeat + fold``;
        ``labels``: the fold's training rows' labels; ``where``: desc, checkpoint, log_dir."""
        r, k = split
        return cls(
            seed=seed + 1000 * r + k,
            labels=labels,
            n_classes=n_classes,
            batch_size=settings.batch_size,
            loss=settings.loss,
            class_weights=settings.class_weights,
            sampler=settings.sampler,
            focal_gamma=settings.focal_gamma,
            label_smoothing=getattr(settings, "label_smoothing", 0.0),
            **where,
        )


@dataclass
class FoldFit:
    """The fold model on the CPU, its per-epoch history, its early stopper, and its probabilities."""

    net: nn.Module
    history: list[dict]
    stopper: EarlyStopping
    val_proba: np.ndarray
    test_proba: np.ndarray


def fit_fold(
    plan: FoldPlan,
    build: Callable[[], nn.Module],
    loaders: Callable[[EpochShuffle], tuple],
    test_loader,
    training: TrainSettings,
    dist: Dist,
) -> FoldFit:
    """``build()`` the network (on ``dist.device``, in the memory format it trains in) after seeding torch with the
    plan's seed, train it on ``loaders(sampler)``'s (training, validation) loaders, predict the validation and
    ``test_loader`` rows."""
    torch.manual_seed(plan.seed)
    net = build()
    model = dist.wrap(net)
    weights = balanced_weights(plan.labels, plan.n_classes) if plan.class_weights == "balanced" else None
    loss_fn = make_loss(plan.loss, weights, plan.label_smoothing, plan.focal_gamma).to(dist.device)
    sampler = EpochShuffle(
        len(plan.labels),
        plan.seed,
        plan.batch_size,
        rank=dist.rank,
        world=dist.world,
        weights=class_balanced_weights(plan.labels, plan.n_classes) if plan.sampler == "weighted" else None,
    )
    train_loader, val_loader = loaders(sampler)
    plan.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(plan.log_dir)) if dist.is_main and plan.log_dir is not None else None
    try:
        history, stopper = train_fold(
            model, train_loader, val_loader, loss_fn, training, dist, FoldRecords(plan.desc, plan.checkpoint, writer)
        )
    finally:
        if writer is not None:
            writer.close()
    distributed.barrier()
    val_proba = predict_proba(net, val_loader, dist.device, training.channels_last, training.mixed_precision)
    test_proba = predict_proba(net, test_loader, dist.device, training.channels_last, training.mixed_precision)
    net = net.float().cpu().to(memory_format=torch.contiguous_format)
    return FoldFit(net, history, stopper, val_proba, test_proba)
