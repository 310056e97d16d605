"""The real preprocess stage on N synthetic cells read from a backed .h5ad: wall time and peak memory.

For each size a counts file is written chunk by chunk (``bench.h5ad``; kept and reused across runs), a config
naming it is generated (transform deepinsight at 64 x 64, all 2,000 genes, save_vectors false), and
``python -m stages.preprocess --config <config> --force`` runs in a child process with its outputs under
``outputs/bench/million/runs`` (``ONCOXAI_OUTPUTS``). The child's peak RSS is the kernel's ``ru_maxrss`` of that
one child (``os.wait4``, through the small launcher of ``bench.measure``), cross-checked by sampling
``/proc/<pid>/status`` while it runs. The images are checked to open as a memory map with the expected shape;
they are then deleted unless ``keep_outputs`` (the inputs stay: remove ``outputs/bench/million`` to free them).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import yaml

from .h5ad import input_facts, verify_backed, write_counts_h5ad
from .measure import measure

REPO = Path(__file__).resolve().parent.parent


def stage_config(
    h5ad: Path, name: str, n_genes: int, size: int, embedding: str, discretization: str, chunk_size: int | None
) -> dict:
    preprocess = {
        "n_genes": n_genes,
        "height": size,
        "width": size,
        "transform": "deepinsight",
        "deepinsight": {"embedding": embedding, "discretization": discretization},
        "save_vectors": False,
    }
    if chunk_size:
        preprocess["chunk_size"] = chunk_size
    return {
        "name": name,
        "seed": 0,
        "device": "cpu",
        "stages": ["preprocess"],
        "expression": {"path": str(h5ad), "format": "h5ad", "label_key": "tumour_state", "group_key": "donor"},
        "preprocess": preprocess,
    }


def run_stage(
    config_path: Path, outputs_root: Path, log_path: Path, repo: Path = REPO, profile: Path | None = None
) -> dict:
    """Run the preprocess stage in a child process; return wall time, exit code and peak RSS of that child."""
    env = {
        **os.environ,
        "ONCOXAI_OUTPUTS": str(outputs_root),
        "ONCOXAI_PROGRESS": "0",
        "PYTHONPATH": os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p),
    }
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "stages.preprocess", "--config", str(config_path), "--force"]
    m = measure(cmd, Path(log_path), cwd=repo, env=env)
    log_text = Path(log_path).read_text()
    finished = re.search(r"finished in ([\d.]+) s", log_text)
    step = max(1, len(m["rss_timeline_kb"]) // 60)  # memory over the run, thinned to about 60 points
    return {
        "returncode": m["returncode"],
        "phases_s": phases(log_text),
        "seconds": round(m["seconds"], 2),
        "stage_reported_seconds": float(finished.group(1)) if finished else None,
        "peak_rss_gb": round(m["peak_rss_kb"] / 1024**2, 3),  # ru_maxrss of the child, kB on Linux
        "peak_rss_sampled_gb": round(m["peak_rss_sampled_kb"] / 1024**2, 3),
        "user_s": round(m["user_s"], 1),
        "sys_s": round(m["sys_s"], 1),
        "rss_timeline_gb": [(t, round(kb / 1024**2, 3)) for t, kb in m["rss_timeline_kb"][::step]],
        "log": str(log_path),
        "log_tail": [line[:300] for line in log_text.strip().splitlines()[-8:]],
    }


#: log lines (as the stage writes them today) that open each phase; a phase whose line is missing is None
_PHASES = (
    ("start", r"INFO read "),
    ("pass1_done", r"INFO kept \d+ genes"),
    ("layout_done", r"layout.*genes on \d+ of \d+ pixels"),
    ("finished", r"finished in [\d.]+ s"),
)


def phases(log_text: str) -> dict:
    """Seconds spent in each phase, from the stage's log timestamps (HH:MM:SS, so +-1 s): pass 1 (statistics
    over every cell), the layout fit (embedding and discretisation, independent of the number of cells), and
    pass 2 plus the final writes (normalise, scale, render, write every cell; samples.csv; manifest)."""
    stamps = {}
    for name, pattern in _PHASES:
        for line in log_text.splitlines():
            if re.search(pattern, line) and (t := re.match(r"(\d\d):(\d\d):(\d\d) ", line)):
                h, mi, se = (int(x) for x in t.groups())
                stamps[name] = h * 3600 + mi * 60 + se
                break
    if "start" not in stamps:
        return {}

    def span(a, b):
        if a not in stamps or b not in stamps:
            return None
        d = stamps[b] - stamps[a]
        return d + 86400 if d < 0 else d

    return {
        "pass1_statistics": span("start", "pass1_done"),
        "layout_fit": span("pass1_done", "layout_done"),
        "pass2_images_and_writes": span("layout_done", "finished"),
    }


def run_million(
    sizes=(100_000, 300_000, 1_000_000),
    n_genes: int = 2000,
    image: int = 64,
    embedding: str = "tsne",
    discretization: str = "lsa",
    chunk_size: int | None = None,
    root: Path = REPO / "outputs" / "bench" / "million",
    repo: Path = REPO,
    keep_outputs: bool = False,
    profile_cells: int | None = None,
    repeats: int = 1,
    log=print,
) -> dict:
    """Run the stage at each size (``repeats`` times: the fastest is kept, and the largest peak RSS); returns
    per-size facts plus a linear fit of time against cells."""
    root = Path(root)
    inputs, configs, runs = root / "inputs", root / "configs", root / "runs"
    for folder in (inputs, configs, runs):
        folder.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        h5ad = inputs / f"cells_{n}_x_{n_genes}.h5ad"
        entry: dict = {"n_cells": n}
        try:
            check = verify_backed(h5ad, n, n_genes) if h5ad.exists() else None
        except Exception:  # a truncated or foreign file: write it again
            check = None
        if check is None:
            log(f"writing {h5ad} ({n} cells x {n_genes} genes, chunked)")
            entry["input"] = write_counts_h5ad(h5ad, n, n_genes)
            check = verify_backed(h5ad, n, n_genes)
        else:
            entry["input"] = input_facts(h5ad)
        entry["input"].update(check)

        name = f"cells_{n}"
        cfg = stage_config(h5ad.resolve(), name, n_genes, image, embedding, discretization, chunk_size)
        cfg_path = configs / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        attempts = []
        for rep in range(repeats):
            log(
                f"running the preprocess stage on {n} cells ({cfg_path})"
                f"{f' [{rep + 1}/{repeats}]' if repeats > 1 else ''}"
            )
            suffix = "" if rep == 0 else f".r{rep + 1}"
            profile = root / f"{name}.prof" if profile_cells == n and rep == 0 else None
            run = run_stage(
                cfg_path.resolve(),
                runs.resolve(),
                (root / f"{name}{suffix}.log").resolve(),
                Path(repo),
                profile=profile.resolve() if profile else None,
            )
            if profile:
                run["profile"] = str(profile)
            out = runs / name / "preprocess"
            if run["returncode"] == 0:
                images = np.load(out / "images.npy", mmap_mode="r")
                run["images"] = {
                    "shape": list(images.shape),
                    "dtype": str(images.dtype),
                    "memory_mapped": True,
                    "bytes": (out / "images.npy").stat().st_size,
                    "first_image_nonzero_pixels": int(np.count_nonzero(images[0])),
                }
                del images
                if not keep_outputs:
                    (out / "images.npy").unlink()
                    run["images"]["deleted_after_check"] = True
            log(
                f"  {n} cells: rc {run['returncode']}, {run['seconds']:.1f} s "
                f"({run['seconds'] / n * 1e6:.1f} us/cell), "
                f"peak RSS {run['peak_rss_gb']:.2f} GB, phases {run['phases_s']}"
            )
            attempts.append(run)
            if run["returncode"] != 0:
                break
        # the fastest run's details; the largest peak of all runs (memory is not noisy the way time is)
        best = min(attempts, key=lambda r: (r["returncode"] != 0, r["seconds"]))
        entry.update(best)
        entry["peak_rss_gb"] = max(r["peak_rss_gb"] for r in attempts)
        entry["seconds_per_cell"] = entry["seconds"] / n
        if repeats > 1:
            entry["all_seconds"] = [r["seconds"] for r in attempts]
            entry["all_peak_rss_gb"] = [r["peak_rss_gb"] for r in attempts]
            entry["all_phases_s"] = [r["phases_s"] for r in attempts]
        results.append(entry)

    ok = [r for r in results if r["returncode"] == 0]
    summary: dict = {
        "sizes": results,
        "n_genes": n_genes,
        "image": [image, image],
        "embedding": embedding,
        "discretization": discretization,
        "chunk_size": chunk_size or "stage default",
        "repo": str(repo),
        "repeats": repeats,
    }
    if len(ok) >= 2:
        n = np.array([r["n_cells"] for r in ok], dtype=np.float64)
        t = np.array([r["seconds"] for r in ok])
        slope, intercept = np.polyfit(n, t, 1)
        fitted = slope * n + intercept
        per_cell = [
            r
            for r in ok
            if r["phases_s"].get("pass1_statistics") is not None
            and r["phases_s"].get("pass2_images_and_writes") is not None
        ]
        if len(per_cell) >= 2:  # the two passes over the cells alone, without the fixed layout fit
            nc = np.array([r["n_cells"] for r in per_cell], dtype=np.float64)
            tc = np.array(
                [r["phases_s"]["pass1_statistics"] + r["phases_s"]["pass2_images_and_writes"] for r in per_cell],
                dtype=np.float64,
            )
            summary["passes_over_cells"] = {
                "seconds": dict(zip([int(x) for x in nc], tc.tolist(), strict=False)),
                "microseconds_per_cell": dict(
                    zip([int(x) for x in nc], (tc / nc * 1e6).round(1).tolist(), strict=False)
                ),
            }
        summary["linear_fit"] = {
            "seconds_per_million_cells": slope * 1e6,
            "fixed_seconds": intercept,
            "max_relative_residual": float(np.max(np.abs(t - fitted) / t)),
            "note": "seconds = fixed + slope * cells; the fixed part is start-up and the layout fit (t-SNE on at "
            "most max_fit_samples training profiles, then lsa), which do not grow with the cells",
        }
    million = next((r for r in ok if r["n_cells"] == 1_000_000), None)
    summary["million_cells_seconds"] = million["seconds"] if million else None
    summary["million_cells_peak_rss_gb"] = million["peak_rss_gb"] if million else None
    if million is None and ok:
        largest = max(ok, key=lambda r: r["n_cells"])
        summary["largest_run"] = {
            "n_cells": largest["n_cells"],
            "seconds": largest["seconds"],
            "peak_rss_gb": largest["peak_rss_gb"],
        }
    return summary
