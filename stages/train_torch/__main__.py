"""python -m stages.train_torch --config FILE: deep models and baselines on the same folds, held-out test.

Also runs under torchrun (DistributedDataParallel): ``torchrun --nproc-per-node 2 -m stages.train_torch ...``.
"""

from __future__ import annotations

import pandas as pd
import torch

from shared.artifacts import StageRun
from shared.devices import describe_device
from shared.errors import UserError
from shared.evaluation.baselines import train_baseline
from shared.evaluation.results import ModelResult, fold_row, write_models_index, write_result
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
from shared.torch_training.fit import FoldRecords, TrainSettings, predict_proba, train_fold
from shared.torch_training.losses import balanced_weights, make_loss
from shared.torch_training.sampling import EpochShuffle, class_balanced_weights

from .data import PreparedData, input_stats, load_prepared, make_loader
from .params import TrainTorch

log = get_logger("stages.train_torch")
IMAGE_PRETRAINABLE = {"resnet18", "efficientnet_b0"}


def model_spec(arch: str, settings: TrainTorch, data: PreparedData, own_dir: str) -> dict:
    """What ``model.json`` records: the architecture and its options, the classes, and the input the model reads
    (paths relative to the experiment folder; ``scale`` turns the stored array into the model's input)."""
    shape = list(data.inputs(arch).shape[1:])
    inp = data.source.model_input("vector" if arch == "dense" else "image", trainer=own_dir)
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


def train_deep(ctx: Run, arch: str) -> ModelResult:
    settings, data, dist, stage, proto = ctx.settings, ctx.data, ctx.dist, ctx.stage, ctx.proto
    seed = stage.exp.seed
    inputs, labels = data.inputs(arch), data.source.labels
    spec = model_spec(arch, settings, data, stage.stage)
    pretrained = False
    if arch in IMAGE_PRETRAINABLE and settings.pretrained == "auto":
        pretrained = cached_weights_file(arch) is not None
        if not pretrained:
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
    from torch.utils.tensorboard import SummaryWriter

    members, folds, history, cv = [], [], [], []
    for r, k, tr, va in proto.splits:
        tr_rows, va_rows = proto.fold_rows(tr, va)
        fold_seed = seed + 1000 * r + k
        torch.manual_seed(fold_seed)
        mean, std = input_stats(inputs, tr_rows, spec["input"]["scale"])
        net = build_model(spec, mean, std, pretrained=pretrained).to(dist.device)
        if training.channels_last:
            net = net.to(memory_format=torch.channels_last if inputs.ndim == 4 else torch.channels_last_3d)
        model = dist.wrap(net)
        weights = balanced_weights(labels[tr_rows], proto.n_classes) if settings.class_weights == "balanced" else None
        loss_fn = make_loss(settings.loss, weights, settings.label_smoothing, settings.focal_gamma).to(dist.device)
        sampler = EpochShuffle(
            len(tr_rows),
            fold_seed,
            settings.batch_size,
            rank=dist.rank,
            world=dist.world,
            weights=class_balanced_weights(labels[tr_rows], proto.n_classes)
            if settings.sampler == "weighted"
            else None,
        )
        train_loader = make_loader(
            inputs,
            labels,
            tr_rows,
            settings.batch_size,
            sampler=sampler,
            num_workers=settings.num_workers,
            pin_memory=on_gpu,
        )
        val_loader = make_loader(
            inputs, labels, va_rows, settings.batch_size, num_workers=settings.num_workers, pin_memory=on_gpu
        )
        ckpt = stage.checkpoints / arch / f"r{r}k{k}.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(stage.out / arch / "tensorboard" / f"r{r}k{k}")) if dist.is_main else None
        try:
            hist, stopper = train_fold(
                model,
                train_loader,
                val_loader,
                loss_fn,
                training,
                dist,
                FoldRecords(f"{arch} r{r} fold {k + 1}/{settings.folds}", ckpt, writer),
            )
        finally:
            if writer is not None:
                writer.close()
        distributed.barrier()
        val_proba = predict_proba(net, val_loader, dist.device, training.channels_last, training.mixed_precision)
        test_proba = predict_proba(net, test_loader, dist.device, training.channels_last, training.mixed_precision)
        history += [{"repeat": r, "fold": k, **h} for h in hist]
        cv.append(pd.DataFrame({"repeat": r, "fold": k, "row": va_rows, "proba": list(val_proba)}))
        folds.append(fold_row(proto, r, k, va_rows, val_proba, test_proba, stopper.best_epoch, len(hist)))
        members.append(net.float().cpu().to(memory_format=torch.contiguous_format))

    ensemble = Ensemble(members).to(dist.device).eval()
    test_proba = predict_proba(ensemble, test_loader, dist.device)
    return ModelResult(
        name=arch,
        kind="deep",
        framework="torch",
        spec=spec,
        folds=pd.DataFrame(folds),
        cv=cv,
        test_proba=test_proba,
        n_parameters=sum(t.numel() for t in members[0].parameters()),
        history=pd.DataFrame(history),
        pretrained=pretrained,
        save=lambda folder: save_classifier(folder, spec, members),
    )


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
