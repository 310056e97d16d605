"""python -m stages.train_3d_mri --config FILE: IDH status from 4-channel brain MRI with a partly frozen 3-D
EfficientNet (shared.models3d) and the shared protocol (held-out test patients). It provides the classifiers and
their volume dataset (shared.dataset: the exams on the model's grid, the brain and tumour masks, each exam's own
grid); explain computes the attributions (3-D Grad-CAM and the rest), scores them against the tumour mask and
returns them to each patient's space.

Also runs under torchrun (DistributedDataParallel): ``torchrun --nproc-per-node 2 -m stages.train_3d_mri ...``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader

from shared.artifacts import StageRun
from shared.dataset import SAMPLES, Dataset, write_info, write_samples
from shared.devices import describe_device
from shared.evaluation.results import ModelResult, fold_row, write_models_index, write_result
from shared.evaluation.splits import Protocol
from shared.frameworks import keep_out
from shared.logs import get_logger
from shared.models import Ensemble, save_classifier
from shared.stage import main
from shared.torch_training import distributed
from shared.torch_training.fit import TrainSettings, predict_proba
from shared.torch_training.fold import FoldPlan, fit_fold

from .cohort import CHANNELS, CLASSES, cohort_table, find_cohort, split_patients
from .params import Mri, Train3dMri

log = get_logger("stages.train_3d_mri")


def model_spec(settings: Train3dMri, mri: Mri, pretrained: bool) -> dict:
    return {
        "arch": settings.model,
        "channels": list(CHANNELS),
        "classes": list(CLASSES),
        "n_classes": len(CLASSES),
        "input_shape": [len(CHANNELS), *settings.size],
        "trainable_blocks": settings.trainable_blocks,
        "pretrained": pretrained,
        "input": {  # the dataset's files are added once written (Dataset.model_input)
            "kind": "volume",
            "spatial_dims": 3,
            "channels": list(CHANNELS),
            "size": list(settings.size),
            "spacing": settings.spacing,
            "orientation": "RAS (ToCanonical)",
            "layout": mri.layout,
            "normalisation": {"zscore": "z-score", "robust": "minus the median, over IQR / 1.349"}[
                settings.normalisation
            ]
            + " per channel inside the brain (voxels where any sequence is non-zero)",
        },
    }


def build_member(spec: dict, settings: Train3dMri, on_gpu: bool):
    from shared.models3d import build, load_pretrained  # MONAI: imported after keep_out (run)

    net = build({**spec, "pretrained": False})
    if settings.pretrained_weights:
        load_pretrained(net, settings.pretrained_weights)
    net.freeze(settings.trainable_blocks, keep_statistics=bool(settings.pretrained_weights))
    net.checkpointing = settings.gradient_checkpointing == "on" or (
        settings.gradient_checkpointing == "auto" and on_gpu
    )
    return net


def loader(data, labels, rows, batch_size: int, augment=None, sampler=None, pin: bool = False) -> DataLoader:
    from .volumes import Volumes

    per_rank = batch_size if sampler is None else max(1, batch_size // sampler.world)
    # training drops each epoch's incomplete last batch (a batch of one has nothing to normalise at the network's
    # 1-voxel stages); the per-epoch shuffle gives every patient its turn
    drop_last = sampler is not None and len(rows) > batch_size
    return DataLoader(
        Volumes(data, labels, rows, augment),
        batch_size=per_rank,
        sampler=sampler,
        shuffle=False,
        pin_memory=pin,
        drop_last=drop_last,
    )


def train(
    stage: StageRun, settings: Train3dMri, mri: Mri, data, samples: pd.DataFrame, dist
) -> tuple[ModelResult, list, Protocol]:
    from shared.models3d import trainable_parameters

    from .volumes import augmentation

    seed = stage.exp.seed
    proto = Protocol(
        samples,
        list(CLASSES),
        settings.folds,
        settings.repeats,
        seed,
        key="train_3d_mri.folds",
        validation_fraction=settings.validation_fraction,
    )
    on_gpu = dist.device.type == "cuda"
    spec = model_spec(settings, mri, bool(settings.pretrained_weights))
    training = TrainSettings(
        epochs=settings.epochs,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        optimizer="adamw",
        schedule="onecycle",
        patience=settings.patience,
        mixed_precision=settings.mixed_precision and on_gpu,
    )
    labels = proto.labels
    test_loader = loader(data, labels, proto.test_rows, settings.batch_size, pin=on_gpu)
    augment = augmentation(settings.augment)
    members, folds, history, cv = [], [], [], []
    for r, k, tr, va in proto.splits:
        tr_rows, va_rows = proto.fold_rows(tr, va)

        def build():
            net = build_member(spec, settings, on_gpu).to(dist.device)
            spec["trainable_parameters"] = trainable_parameters(net)
            return net

        def loaders(sampler, tr_rows=tr_rows, va_rows=va_rows):
            return (
                loader(data, labels, tr_rows, settings.batch_size, augment, sampler, pin=on_gpu),
                loader(data, labels, va_rows, settings.batch_size, pin=on_gpu),
            )

        plan = FoldPlan.of(
            settings,
            (r, k),
            seed,
            labels[tr_rows],
            len(CLASSES),
            desc=f"{settings.model} r{r} fold {k + 1}/{len(proto.splits)}",
            checkpoint=stage.checkpoints / settings.model / f"r{r}k{k}.pt",
            log_dir=stage.out / settings.model / "tensorboard" / f"r{r}k{k}",
        )
        fit = fit_fold(plan, build, loaders, test_loader, training, dist)
        history += [{"repeat": r, "fold": k, **h} for h in fit.history]
        cv.append(pd.DataFrame({"repeat": r, "fold": k, "row": va_rows, "proba": list(fit.val_proba)}))
        folds.append(
            fold_row(proto, r, k, va_rows, fit.val_proba, fit.test_proba, fit.stopper.best_epoch, len(fit.history))
        )
        members.append(fit.net)
    ensemble = Ensemble(members).to(dist.device).eval()
    test_proba = predict_proba(ensemble, test_loader, dist.device)
    result = ModelResult(
        name=settings.model,
        kind="deep",
        framework="torch",
        spec=spec,
        folds=pd.DataFrame(folds),
        cv=cv,
        test_proba=test_proba,
        n_parameters=sum(t.numel() for t in members[0].parameters()),
        history=pd.DataFrame(history),
        pretrained=bool(settings.pretrained_weights),
        save=lambda folder: save_classifier(folder, spec, members),
    )
    return result, members, proto


def run(stage: StageRun) -> None:
    keep_out()  # TensorFlow never loads in a torch stage process (see shared/frameworks.py); MONAI would import it
    exp = stage.exp
    mri: Mri = exp.section("mri")
    settings: Train3dMri = exp.section("train_3d_mri")
    from .volumes import prepare

    patients = find_cohort(mri)
    dist = distributed.setup(exp.device)
    stage.device = describe_device(dist.device) + (f", {dist.world} processes" if dist.world > 1 else "")
    t0 = time.time()
    data = prepare(
        patients,
        settings.size,
        settings.spacing,
        stage.checkpoints / f"volumes-rank{dist.rank}",
        mri.on_bad_volume,
        settings.normalisation,
    )
    log.info(
        "%d of %d exams in the model's grid %s in %.1f s",
        len(data.patients),
        len(patients),
        settings.size,
        time.time() - t0,
    )
    table = cohort_table(patients, Path(mri.root))
    counts = (
        table["status"]
        .str.replace(r"^bad volume: .*", "bad volume", regex=True)
        .str.replace(r"^no IDH value.*", "no IDH value", regex=True)
        .value_counts()
        .to_dict()
    )
    for status, n in counts.items():
        if status != "included":
            log.info("left out: %d exam%s (%s)", n, "s" if n > 1 else "", status)
    samples = split_patients(data.patients, settings.test_fraction, exp.seed)
    result, members, proto = train(stage, settings, mri, data, samples, dist)
    if not dist.is_main:
        return
    samples["tumour_mask"] = data.has_mask
    write_samples(stage.out / SAMPLES, samples)
    data.write_dataset(stage.out)
    table = table.merge(samples[["sample", "split"]].rename(columns={"sample": "exam"}), on="exam", how="left")
    table.to_csv(stage.out / "cohort.csv", index=False)
    cohort = {
        "found": len(patients),
        "included": int(counts.get("included", 0)),
        "left_out": {k: int(v) for k, v in counts.items() if k != "included"},
    }
    by_split = samples.groupby(["label", "split"]).size()
    write_info(
        stage.out,
        {
            "classes": list(CLASSES),
            "counts": {c: {s: int(by_split.get((c, s), 0)) for s in ("train", "test")} for c in CLASSES},
            "cohort": cohort,
        },
    )
    result.spec["input"] = Dataset.open(stage.out).model_input("volume", provider=stage.stage) | result.spec["input"]
    headline = write_result(stage.out, proto, result, settings.conformal_coverage, settings.conformal_by_class)
    write_models_index(stage.out, [result])
    stage.record(
        cohort=cohort,
        models={
            settings.model: {
                "arch": settings.model,
                "n_parameters": result.n_parameters,
                "trainable_parameters": result.spec["trainable_parameters"],
                "input_shape": result.spec["input_shape"],
                "kind": "deep",
            }
        },
        arguments=settings.model_dump(mode="json"),
        headline={settings.model: headline["test"]},
    )


if __name__ == "__main__":
    raise SystemExit(main("train_3d_mri", run))
