"""python -m stages.train_torch --config FILE: deep models and baselines on the same folds, held-out test.

Also runs under torchrun (DistributedDataParallel): ``torchrun --nproc-per-node 2 -m stages.train_torch ...``.
"""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from shared.artifacts import StageRun, write_json_atomic
from shared.devices import describe_device
from shared.errors import UserError
from shared.logs import get_logger
from shared.models import DENSE_PRESETS, Ensemble, build_model, cached_weights_file, save_classifier
from shared.stage import main

from . import distributed
from .baselines import fit_predict
from .compare import compare_models
from .data import (EpochShuffle, PreparedData, class_balanced_weights, input_stats, load_prepared, make_loader,
                   with_augmented)
from .fit import TrainSettings, predict_proba, train_fold
from .losses import balanced_weights, make_loss
from .metrics import (classification_metrics, confusion_table, mean_confusion, per_class_table, roc_table)
from .params import TrainTorch

log = get_logger("stages.train_torch")
IMAGE_PRETRAINABLE = {"resnet18", "efficientnet_b0"}


def fold_splits(labels: np.ndarray, groups: np.ndarray | None, folds: int, repeats: int, seed: int):
    """[(repeat, fold, train_idx, val_idx)]: stratified (group-aware when groups exist) k-fold, repeated with new
    shuffles."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < folds:
        raise UserError(f"class index {classes[counts.argmin()]} has {counts.min()} training samples, fewer than "
                        f"train_torch.folds={folds}; lower the folds")
    if groups is not None and len(np.unique(groups)) < folds:
        raise UserError(f"{len(np.unique(groups))} training groups, fewer than train_torch.folds={folds}")
    out = []
    for r in range(repeats):
        splitter = (StratifiedGroupKFold(folds, shuffle=True, random_state=seed + r) if groups is not None
                    else StratifiedKFold(folds, shuffle=True, random_state=seed + r))
        for k, (tr, va) in enumerate(splitter.split(labels, labels, groups)):
            out.append((r, k, tr, va))
    return out


def model_spec(arch: str, p: TrainTorch, data: PreparedData) -> dict:
    shape = list(data.inputs(arch).shape[1:])
    spec = {"arch": arch, "input_shape": shape, "n_classes": len(data.classes), "classes": data.classes,
            "input": "float32 vector" if arch == "dense" else "uint8 image / 255"}
    if arch in IMAGE_PRETRAINABLE:
        spec["stem"] = p.stem if p.stem != "auto" else ("small" if min(shape[1:]) < 64 else "imagenet")
    if arch == "dense":
        spec["widths"] = list(p.dense_widths) if p.dense_preset == "custom" else DENSE_PRESETS[p.dense_preset]
    if arch in ("dense", "small_cnn"):
        spec["dropout"] = p.dropout
    return spec


class Protocol:
    """Everything shared by the models of one run: data, folds, test rows, device, outputs."""

    def __init__(self, run: StageRun, p: TrainTorch, data: PreparedData, dist: distributed.Dist):
        self.run, self.p, self.data, self.dist = run, p, data, dist
        original = data.samples["augmented_from"].to_numpy() == ""
        self.train_rows = np.flatnonzero((data.split == "train") & original)
        self.test_rows = np.flatnonzero(data.split == "test")
        groups = None if data.groups is None else data.groups[self.train_rows]
        self.splits = fold_splits(data.labels[self.train_rows], groups, p.folds, p.repeats, run.exp.seed)
        self.n_classes = len(data.classes)

    def fold_rows(self, tr, va):
        return with_augmented(self.data.samples, self.train_rows[tr]), self.train_rows[va]

    @property
    def sizes(self) -> tuple[float, float]:
        return (float(np.mean([len(tr) for _, _, tr, _ in self.splits])),
                float(np.mean([len(va) for _, _, _, va in self.splits])))


def train_deep(proto: Protocol, arch: str) -> dict:
    p, data, dist, run = proto.p, proto.data, proto.dist, proto.run
    seed = run.exp.seed
    inputs = data.inputs(arch)
    spec = model_spec(arch, p, data)
    pretrained = False
    if arch in IMAGE_PRETRAINABLE and p.pretrained == "auto":
        pretrained = cached_weights_file(arch) is not None
        if not pretrained:
            log.info("no ImageNet weights for %s in the local torch cache (%s); random initialisation", arch,
                     torch.hub.get_dir())
    spec["pretrained"] = pretrained
    on_gpu = dist.device.type == "cuda"
    s = TrainSettings(epochs=p.epochs, lr=p.lr, weight_decay=p.weight_decay, optimizer=p.optimizer,
                      schedule=p.schedule, patience=p.patience, min_delta=p.min_delta, input_dropout=p.input_dropout,
                      mixed_precision=p.mixed_precision and on_gpu,
                      channels_last=p.channels_last and on_gpu and inputs.ndim == 4)
    test_loader = make_loader(inputs, data.labels, proto.test_rows, p.batch_size, num_workers=p.num_workers,
                              pin_memory=on_gpu)
    from torch.utils.tensorboard import SummaryWriter

    members, folds, history, cv, test_folds = [], [], [], [], []
    for r, k, tr, va in proto.splits:
        tr_rows, va_rows = proto.fold_rows(tr, va)
        fold_seed = seed + 1000 * r + k
        torch.manual_seed(fold_seed)
        mean, std = input_stats(inputs, tr_rows)
        net = build_model(spec, mean, std, pretrained=pretrained).to(dist.device)
        if s.channels_last:
            net = net.to(memory_format=torch.channels_last)
        model = dist.wrap(net)
        weights = balanced_weights(data.labels[tr_rows], proto.n_classes) if p.class_weights == "balanced" else None
        loss_fn = make_loss(p.loss, weights, p.label_smoothing, p.focal_gamma).to(dist.device)
        sampler = EpochShuffle(len(tr_rows), fold_seed, p.batch_size, rank=dist.rank, world=dist.world,
                               weights=class_balanced_weights(data.labels[tr_rows], proto.n_classes)
                               if p.sampler == "weighted" else None)
        train_loader = make_loader(inputs, data.labels, tr_rows, p.batch_size, sampler=sampler,
                                   num_workers=p.num_workers, pin_memory=on_gpu)
        val_loader = make_loader(inputs, data.labels, va_rows, p.batch_size, num_workers=p.num_workers,
                                 pin_memory=on_gpu)
        ckpt = run.checkpoints / arch / f"r{r}k{k}.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(run.out / arch / "tensorboard" / f"r{r}k{k}")) if dist.is_main else None
        try:
            hist, stopper = train_fold(model, train_loader, val_loader, dist.device, s, loss_fn, checkpoint=ckpt,
                                       writer=writer, desc=f"{arch} r{r} fold {k + 1}/{p.folds}", reduce=dist.reduce,
                                       is_main=dist.is_main)
        finally:
            if writer is not None:
                writer.close()
        distributed.barrier()
        val_proba = predict_proba(net, val_loader, dist.device, s.channels_last, s.mixed_precision)
        test_proba = predict_proba(net, test_loader, dist.device, s.channels_last, s.mixed_precision)
        history += [{"repeat": r, "fold": k, **h} for h in hist]
        cv.append(pd.DataFrame({"repeat": r, "fold": k, "row": va_rows, "proba": list(val_proba)}))
        test_folds.append(test_proba)
        folds.append(_fold_row(r, k, stopper.best_epoch, len(hist), data, va_rows, val_proba, test_proba, proto))
        members.append(net.float().cpu().to(memory_format=torch.contiguous_format))

    ensemble = Ensemble(members).to(dist.device).eval()
    test_proba = predict_proba(ensemble, test_loader, dist.device)
    n_params = sum(t.numel() for t in members[0].parameters())
    result = {"name": arch, "kind": "deep", "spec": spec, "n_parameters": n_params, "members": members,
              "history": pd.DataFrame(history), "folds": pd.DataFrame(folds), "cv": cv, "test_proba": test_proba}
    return result


def train_baseline(proto: Protocol, name: str) -> dict:
    data, seed = proto.data, proto.run.exp.seed
    if data.vectors is None:
        raise UserError("train_torch.baselines need preprocess.save_vectors: true")
    X = data.vectors
    X_test = np.asarray(X[proto.test_rows])
    folds, cv, test_folds = [], [], []
    for r, k, tr, va in proto.splits:
        tr_rows, va_rows = proto.fold_rows(tr, va)
        val_proba, test_proba = fit_predict(name, np.asarray(X[np.sort(tr_rows)]), data.labels[np.sort(tr_rows)],
                                            [np.asarray(X[va_rows]), X_test], proto.n_classes, seed + 1000 * r + k)
        cv.append(pd.DataFrame({"repeat": r, "fold": k, "row": va_rows, "proba": list(val_proba)}))
        test_folds.append(test_proba)
        folds.append(_fold_row(r, k, None, None, data, va_rows, val_proba, test_proba, proto))
        log.info("%s r%d fold %d: val macro-F1 %.3f", name, r, k + 1, folds[-1]["val_macro_f1"])
    return {"name": name, "kind": "baseline", "spec": {"arch": name, "input": "float32 vector"}, "n_parameters": None,
            "members": [], "history": None, "folds": pd.DataFrame(folds), "cv": cv,
            "test_proba": np.mean(test_folds, axis=0)}


def _fold_row(r, k, best_epoch, epochs_run, data, va_rows, val_proba, test_proba, proto) -> dict:
    fold_val = classification_metrics(data.labels[va_rows], val_proba, data.classes)
    fold_test = classification_metrics(data.labels[proto.test_rows], test_proba, data.classes)
    return {"repeat": r, "fold": k, "best_epoch": best_epoch, "epochs_run": epochs_run,
            **{f"val_{key}": v for key, v in fold_val.items()}, **{f"test_{key}": v for key, v in fold_test.items()}}


def write_result(proto: Protocol, result: dict) -> dict:
    """Every output of one model under ``<out>/<name>/``; returns its headline metrics."""
    data, out = proto.data, proto.run.out / result["name"]
    out.mkdir(parents=True, exist_ok=True)
    y_test = data.labels[proto.test_rows]
    test = classification_metrics(y_test, result["test_proba"], data.classes)
    cv_frame = pd.concat(result["cv"], ignore_index=True)
    cv_tables = []
    for (r, k), g in cv_frame.groupby(["repeat", "fold"]):
        cv_tables.append(confusion_table(data.labels[g["row"].to_numpy()], np.stack(g["proba"]), data.classes))
    first = cv_frame[cv_frame["repeat"] == 0]
    cv_metrics = classification_metrics(data.labels[first["row"].to_numpy()], np.stack(first["proba"]), data.classes)
    if result["kind"] == "deep":
        save_classifier(out, result["spec"], result["members"])
        result["history"].to_csv(out / "history.csv", index=False)
    result["folds"].to_csv(out / "folds.csv", index=False)
    per_class_table(y_test, result["test_proba"], data.classes).to_csv(out / "per_class.csv", index=False)
    confusion_table(y_test, result["test_proba"], data.classes).to_csv(out / "confusion_matrix.csv")
    mean_confusion(cv_tables).to_csv(out / "confusion_matrix_cv_mean.csv")
    roc_table(y_test, result["test_proba"], data.classes).to_csv(out / "roc.csv", index=False)
    _predictions(data, proto.test_rows, result["test_proba"]).to_csv(out / "test_predictions.csv", index=False)
    cv_pred = _predictions(data, cv_frame["row"].to_numpy(), np.stack(cv_frame["proba"]))
    cv_pred.insert(0, "fold", cv_frame["fold"].to_numpy())
    cv_pred.insert(0, "repeat", cv_frame["repeat"].to_numpy())
    cv_pred.to_csv(out / "cv_predictions.csv", index=False)
    n_folds = proto.p.folds
    metrics = {"model": result["name"], "kind": result["kind"],
               "protocol": (f"{n_folds}-fold CV x {proto.p.repeats} on the training split (stratified"
                            f"{', group-aware' if data.groups is not None else ''}); the fold models' mean scored on "
                            "the held-out test split"),
               "test": test, "cv": cv_metrics, "folds": result["folds"].to_dict(orient="records"),
               "n_parameters": result["n_parameters"], "pretrained": result["spec"].get("pretrained", False)}
    write_json_atomic(out / "metrics.json", metrics)
    log.info("%s: held-out test (%d samples) accuracy %.3f, macro-F1 %.3f, macro AUC %.3f", result["name"], test["n"],
             test["accuracy"], test["macro_f1"], test["macro_auc"])
    return metrics


def _predictions(data, rows: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"sample": data.samples["sample"].to_numpy()[rows], "label": np.asarray(data.classes)[
        data.labels[rows]], "predicted": np.asarray(data.classes)[proba.argmax(1)]})
    for c, name in enumerate(data.classes):
        frame[f"p_{name}"] = proba[:, c]
    return frame


def comparisons(proto: Protocol, results: list[dict]) -> list[dict]:
    """Every pair of models over the same folds, on validation macro-F1."""
    n_train, n_val = proto.sizes
    out = []
    for a, b in itertools.combinations(results, 2):
        sa, sb = a["folds"]["val_macro_f1"].to_numpy(), b["folds"]["val_macro_f1"].to_numpy()
        out.append(compare_models(a["name"], b["name"], sa, sb, int(n_train), int(n_val), "validation macro-F1"))
    return out


def run(run: StageRun) -> None:
    exp = run.exp
    p: TrainTorch = exp.section("train_torch")
    pre = run.upstream("preprocess")
    data = load_prepared(pre)
    dist = distributed.setup(exp.device)
    run.device = describe_device(dist.device) + (f", {dist.world} processes" if dist.world > 1 else "")
    proto = Protocol(run, p, data, dist)

    results = [train_deep(proto, arch) for arch in p.models]
    results += [train_baseline(proto, name) for name in p.baselines] if dist.is_main else []
    if not dist.is_main:
        return
    summary = {r["name"]: write_result(proto, r) for r in results}
    comps = comparisons(proto, results)
    write_json_atomic(run.out / "comparison.json", comps)
    for c in comps:
        log.info("compare: %s", c["statement"])
    write_json_atomic(run.out / "models.json", [
        {"name": r["name"], "kind": r["kind"], "folder": r["name"], "input": r["spec"]["input"]} for r in results])
    for name in ("pixel_genes.npz", "dataset.json"):
        if (pre / name).is_file():  # a transductive transform has no pixel->gene map
            shutil.copy2(pre / name, run.out / name)
    run.record(models={r["name"]: {"arch": r["spec"]["arch"], "n_parameters": r["n_parameters"],
                                   "input_shape": r["spec"].get("input_shape"), "kind": r["kind"]} for r in results},
               arguments=p.model_dump(mode="json"), headline={k: v["test"] for k, v in summary.items()})


if __name__ == "__main__":
    raise SystemExit(main("train_torch", run))
