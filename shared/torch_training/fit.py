"""One model, one fold: epochs with early stopping on the validation fold, best checkpoint restored.

A checkpoint (model, optimizer, scheduler, early-stopping state, history, RNG state) is written after every
epoch, so a killed run resumes where it stopped and ends exactly as an uninterrupted run with the same seed:
batch order depends only on (seed, epoch), and the torch RNG state travels in the checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.logs import get_logger, progress

from .distributed import Dist

log = get_logger(__name__)


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved by more than ``min_delta`` for ``patience`` epochs."""

    patience: int
    min_delta: float = 0.0
    best: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = field(default=None, repr=False)

    def step(self, epoch: int, loss: float, model: nn.Module) -> bool:
        """Record this epoch; return True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class TrainSettings:
    epochs: int
    lr: float
    weight_decay: float
    optimizer: str = "adam"
    schedule: str = "none"
    patience: int = 5
    min_delta: float = 0.0
    input_dropout: float = 0.0
    mixed_precision: bool = False
    channels_last: bool = False


@dataclass(frozen=True)
class FoldRecords:
    """Where one fold's training is recorded: its name in the log lines, the checkpoint written after every epoch
    (and resumed from when it is there), and the TensorBoard writer (None: no events)."""

    desc: str = "train"
    checkpoint: Path | None = None
    writer: object | None = None


def to_input(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch on the device as float: uint8 images scaled to [0, 1], float arrays as they are (the model spec's
    ``input.scale`` records the same rule for explain)."""
    x = x.to(device, non_blocking=True)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if channels_last and x.ndim in (4, 5):
        x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
    return x


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_epoch(
    model, loader, device, loss_fn, optimizer=None, scheduler=None, settings: TrainSettings | None = None, reduce=None
) -> tuple[float, float]:
    """One pass; trains when an optimizer is given. Returns (mean loss, accuracy) over every rank's samples."""
    settings = settings or TrainSettings(epochs=1, lr=0, weight_decay=0)
    model.train(optimizer is not None)
    # loss sum, correct, n: accumulated on the device, read once per epoch (no host sync per batch)
    total = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.set_grad_enabled(optimizer is not None):
        for x, y in loader:
            x, y = to_input(x, device, settings.channels_last), y.to(device)
            if optimizer is not None and settings.input_dropout > 0:
                x = x * (torch.rand_like(x) >= settings.input_dropout)
            with _autocast(device, settings.mixed_precision):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            with torch.no_grad():
                total[0] += loss.detach().double() * len(y)
                total[1] += (logits.argmax(1) == y).sum()
                total[2] += len(y)
    total = total.cpu()
    if reduce is not None:
        total = reduce(total)
    return float(total[0] / total[2]), float(total[1] / total[2])


@torch.no_grad()
def predict_proba(model, loader, device, channels_last: bool = False, mixed_precision: bool = False) -> np.ndarray:
    model.eval()
    out = []
    for x, _ in loader:
        with _autocast(device, mixed_precision):
            out.append(torch.softmax(model(to_input(x, device, channels_last)).float(), dim=1).cpu())
    return torch.cat(out).numpy()


# Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with weights_only=True.
def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def _stopper_state(stopper: EarlyStopping) -> dict:
    return {
        "patience": stopper.patience,
        "min_delta": stopper.min_delta,
        "best": stopper.best,
        "best_epoch": stopper.best_epoch,
        "bad_epochs": stopper.bad_epochs,
        "best_state": stopper.best_state,
    }


def _save_checkpoint(path: Path, **state) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_fold(
    model,
    train_loader,
    val_loader,
    loss_fn,
    settings: TrainSettings,
    dist: Dist,
    records: FoldRecords | None = None,
) -> tuple[list[dict], EarlyStopping]:
    """Train with early stopping on validation loss; the best state is restored before returning.

    ``model`` may be wrapped in DistributedDataParallel (then ``dist.reduce`` sums statistics over ranks and only
    the main rank writes checkpoints and TensorBoard events); the batches go to ``dist.device``.
    """
    records = records or FoldRecords()
    device, reduce = dist.device, dist.reduce
    checkpoint, writer, desc = records.checkpoint, records.writer, records.desc
    params = model.parameters()
    if settings.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = None
    if settings.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.lr, epochs=settings.epochs, steps_per_epoch=max(1, len(train_loader))
        )
    stopper = EarlyStopping(settings.patience, settings.min_delta)
    history: list[dict] = []
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        stopper = EarlyStopping(**state["stopper"])
        history, start = state["history"], state["epoch"] + 1
        _set_rng_state(state["rng"])
        log.info("%s: resumed after epoch %d from %s", desc, state["epoch"], checkpoint)
        if state["stopped"]:
            stopper.restore(model)
            return history, stopper
    sampler = getattr(train_loader, "sampler", None)
    for epoch in progress(range(start, settings.epochs), desc, unit="epoch"):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        train_loss, train_acc = run_epoch(model, train_loader, device, loss_fn, optimizer, scheduler, settings, reduce)
        val_loss, val_acc = run_epoch(model, val_loader, device, loss_fn, settings=settings)
        lr_now = optimizer.param_groups[0]["lr"]
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "lr": lr_now,
            }
        )
        if writer is not None:
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("loss/validation", val_loss, epoch)
            writer.add_scalar("accuracy/validation", val_acc, epoch)
            writer.add_scalar("lr", lr_now, epoch)
        log.info(
            "%s epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f",
            desc,
            epoch,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
        )
        stop = stopper.step(epoch, val_loss, model)
        if checkpoint is not None and dist.is_main:
            _save_checkpoint(
                checkpoint,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict() if scheduler is not None else None,
                stopper=_stopper_state(stopper),
                history=history,
                epoch=epoch,
                rng=_rng_state(),
                stopped=stop,
            )
        if stop:
            log.info(
                "%s: early stop after epoch %d (best epoch %d, val loss %.4f)",
                desc,
                epoch,
                stopper.best_epoch,
                stopper.best,
            )
            break
    stopper.restore(model)
    return history, stopper
