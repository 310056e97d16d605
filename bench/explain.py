"""Explanation speed: explain's batched saliency beside the references' one-sample-at-a-time loop, in one run.

``python -m bench.explain [--arch resnet18] [--samples 199] [--size 16] [--batch 64] [--repeats 3]``

Both compute the same attributions (captum Saliency of the true class) of the same model (shared.models.
build_model, ResNet-18 with the demo's stem, random weights: speed does not depend on them) on the same uint8
images: ours through ``stages.explain.attributions.attribute_batched`` (batches on the device), the reference as
the prior art did, one sample per call. Reported: samples per second (best of ``--repeats``, the two sides timed
in turn: ``bench.measure.alternate``), their ratio (``explain_speedup_vs_per_sample_loop``), a check that both
give the same attributions, the speed of saliency and of occlusion (forward passes only, windows of 3 every 2
pixels, 16 windows a pass, on ``--occlusion-samples``) with the model's weights in the layout explain loads them
in (``shared.models.inference_layout``: channels-last on a CPU) beside PyTorch's default contiguous layout, and,
when the demo has run, the time its explain stage spent on the deletion curves, the randomisation checks and the
stability checks per method and on the biology checks (``demo_biology_seconds``). Written
to ``outputs/bench/explain.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from shared.artifacts import write_json_atomic
from shared.models import build_model, inference_layout
from stages.explain.attributions import attribute_batched, to_tensor
from stages.explain.methods import METHODS

from .figures import faster, row
from .measure import alternate, best_of

WHAT = "explain's batched saliency (batches of 64) on a ResNet-18 (16 x 16, the demo's stem) and 199 samples, on CPU."
REFERENCE = "the prior art's one-sample-at-a-time saliency loop (captum Saliency, one call per sample)"


def per_sample(model, images: np.ndarray, targets: np.ndarray, scale: float) -> np.ndarray:
    from captum.attr import Saliency

    saliency = Saliency(model)
    out = np.empty(images.shape, dtype=np.float32)
    for k in range(len(images)):
        x = to_tensor(images[k : k + 1], torch.device("cpu"), scale).requires_grad_(True)
        out[k] = saliency.attribute(x, target=int(targets[k]), abs=True).detach().numpy()[0]
    return out


def relative_differences(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Each sample's largest difference from the loop's map, as a fraction of the largest attribution. Not every
    sample need agree to rounding: where a ReLU's input lies within float rounding of zero, another kernel (batch
    size, weight layout) flips its gradient and that sample's map differs visibly (3 of 199 on the default run)."""
    scale = max(float(np.abs(ref).max()), 1e-30)
    return np.abs(ours - ref).reshape(len(ref), -1).max(axis=1) / scale


def layout_name(model) -> str:
    """channels-last or contiguous: the layout of the model's largest convolution weight."""
    weight = max((p for p in model.parameters() if p.ndim == 4), key=torch.Tensor.numel)
    return "contiguous" if weight.is_contiguous() else "channels-last"


def batched(method: str, model, images: np.ndarray, targets: np.ndarray, batch: int, scale: float):
    """A call of explain's batched attribution by ``method`` on the CPU, to be timed."""
    return lambda: attribute_batched(
        METHODS[method](model), images, targets, torch.device("cpu"), batch, "bench", scale=scale
    )


def layout_speeds(contiguous, model, images, targets, scale: float, args, saliency_s: float) -> dict:
    """Samples/s of saliency and occlusion with the weights contiguous and in explain's inference layout
    (``model``); ``saliency_s``: the inference layout's saliency time on every sample, measured already."""

    def attribute(method, net, n):
        return batched(method, net, images[:n], targets[:n], args.batch, scale)

    n, n_occ = len(images), min(args.occlusion_samples, len(images))
    saliency_c = best_of(attribute("saliency", contiguous, n), args.repeats)[0]
    (occlusion_c, _, _), (occlusion_l, _, _) = alternate(
        attribute("occlusion", contiguous, n_occ), attribute("occlusion", model, n_occ), args.repeats
    )
    runs = {"saliency": (n, saliency_c, saliency_s), "occlusion": (n_occ, occlusion_c, occlusion_l)}
    return {
        method: {
            "samples": samples,
            "contiguous_samples_per_s": samples / contiguous_s,
            "inference_layout_samples_per_s": samples / layout_s,
            "speedup": contiguous_s / layout_s,
        }
        for method, (samples, contiguous_s, layout_s) in runs.items()
    }


