"""python -m stages.train_torch --config FILE: deep models and baselines on the same folds, held-out test.

Also runs under torchrun (DistributedDataParallel): ``torchrun --nproc-per-node 2 -m stages.train_torch ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shared.artifacts import StageRun
from shared.dataset import LAYOUTS
from shared.devices import describe_device
from shared.errors import UserError
from shared.evaluation.baselines import train_baseline
from shared.evaluation.metrics import classification_metrics
from shared.evaluation.results import ModelResult, fold_row, write_layouts_index, write_models_index, write_result
from shared.evaluation.splits import Protocol
from shared.frameworks import keep_out
from shared.logs import get_logger
from shared.models import (
    DENSE_PRESETS,
    Ensemble,
    build_model,
    cached_weights_file,
    check_input_size,
    save_classifier,
)
from shared.stage import main
from shared.torch_training import distributed
from shared.torch_training.fit import TrainSettings, predict_proba
from shared.torch_training.fold import FoldPlan, fit_fold

from .data import PreparedData, input_stats, load_prepared, make_loader
from .params import TrainTorch

log = get_logger("stages.train_torch")
IMAGE_PRETRAINABLE = {"resnet18", "efficientnet_b0"}


def model_spec(arch: str, settings: TrainTorch, data: PreparedData, own_dir: str, layout: str | None = None) -> dict:
    """What ``model.json`` records: the architecture and its options, the classes, and the input the model reads
    (paths relative to the experiment folder; ``scale`` turns the stored array into the model's input); on another
    ``layout`` of the genes, that layout's images and map."""
    shape = list(data.inputs(arch, layout).shape[1:])
    inp = data.source.model_input("vector" if arch == "dense" else "image", trainer=own_dir, gene_layout=layout)
    classes = data.source.classes
    spec = {"arch": arch, "input_shape": shape, "n_classes": len(classes), "classes": classes, "input": inp}
    if arch in IMAGE_PRETRAINABLE:
        spec["stem"] = settings.stem if settings.stem != "auto" else ("small" if min(shape[1:]) < 64 else "imagenet")
    if arch == "dense":
        spec["widths"] = (
            list(settings.dense_widths) if settings.dense_preset == "custom" else DENSE_PRESETS[settings.dense_preset]
        )
    if arch in ("dense", "small_cnn"):
        spec["dropout"] = settings.dropout
    return spec


class Run:
    """Everything shared by the models of one run: the protocol's rows, the data, device, outputs."""

    def __init__(self, stage: StageRun, settings: TrainTorch, data: PreparedData, dist: distributed.Dist):
        self.stage, self.settings, self.data, self.dist = stage, settings, data, dist
        self.proto = Protocol(
            data.source.samples,
            data.source.classes,
            settings.folds,
            settings.repeats,
            stage.exp.seed,
            key="train_torch.folds",
            small_classes_key=(data.source.info.get("small_classes") or {}).get("key"),
        )


@dataclass
class DeepSetup:
    """What every member of one deep model shares: its inputs, spec, whether it starts from ImageNet weights, the
    training settings and the held-out test loader."""

    inputs: np.ndarray
    spec: dict
    pretrained: bool
    training: TrainSettings
    test_loader: object


def deep_setup(ctx: Run, arch: str, layout: str | None = None) -> DeepSetup:
    """The inputs and spec of ``arch`` (on the main images, or on another ``layout``'s), its initialisation and
    training settings."""
    settings, data, dist, stage, proto = ctx.settings, ctx.data, ctx.dist, ctx.stage, ctx.proto
    inputs, labels = data.inputs(arch, layout), data.source.labels
    spec = model_spec(arch, settings, data, stage.stage, layout)
    pretrained = False
    if arch in IMAGE_PRETRAINABLE and settings.pretrained == "auto":
        pretrained = cached_weights_file(arch) is not None
        if not pretrained and layout is None:
            log.info(
                "no ImageNet weights for %s in the local torch cache (%s); random initialisation",
                arch,
                torch.hub.get_dir(),
            )
    spec["pretrained"] = pretrained
    if arch == "efficientnet_b0":
        spec["norm"] = settings.norm if settings.norm != "auto" else ("batch" if pretrained else "group")
    on_gpu = dist.device.type == "cuda"
    training = TrainSettings(
        epochs=settings.epochs,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        optimizer=settings.optimizer,
        schedule=settings.schedule,
        patience=settings.patience,
        min_delta=settings.min_delta,
        input_dropout=settings.input_dropout,
        mixed_precision=settings.mixed_precision and on_gpu,
        channels_last=settings.channels_last and on_gpu and inputs.ndim in (4, 5),
    )
    test_loader = make_loader(
        inputs, labels, proto.test_rows, settings.batch_size, num_workers=settings.num_workers, pin_memory=on_gpu
    )
    return DeepSetup(inputs, spec, pretrained, training, test_loader)


def fit_member(ctx: Run, setup: DeepSetup, desc: str, split, ckpt: Path, log_dir: Path | None):
    """One fold model of a deep model: trained on the split's training rows with early stopping on its validation
    rows, seeded by the experiment's seed and the split. Returns its ``FoldFit`` and the split's validation rows."""
    settings, dist, proto = ctx.settings, ctx.dist, ctx.proto
    inputs, spec, training, labels = setup.inputs, setup.spec, setup.training, ctx.data.source.labels
    on_gpu = dist.device.type == "cuda"
    r, k, tr, va = split
    tr_rows, va_rows = proto.fold_rows(tr, va)

    def build():
        mean, std = input_stats(inputs, tr_rows, spec["input"]["scale"])
        net = build_model(spec, mean, std, pretrained=setup.pretrained).to(dist.device)
        if training.channels_last:
            net = net.to(memory_format=torch.channels_last if inputs.ndim == 4 else torch.channels_last_3d)
        return net

    def loaders(sampler):
        common = dict(num_workers=settings.num_workers, pin_memory=on_gpu)
        return (
            make_loader(inputs, labels, tr_rows, settings.batch_size, sampler=sampler, **common),
            make_loader(inputs, labels, va_rows, settings.batch_size, **common),
        )

    plan = FoldPlan.of(
        settings,
        (r, k),
        ctx.stage.exp.seed,
        labels[tr_rows],
        proto.n_classes,
        desc=desc,
        checkpoint=ckpt,
        log_dir=log_dir,
    )
    return fit_fold(plan, build, loaders, setup.test_loader, training, dist), va_rows


def train_deep(ctx: Run, arch: str) -> ModelResult:
    settings, dist, stage, proto = ctx.settings, ctx.dist, ctx.stage, ctx.proto
    setup = deep_setup(ctx, arch)
    members, folds, history, cv = [], [], [], []
    for split in proto.splits:
        r, k = split[0], split[1]
        fit, va_rows = fit_member(
            ctx,
            setup,
            f"{arch} r{r} fold {k + 1}/{settings.folds}",
            split,
            stage.checkpoints / arch / f"r{r}k{k}.pt",
            stage.out / arch / "tensorboard" / f"r{r}k{k}",
        )
        history += [{"repeat": r, "fold": k, **h} for h in fit.history]
        cv.append(pd.DataFrame({"repeat": r, "fold": k, "row": va_rows, "proba": list(fit.val_proba)}))
        folds.append(
            fold_row(proto, r, k, va_rows, fit.val_proba, fit.test_proba, fit.stopper.best_epoch, len(fit.history))
        )
        members.append(fit.net)

    ensemble = Ensemble(members).to(dist.device).eval()
    test_proba = predict_proba(ensemble, setup.test_loader, dist.device)
    return ModelResult(
        name=arch,
        kind="deep",
        framework="torch",
        spec=setup.spec,
        folds=pd.DataFrame(folds),
        cv=cv,
        test_proba=test_proba,
        n_parameters=sum(t.numel() for t in members[0].parameters()),
        history=pd.DataFrame(history),
        pretrained=setup.pretrained,
        save=lambda folder: save_classifier(folder, setup.spec, members),
    )


def train_layout_member(ctx: Run, arch: str, layout: str) -> dict:
    """The layout-sensitivity check's model of ``arch`` on another ``layout`` of the genes: one member, trained
    exactly as the main model's first fold model (the same rows, seed and settings), so that the layout is the only
    difference between the two. Saved under ``layouts/<layout>/<arch>/`` with its map; returns its layouts.json
    entry (its held-out test metrics, and the first fold model's beside them)."""
    stage, proto = ctx.stage, ctx.proto
    setup = deep_setup(ctx, arch, layout)
    split = proto.splits[0]
    fit, _ = fit_member(
        ctx, setup, f"{arch} on layout {layout}", split, stage.checkpoints / LAYOUTS / layout / f"{arch}.pt", None
    )
    folder = f"{LAYOUTS}/{layout}/{arch}"
    if ctx.dist.is_main:
        (stage.out / folder).mkdir(parents=True, exist_ok=True)
        save_classifier(stage.out / folder, setup.spec, [fit.net])
    y_test = proto.labels[proto.test_rows]
    return {
        "name": f"{arch}@{layout}",
        "model": arch,
        "layout": layout,
        **{k: v for k, v in ctx.data.source.layouts()[layout].items() if k in ("seed", "embedding", "genes_moved")},
        "kind": "deep",
        "framework": "torch",
        "folder": folder,
        "input": setup.spec["input"],
        "member_of": {"repeat": int(split[0]), "fold": int(split[1])},
        "best_epoch": fit.stopper.best_epoch,
        "epochs_run": len(fit.history),
        "test": classification_metrics(y_test, fit.test_proba, proto.classes),
    }


def run(stage: StageRun) -> None:
    keep_out()  # TensorFlow never loads in a torch stage process (see shared/frameworks.py)
    exp = stage.exp
    settings: TrainTorch = exp.section("train_torch")
    pre = stage.provider("dataset")
    data = load_prepared(pre)
    dist = distributed.setup(exp.device)
    stage.device = describe_device(dist.device) + (f", {dist.world} processes" if dist.world > 1 else "")
    ctx = Run(stage, settings, data, dist)

    for arch in settings.models:  # every model fits its input before any trains
        check_input_size(model_spec(arch, settings, data, stage.stage), "train_torch")
    results = [train_deep(ctx, arch) for arch in settings.models]
    # the layout-sensitivity check (preprocess.layout_sensitivity): one member of each image model on each other
    # layout; vectors have no layout
    variants = [
        train_layout_member(ctx, arch, layout)
        for layout in data.source.layouts()
        for arch in settings.models
        if arch != "dense"
    ]
    if settings.baselines and dist.is_main:
        if data.vectors is None:
            raise UserError("train_torch.baselines need preprocess.save_vectors: true")
        results += [train_baseline(ctx.proto, name, data.vectors, exp.seed) for name in settings.baselines]
    if not dist.is_main:
        return
    summary = {
        r.name: write_result(stage.out, ctx.proto, r, settings.conformal_coverage, settings.conformal_by_class)
        for r in results
    }
    write_models_index(stage.out, results)
    data.source.copy_map_to(stage.out)
    if variants:
        for layout in data.source.layouts():
            data.source.copy_layout_map_to(layout, stage.out / LAYOUTS / layout)
        write_layouts_index(stage.out, variants)
        stage.record(layout_models={v["name"]: v["test"] for v in variants})
    stage.record(
        models={
            r.name: {
                "arch": r.spec["arch"],
                "n_parameters": r.n_parameters,
                "input_shape": r.spec.get("input_shape"),
                "kind": r.kind,
            }
            for r in results
        },
        arguments=settings.model_dump(mode="json"),
        headline={k: v["test"] for k, v in summary.items()},
    )


if __name__ == "__main__":
    raise SystemExit(main("train_torch", run))
