"""python -m shared.bundle CONFIG [--set key=value ...]: one zip of a finished experiment for collaborators.

Writes ``outputs/<experiment>/<experiment>-report.zip`` with the report (index.html, its figures, its screenshot when
the browser check made one), summary.json, the resolved config, every stage's manifest, the tables (CSV), the
figures (PNG/SVG), the NIfTI maps, ``attributions.h5ad``, and a ``README.txt`` saying what each file is (from the
stages' declared outputs, the same declarations the docs' tables come from). Model weights, arrays (.npy/.npz)
and TensorBoard logs stay out: they are for rerunning, not for reading.

The experiment must be finished: every enabled stage has its manifest (make checks beforehand that nothing is left
to run). The zip is deterministic (entries sorted, fixed times and modes), so the same run gives the same bytes;
it is written under a temporary name and renamed, and its sha256 printed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from .artifacts import MANIFEST, experiment_dir, sha256_file
from .config import discover_stages, load
from .errors import UserError

#: what a reader opens: tables, figures, pages, maps, the attribution AnnData, the run's records
KEEP_SUFFIXES = (".csv", ".tsv", ".json", ".png", ".svg", ".html", ".txt", ".nii.gz", ".nii")
KEEP_NAMES = ("attributions.h5ad", "config.yaml")
#: folders whose contents are for rerunning or for TensorBoard, not for reading
SKIP_DIRS = ("checkpoints", "tensorboard")
#: already compressed: stored as they are
STORED = (".png", ".gz", ".zip")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _kept(rel: Path) -> bool:
    if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts):
        return False
    return rel.name in KEEP_NAMES or rel.name.endswith(KEEP_SUFFIXES)


def bundle_files(exp_dir: Path, stages: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(name in the zip, file) of everything a collaborator reads, sorted by name."""
    files = [("config.yaml", exp_dir / "config.yaml")] if (exp_dir / "config.yaml").is_file() else []
    for stage in stages:
        for path in sorted((exp_dir / stage).rglob("*")):
            rel = path.relative_to(exp_dir / stage)
            if path.is_file() and _kept(rel):
                files.append((f"{stage}/{rel.as_posix()}", path))
    return sorted(files)


def describe(name: str, specs: dict) -> str:
    """What a file of the bundle is, from its stage's declared outputs."""
    if name == "config.yaml":
        return "the resolved configuration the run used (every key, defaults included)"
    if name == "README.txt":
        return "this file"
    stage, _, rel = name.partition("/")
    if rel == MANIFEST:
        return (
            f"{stage}'s run record: config section, input and output hashes, package versions, commit, "
            "device, wall time"
        )
    spec = specs.get(stage)
    for output in spec.outputs if spec else ():
        if output.matches(rel):
            return output.description
    return "(not declared by the stage)"


def readme(exp_name: str, files: list[tuple[str, Path]], specs: dict, exp_dir: Path) -> str:
    report = (
        json.loads((exp_dir / "report" / MANIFEST).read_text()) if (exp_dir / "report" / MANIFEST).is_file() else {}
    )
    lines = [
        f"Experiment '{exp_name}': the report and its material, bundled by `make bundle` (python -m shared.bundle).",
        f"Commit {report.get('git_commit', 'unknown')}; report made {report.get('started', 'unknown')} "
        f"on {report.get('device', 'unknown')}.",
        "",
        "Open report/index.html in any browser: it is self-contained (nothing is fetched). summary.json holds the",
        "headline figures; each stage's folder holds its tables (CSV), figures and manifest.json (how it was made).",
        "",
        "Files:",
    ]
    for name, path in files:
        lines.append(f"  {name}  ({path.stat().st_size:,} bytes)")
        lines.append(f"      {describe(name, specs)}")
    lines.append("  README.txt")
    lines.append("      this file")
    return "\n".join(lines) + "\n"


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.create_system = 3  # unix, whatever the host
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_STORED if name.endswith(STORED) else zipfile.ZIP_DEFLATED
    return info


def write_bundle(exp_dir: Path, exp_name: str, stages: tuple[str, ...]) -> Path:
    missing = [s for s in stages if not (exp_dir / s / MANIFEST).is_file()]
    if missing:
        raise UserError(
            f"{exp_dir}: stage(s) {', '.join(missing)} not finished (no {MANIFEST}); "
            f"run make all with this config first"
        )
    specs = discover_stages()
    files = bundle_files(exp_dir, stages)
    out = exp_dir / f"{exp_name}-report.zip"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compresslevel=6) as zf:
            for name, path in files + [("README.txt", None)]:
                info = _entry(name)
                if path is None:
                    source = io.BytesIO(readme(exp_name, files, specs, exp_dir).encode())
                    info.file_size = len(source.getvalue())
                else:
                    source = open(path, "rb")  # noqa: SIM115 - closed below
                    info.file_size = path.stat().st_size
                with source, zf.open(info, "w", force_zip64=info.file_size > 2**31) as dest:
                    shutil.copyfileobj(source, dest, 1 << 20)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variant", help="the config's named variant the run used")
    args = parser.parse_args(argv)
    try:
        exp = load(args.config, args.overrides, variant=args.variant)
        out = write_bundle(experiment_dir(exp.name), exp.name, tuple(exp.stages))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, sha256 {sha256_file(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
