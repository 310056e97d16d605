"""python -m stages.train_torch --config FILE: k-fold CNN training, held-out test evaluation."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from shared.artifacts import StageRun, write_json_atomic
from shared.devices import choose_device, describe_device
from shared.errors import UserError
from shared.logs import get_logger
from shared.models import Ensemble, build_image_classifier, cached_weights_file, save_classifier
from shared.stage import main

from .data import channel_stats, load_image_set, make_loader, with_augmented
from .fit import balanced_weights, predict_proba, train_fold
from .metrics import classification_metrics, confusion_table, per_class_table
from .params import TrainTorch

log = get_logger("stages.train_torch")


def fold_splits(labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int):
    """Stratified (group-aware when groups exist) k-fold over the given rows."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < folds:
        raise UserError(f"class index {classes[counts.argmin()]} has {counts.min()} training samples, fewer than "
                        f"train_torch.folds={folds}; lower the folds")
    if groups is not None:
        if len(np.unique(groups)) < folds:
            raise UserError(f"{len(np.unique(groups))} training groups, fewer than train_torch.folds={folds}")
        return list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(labels, labels, groups))
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels))


def run(run: StageRun) -> None:
    exp = run.exp
    p: TrainTorch = exp.section("train_torch")
    pre = run.upstream("preprocess")
    ds = load_image_set(pre)
    device = choose_device(exp.device)
    run.device = describe_device(device)
    channels = ds.images.shape[1]
    n_classes = len(ds.classes)

    pretrained = p.pretrained == "auto" and cached_weights_file(p.arch) is not None
    if p.pretrained == "auto" and not pretrained:
        log.info("no ImageNet weights for %s in the local torch cache (%s); random initialisation",
                 p.arch, torch.hub.get_dir())

    stem = p.stem if p.stem != "auto" else ("small" if min(ds.images.shape[2:]) < 64 else "imagenet")
    original = ds.samples["augmented_from"].to_numpy() == ""
    train_rows = np.flatnonzero((ds.split == "train") & original)
    test_rows = np.flatnonzero(ds.split == "test")
    splits = fold_splits(ds.labels[train_rows], None if ds.groups is None else ds.groups[train_rows], p.folds, exp.seed)
    from torch.utils.tensorboard import SummaryWriter

    members, history, fold_rows = [], [], []
    cv_proba = np.zeros((len(train_rows), n_classes))
    test_loader = make_loader(ds, test_rows, p.batch_size, False, exp.seed, p.num_workers)
    for k, (tr, va) in enumerate(splits):
        tr_rows, va_rows = with_augmented(ds.samples, train_rows[tr]), train_rows[va]
        torch.manual_seed(exp.seed + k)
        mean, std = channel_stats(ds.images, tr_rows)
        model = build_image_classifier(p.arch, channels, n_classes, mean, std, pretrained=pretrained,
                                       stem=stem).to(device)
        train_loader = make_loader(ds, tr_rows, p.batch_size, True, exp.seed + k, p.num_workers)
        val_loader = make_loader(ds, va_rows, p.batch_size, False, exp.seed, p.num_workers)
        weights = balanced_weights(ds.labels[tr_rows], n_classes) if p.class_weights == "balanced" else None
        with SummaryWriter(log_dir=str(run.out / "tensorboard" / f"fold{k}")) as writer:
            hist, stopper = train_fold(model, train_loader, val_loader, device, epochs=p.epochs, lr=p.lr,
                                       weight_decay=p.weight_decay, patience=p.patience, min_delta=p.min_delta,
                                       class_weights=weights, input_dropout=p.input_dropout,
                                       label_smoothing=p.label_smoothing, writer=writer, desc=f"fold {k + 1}/{len(splits)}")
        history += [{"fold": k, **h} for h in hist]
        val_proba = predict_proba(model, val_loader, device)
        cv_proba[va] = val_proba
        fold_test = classification_metrics(ds.labels[test_rows], predict_proba(model, test_loader, device), ds.classes)
        fold_val = classification_metrics(ds.labels[va_rows], val_proba, ds.classes)
        fold_rows.append({"fold": k, "best_epoch": stopper.best_epoch, "epochs_run": len(hist),
                          **{f"val_{key}": v for key, v in fold_val.items()},
                          **{f"test_{key}": v for key, v in fold_test.items()}})
        members.append(model.cpu())

    ensemble = Ensemble(members).to(device).eval()
    test_proba = predict_proba(ensemble, test_loader, device)
    y_test = ds.labels[test_rows]
    test = classification_metrics(y_test, test_proba, ds.classes)
    cv = classification_metrics(ds.labels[train_rows], cv_proba, ds.classes)
    log.info("held-out test (%d samples): accuracy %.3f, macro-F1 %.3f, macro AUC %.3f", test["n"], test["accuracy"],
             test["macro_f1"], test["macro_auc"])

    out = run.out
    n_params = sum(t.numel() for t in members[0].parameters())
    spec = {"arch": p.arch, "in_channels": channels, "n_classes": n_classes, "classes": ds.classes,
            "image_shape": list(ds.images.shape[1:]), "pretrained": pretrained, "stem": stem,
            "input": "uint8 image / 255"}
    save_classifier(out, spec, members)
    pd.DataFrame(history).to_csv(out / "history.csv", index=False)
    pd.DataFrame(fold_rows).to_csv(out / "folds.csv", index=False)
    per_class_table(y_test, test_proba, ds.classes).to_csv(out / "per_class.csv", index=False)
    confusion_table(y_test, test_proba, ds.classes).to_csv(out / "confusion_matrix.csv")
    _predictions(ds, test_rows, test_proba).to_csv(out / "test_predictions.csv", index=False)
    _predictions(ds, train_rows, cv_proba).to_csv(out / "cv_predictions.csv", index=False)
    for name in ("pixel_genes.npz", "dataset.json"):
        if (pre / name).is_file():  # a transductive transform has no pixel->gene map
            shutil.copy2(pre / name, out / name)
    write_json_atomic(out / "metrics.json", {
        "model": p.arch, "protocol": f"{len(splits)}-fold CV on the training split, ensemble of fold models on the "
                                     "held-out test split", "test": test, "cv": cv,
        "folds": fold_rows, "n_parameters": n_params,
    })
    run.record(model={"arch": p.arch, "n_parameters": n_params, "input_shape": list(ds.images.shape[1:]),
                      "n_classes": n_classes, "members": len(members), "pretrained": pretrained})


def _predictions(ds, rows: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"sample": ds.samples["sample"].to_numpy()[rows], "label": ds.samples["label"].to_numpy()[rows],
                          "predicted": np.asarray(ds.classes)[proba.argmax(1)]})
    for c, name in enumerate(ds.classes):
        frame[f"p_{name}"] = proba[:, c]
    return frame


if __name__ == "__main__":
    raise SystemExit(main("train_torch", run))
