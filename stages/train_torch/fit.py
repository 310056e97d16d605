"""One model, one fold: epochs with early stopping on the validation fold, best checkpoint restored."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from shared.logs import get_logger, progress

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


def balanced_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights (scikit-learn's 'balanced'): n / (n_classes * count)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def _as_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).float().div_(255.0)


def run_epoch(model, loader, device, loss_fn, optimizer=None, input_dropout: float = 0.0) -> tuple[float, float]:
    """One pass; trains when an optimizer is given. Returns (mean loss, accuracy)."""
    model.train(optimizer is not None)
    total, correct, n = 0.0, 0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for x, y in loader:
            x, y = _as_input(x, device), y.to(device)
            if optimizer is not None and input_dropout > 0:
                x = x * (torch.rand_like(x) >= input_dropout)
            logits = model(x)
            loss = loss_fn(logits, y)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return total / n, correct / n


@torch.no_grad()
def predict_proba(model, loader, device) -> np.ndarray:
    model.eval()
    out = [torch.softmax(model(_as_input(x, device)), dim=1).cpu() for x, _ in loader]
    return torch.cat(out).numpy()


def train_fold(model, train_loader, val_loader, device, *, epochs: int, lr: float, weight_decay: float,
               patience: int, min_delta: float, class_weights: torch.Tensor | None = None,
               input_dropout: float = 0.0, label_smoothing: float = 0.0, writer=None,
               desc: str = "train") -> tuple[list[dict], EarlyStopping]:
    """Train with Adam and early stopping on validation loss; the best state is restored before returning."""
    loss_fn = nn.CrossEntropyLoss(weight=None if class_weights is None else class_weights.to(device),
                                  label_smoothing=label_smoothing)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    stopper = EarlyStopping(patience, min_delta)
    history = []
    for epoch in progress(range(epochs), desc, unit="epoch"):
        train_loss, train_acc = run_epoch(model, train_loader, device, loss_fn, optimizer, input_dropout)
        val_loss, val_acc = run_epoch(model, val_loader, device, loss_fn)
        lr_now = optimizer.param_groups[0]["lr"]
        history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                        "val_accuracy": val_acc, "lr": lr_now})
        if writer is not None:
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("loss/validation", val_loss, epoch)
            writer.add_scalar("accuracy/validation", val_acc, epoch)
            writer.add_scalar("lr", lr_now, epoch)
        log.info("%s epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f", desc, epoch, train_loss, train_acc,
                 val_loss, val_acc)
        if stopper.step(epoch, val_loss, model):
            log.info("%s: early stop after epoch %d (best epoch %d, val loss %.4f)", desc, epoch, stopper.best_epoch,
                     stopper.best)
            break
    stopper.restore(model)
    return history, stopper