def demo_trust_times(path: Path) -> dict | None:
    """Seconds the demo's explain spent on faithfulness and sanity per model and method (from its metrics.json)."""
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return {
        f"{m}/{k}": {
            "faithfulness_s": v.get("faithfulness", {}).get("seconds"),
            "sanity_s": v.get("sanity", {}).get("seconds"),
            "stability_s": v.get("stability", {}).get("seconds"),
        }
        for m, entry in doc["models"].items()
        for k, v in entry["methods"].items()
    }


def demo_biology(path: Path) -> dict | None:
    """Seconds the demo's explain spent on the biology checks (DE, keep/remove retraining, enrichment), per model
    and in all (from its metrics.json)."""
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    if "biology_seconds" not in doc:
        return None
    return {
        "total_s": doc["biology_seconds"],
        **{m: e["biology"]["seconds"] for m, e in doc["models"].items() if "biology" in e},
        **({"baselines": doc["baselines_biology"]["seconds"]} if doc.get("baselines_biology") else {}),
    }


def headline(result: dict) -> list[dict]:
    """The Benchmarks page's rows: samples/s batched and one at a time (the 20x target), saliency and occlusion
    with the weights in explain's layout beside contiguous, and how closely batched and one at a time agree."""
    return [
        row(
            f"samples/s ({result['samples']} samples, batches of {result['batch_size']}, {result['device']})",
            round(result["ours_samples_per_s"]),
            round(result["per_sample_samples_per_s"]),
            f"{result['explain_speedup_vs_per_sample_loop']:.1f}x",
            "20x",
        ),
        *[
            row(
                f"{method} samples/s, weights in explain's layout ({result['inference_layout']}) beside contiguous "
                f"({v['samples']} samples)",
                round(v["inference_layout_samples_per_s"]),
                round(v["contiguous_samples_per_s"]),
                faster(v["speedup"]),
            )
            for method, v in result.get("layouts", {}).items()
        ],
        row(
            "agreement with the loop (largest difference, as a fraction of the largest attribution)",
            f"{result['max_relative_difference']:.1g}",
        ),
        row(
            "samples whose map matches the loop's to 1e-4 of the largest attribution",
            f"{result['samples_agreeing']:.0%}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--samples", type=int, default=199)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--occlusion-samples", type=int, default=40)
    parser.add_argument("--out", default="outputs/bench/explain.json")
    parser.add_argument("--demo", default="outputs/demo/explain/metrics.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    spec = {"arch": args.arch, "input_shape": [1, args.size, args.size], "n_classes": 5, "stem": "small"}
    contiguous = build_model(spec).eval()  # PyTorch's default layout, as the prior art ran
    model = inference_layout(copy.deepcopy(contiguous), spec, torch.device("cpu"))  # as explain loads it
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.samples, 1, args.size, args.size), dtype=np.uint8)
    targets = rng.integers(0, 5, size=args.samples)
    scale = 1 / 255
    (ours_s, _, ours), (ref_s, _, ref) = alternate(
        batched("saliency", model, images, targets, args.batch, scale),
        lambda: per_sample(contiguous, images, targets, scale),
        args.repeats,
    )
    relative = relative_differences(ours, ref)
    result = {
        "device": "cpu",
        "arch": args.arch,
        "image": [1, args.size, args.size],
        "samples": args.samples,
        "batch_size": args.batch,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "ours_samples_per_s": args.samples / ours_s,
        "per_sample_samples_per_s": args.samples / ref_s,
        "explain_speedup_vs_per_sample_loop": ref_s / ours_s,
        "max_abs_difference": float(np.abs(ours - ref).max()),
        "max_relative_difference": float(relative.max()),
        "samples_agreeing": float((relative <= 1e-4).mean()),  # the samples agreeing to 1e-4 (headline's row)
        "inference_layout": layout_name(model),
        "layouts": layout_speeds(contiguous, model, images, targets, scale, args, ours_s),
        "demo_trust_seconds": demo_trust_times(Path(args.demo)),
        "demo_biology_seconds": demo_biology(Path(args.demo)),
    }
    write_json_atomic(args.out, result)
    print(
        f"saliency on {args.samples} samples: batched {result['ours_samples_per_s']:.0f}/s, one at a time "
        f"{result['per_sample_samples_per_s']:.0f}/s: {result['explain_speedup_vs_per_sample_loop']:.1f}x "
        f"(largest difference {result['max_relative_difference']:.2g} of the largest attribution)"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
