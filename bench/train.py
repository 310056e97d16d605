"""Training throughput of train_torch beside a plain hand-written torchvision loop, in one run.

``python -m bench.train [--arch resnet18] [--samples 2048] [--size 32] [--batches 20]``

Both train the same model (shared.models.build_model, the same spec and seed) on the same uint8 images for the
same number of batches. Ours: the stage's data path (memory-mapped .npy -> MemmapRows -> DataLoader with the
per-epoch sampler) and its ``run_epoch`` (input scaling on the device, input dropout, AMP/channels-last on a GPU).
Plain: the images already in memory as one float tensor, ``TensorDataset`` + ``DataLoader(shuffle=True)``, and
the textbook ``zero_grad / forward / backward / step``. Reported: images per second (best of ``--repeats``) and
their ratio, written to ``outputs/bench/train.json`` (key ``throughput_ratio_vs_plain_loop``), with a GPU entry
when CUDA is available. ``dense``: the same comparison for the dense network (``dense_preset: small``) on float32
expression vectors of ``--dense-genes`` genes (default 2,000 and 20,000), in samples per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shared.artifacts import write_json_atomic
from shared.models import build_model
from shared.torch_training.fit import TrainSettings, run_epoch
from shared.torch_training.sampling import EpochShuffle
from stages.train_torch.data import make_loader

from .figures import count, row

WHAT = (
    "Training throughput of train_torch's data path and epoch loop (memory-mapped inputs, the per-epoch sampler, "
    "run_epoch) on a ResNet-18 over uint8 images (32 x 32, batch 64, CPU; on a GPU the same comparison runs with "
    "mixed precision and channels-last), and on the dense network (dense_preset small, 512 -> 128 -> classes) over "
    "float32 expression vectors (2,048 samples, batch 64)."
)
REFERENCE = (
    "a plain hand-written loop (TensorDataset, DataLoader, zero_grad / forward / backward / step) on the same model "
    "and data"
)
ARCH_NAMES = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50", "small_cnn": "small CNN"}


def _data(n: int, size: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    images = rng.integers(0, 256, size=(n, 1, size, size), dtype=np.uint8)
    return images, labels.astype(np.int64)


def _ours(model, images_path: Path, labels, batch: int, device, settings: TrainSettings) -> float:
    images = np.load(images_path, mmap_mode="r")
    sampler = EpochShuffle(len(labels), 0, batch)
    loader = make_loader(
        images, labels, np.arange(len(labels)), batch, sampler=sampler, pin_memory=device.type == "cuda"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    _sync(device)
    start = time.perf_counter()
    run_epoch(model, loader, device, loss_fn, optimizer, settings=settings)
    _sync(device)
    return len(labels) / (time.perf_counter() - start)


def _plain(model, images: np.ndarray, labels, batch: int, device) -> float:
    x = torch.from_numpy(images).float()
    data = TensorDataset(x.div(255.0) if images.dtype == np.uint8 else x, torch.from_numpy(labels))
    loader = DataLoader(data, batch_size=batch, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    _sync(device)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    _sync(device)
    return len(labels) / (time.perf_counter() - start)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, arch: str, n: int, size: int, batch: int, repeats: int) -> dict:
    images, labels = _data(n, size, 5)
    spec = {"arch": arch, "input_shape": [1, size, size], "n_classes": 5, "stem": "small" if size < 64 else "imagenet"}
    result = _compare(device, spec, images, labels, batch, repeats)
    return {
        "device": str(device),
        "arch": arch,
        "samples": n,
        "image": [1, size, size],
        "batch_size": batch,
        "ours_images_per_s": result["ours"],
        "plain_images_per_s": result["plain"],
        "throughput_ratio_vs_plain_loop": result["ours"] / result["plain"],
        "repeats": repeats,
        "ours_mixed_precision_channels_last": device.type == "cuda",
    }


def measure_dense(device: torch.device, n_genes: int, n: int, batch: int, repeats: int, preset: str = "small") -> dict:
    """The dense network (train_torch's ``dense_preset``) on float32 expression vectors of ``n_genes`` genes."""
    from shared.models import DENSE_PRESETS

    rng = np.random.default_rng(0)
    vectors = rng.random((n, n_genes), dtype=np.float32)
    labels = rng.integers(0, 5, size=n).astype(np.int64)
    spec = {"arch": "dense", "input_shape": [n_genes], "n_classes": 5, "widths": DENSE_PRESETS[preset]}
    result = _compare(device, spec, vectors, labels, batch, repeats)
    return {
        "device": str(device),
        "genes": n_genes,
        "samples": n,
        "preset": preset,
        "batch_size": batch,
        "ours_samples_per_s": round(result["ours"], 1),
        "plain_samples_per_s": round(result["plain"], 1),
        "throughput_ratio_vs_plain_loop": round(result["ours"] / result["plain"], 3),
    }


def _compare(device: torch.device, spec: dict, data: np.ndarray, labels: np.ndarray, batch: int, repeats: int) -> dict:
    """Best samples/s of the stage's loop and of the plain loop on the same model and data, interleaved."""
    on_gpu = device.type == "cuda"
    settings = TrainSettings(
        epochs=1, lr=1e-3, weight_decay=0, mixed_precision=on_gpu, channels_last=on_gpu and spec["arch"] != "dense"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inputs.npy"
        np.save(path, data)
        ours, plain = [], []
        for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
            torch.manual_seed(0)
            model = build_model(spec).to(device)
            if settings.channels_last:
                model = model.to(memory_format=torch.channels_last)
            ours.append(_ours(model, path, labels, batch, device, settings))
            torch.manual_seed(0)
            plain.append(_plain(build_model(spec).to(device), data, labels, batch, device))
    return {"ours": max(ours), "plain": max(plain)}


def headline(result: dict) -> list[dict]:
    """The Benchmarks page's rows: images/s of ours and the plain loop (CPU, and GPU when measured), then the dense
    network's samples/s at each gene count."""
    rows = []
    for key in ("cpu", "gpu"):
        r = result.get(key)
        if not r:
            continue
        h, w = r["image"][1:]
        where = "CPU" if key == "cpu" else f"{r.get('name', 'GPU')}, mixed precision, channels-last"
        rows.append(
            row(
                f"{ARCH_NAMES.get(r['arch'], r['arch'])} images/s ({h} x {w}, batch {r['batch_size']}, {where})",
                round(r["ours_images_per_s"]),
                round(r["plain_images_per_s"]),
                round(r["throughput_ratio_vs_plain_loop"], 2),
            )
        )
    for genes, r in sorted(result.get("dense", {}).items(), key=lambda kv: -int(kv[0])):
        rows.append(
            row(
                f"dense network ({r['preset']}) samples/s at {count(genes)} genes",
                round(r["ours_samples_per_s"]),
                round(r["plain_samples_per_s"]),
                round(r["throughput_ratio_vs_plain_loop"], 2),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-genes", default="2000,20000", help="gene counts for the dense network's throughput")
    parser.add_argument("--dense-samples", type=int, default=2048)
    parser.add_argument(
        "--out", default=os.path.join(os.environ.get("ONCOXAI_OUTPUTS", "outputs"), "bench", "train.json")
    )
    args = parser.parse_args(argv)
    cpu = measure(torch.device("cpu"), args.arch, args.samples, args.size, args.batch_size, args.repeats)
    result = {**cpu, "cpu": cpu, "cpu_threads": torch.get_num_threads()}
    result["dense"] = {
        g: measure_dense(torch.device("cpu"), int(g), args.dense_samples, args.batch_size, args.repeats)
        for g in args.dense_genes.split(",")
        if g
    }
    if torch.cuda.is_available():
        gpu = measure(torch.device("cuda"), args.arch, max(args.samples, 8192), args.size, 256, args.repeats)
        result["gpu"] = {**gpu, "name": torch.cuda.get_device_name(0)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    for key in ("cpu", "gpu"):
        if key in result:
            r = result[key]
            print(
                f"{key}: ours {r['ours_images_per_s']:.0f} img/s, plain loop {r['plain_images_per_s']:.0f} img/s, "
                f"ratio {r['throughput_ratio_vs_plain_loop']:.2f}"
            )
    for g, r in result["dense"].items():
        print(
            f"dense ({r['preset']}) at {g} genes: ours {r['ours_samples_per_s']:.0f} samples/s, plain loop "
            f"{r['plain_samples_per_s']:.0f} samples/s"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
