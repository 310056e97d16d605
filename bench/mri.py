"""Memory of one training step of train_3d_mri's EfficientNet-3D: frozen (the reference's low-memory strategy) vs
full fine-tuning, at the same input size, in one run.

``python -m bench.mri [--model efficientnet-b0] [--size 128] [--batch 2] [--trainable-blocks 2]``

Each variant runs in a fresh process (so one's allocations cannot hide the other's): the network (the stage's
``EfficientNet3d`` with ``freeze``), AdamW over the trainable parameters, a random batch, then training steps
(forward, focal loss, backward, optimiser step). Peak memory: on a GPU, CUDA's max allocated bytes during a second
step above what was allocated before it; on CPU, the peak resident set size (sampled every 2 ms from /proc) during
the first step above the RSS before it (the C allocator would serve a second step from memory the first freed).
Written to ``outputs/bench/mri.json`` with
``peak_memory_ratio_frozen_vs_full`` and ``trainable_params_ratio_frozen_vs_full`` (target: memory <= 1/3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from shared.artifacts import write_json_atomic

from .figures import row

WHAT = (
    "Training steps of train_3d_mri's EfficientNet-B0 at the reference's input (2 x 4 x 128^3), frozen (the last 2 "
    "of 7 block stages and the head train) against full fine-tuning, each in a fresh process (CPU: peak RSS during "
    "the first step; GPU: CUDA's max allocated bytes)."
)
REFERENCE = "full fine-tuning of the same network"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one_step(model: str, size: int, batch: int, trainable_blocks: int | None, device: str) -> dict:
    """Measure one training step in this process (called in a child by ``main``)."""
    from shared.frameworks import keep_out

    keep_out()
    import torch

    from shared.models3d import EfficientNet3d, trainable_parameters
    from shared.torch_training.losses import FocalLoss

    torch.manual_seed(0)
    dev = torch.device(device)
    net = EfficientNet3d(model)
    net.freeze(trainable_blocks, keep_statistics=trainable_blocks is not None)
    net = net.to(dev).train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = FocalLoss(2.0)
    x = torch.randn(batch, 4, size, size, size, device=dev)
    y = torch.arange(batch, device=dev) % 2

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    if dev.type == "cuda":
        step()  # warm-up: cuDNN's algorithm search and the optimiser state exist before the measured step
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() - before
        kind = "cuda max allocated during the second step above the allocation before it"
    else:
        # On CPU the first step is measured from the RSS before it: the C allocator keeps memory freed by one step
        # for the next, so a second step's RSS growth would understate what training needs. The first step's peak
        # holds the activations, the gradients and the optimiser state; its time is the second step's.
        before = _rss()
        samples = [before]
        done = threading.Event()

        def watch():
            while not done.is_set():
                samples.append(_rss())
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        step()
        done.set()
        watcher.join()
        peak = max(samples) - before
        t0 = time.perf_counter()
        step()
        seconds = time.perf_counter() - t0
        kind = "peak resident set size during the first step above the RSS before it (sampled every 2 ms)"
    return {
        "trainable_blocks": trainable_blocks,
        "trainable_params": trainable_parameters(net),
        "total_params": sum(p.numel() for p in net.parameters()),
        "peak_step_memory_bytes": int(peak),
        "memory_measure": kind,
        "step_seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mri", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-b0")
    parser.add_argument("--size", type=int, default=128, help="input voxels per side (128: the reference)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--trainable-blocks", type=int, default=2, help="the frozen variant's trainable stages")
    parser.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    parser.add_argument("--out", default=str(Path(os.environ.get("ONCOXAI_OUTPUTS", "outputs")) / "bench" / "mri.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        blocks = None if args.child == "full" else int(args.child)
        print(json.dumps(one_step(args.model, args.size, args.batch, blocks, args.device)))
        return 0
    results = {}
    for name, blocks in (("frozen", str(args.trainable_blocks)), ("full", "full")):
        cmd = [
            sys.executable,
            "-m",
            "bench.mri",
            "--model",
            args.model,
            "--size",
            str(args.size),
            "--batch",
            str(args.batch),
            "--device",
            args.device,
            "--child",
            blocks,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{name}: {results[name]['trainable_params']:,} trainable parameters, "
            f"{results[name]['peak_step_memory_bytes'] / 2**20:.0f} MiB step memory, "
            f"{results[name]['step_seconds']:.2f} s per step"
        )
    frozen, full = results["frozen"], results["full"]
    out = {
        "model": args.model,
        "input": [args.batch, 4, args.size, args.size, args.size],
        "device": args.device,
        "frozen": frozen,
        "full": full,
        "peak_memory_ratio_frozen_vs_full": frozen["peak_step_memory_bytes"] / full["peak_step_memory_bytes"],
        "trainable_params_ratio_frozen_vs_full": frozen["trainable_params"] / full["trainable_params"],
        "step_time_ratio_frozen_vs_full": frozen["step_seconds"] / full["step_seconds"],
        "target": "peak memory frozen <= 1/3 of full",
    }
    out["target_met"] = out["peak_memory_ratio_frozen_vs_full"] <= 1 / 3
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, out)
    print(
        f"frozen / full: memory {out['peak_memory_ratio_frozen_vs_full']:.3f}, trainable parameters "
        f"{out['trainable_params_ratio_frozen_vs_full']:.3f} -> {args.out}"
    )
    return 0


def headline(result: dict) -> list[dict]:
    """The Benchmarks page's rows: a training step's memory (the <= 1/3 target), trainable parameters and step
    time, frozen beside full fine-tuning."""
    frozen, full = result["frozen"], result["full"]
    shape = " x ".join(str(n) for n in result["input"])
    return [
        row(
            f"step memory (MiB; {result['model']}, input {shape}, {result['device']})",
            round(frozen["peak_step_memory_bytes"] / 2**20),
            round(full["peak_step_memory_bytes"] / 2**20),
            round(result["peak_memory_ratio_frozen_vs_full"], 3),
            "≤ 1/3",
        ),
        row(
            "trainable parameters",
            f"{frozen['trainable_params'] / 1e6:.2f} M",
            f"{full['trainable_params'] / 1e6:.2f} M",
            round(result["trainable_params_ratio_frozen_vs_full"], 3),
        ),
        row(
            "step time (s)",
            frozen["step_seconds"],
            full["step_seconds"],
            round(result["step_time_ratio_frozen_vs_full"], 2),
        ),
    ]


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
