"""The ``python -m fetch`` command: a dataset's files into ``<dest>/<dataset>/`` (``fetch_dataset``), ``--list``.

Errors (an unknown dataset or ``--only`` name, HTTP 404/5xx, network errors, checksum mismatches, a bad manifest)
are one line on stderr, ``error: ...``, and exit code 2; an interrupt is exit code 130 (run again to resume).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shared.artifacts import ExclusiveLock
from shared.errors import UserError
from shared.logs import get_logger, setup_logging

from .checksums import SUMS_FILE, Sums
from .download import MIRROR_ENV, fetch_file, resolve_url, server_size
from .gdc import gdc_manifest_dataset
from .registry import REGISTRY, check_registry, get_dataset, select_files

log = get_logger("fetch")

LOCK_FILE = ".fetch.lock"


def dataset_lock(folder: Path) -> ExclusiveLock:
    """One fetch per dataset folder at a time (two writers would interleave bytes in the same .part)."""
    return ExclusiveLock(
        folder / LOCK_FILE, lambda pid: f"{folder}: another fetch is writing this dataset; wait for it to finish"
    )


def fetch_dataset(
    name: str,
    dest: str | Path = "data",
    registry: dict[str, dict[str, Any]] | None = None,
    only: Iterable[str] | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch (the ``only`` files of) a dataset into ``<dest>/<name>/``; returns the final paths."""
    dataset = get_dataset(name, registry)
    check_registry({name: dataset})
    files = select_files(name, dataset, only)
    if not dataset.get("verified", False):
        log.warning(
            "%s: the URLs of this dataset are NOT verified; if a download fails with HTTP 404, look the "
            "files up at %s and correct the registry in fetch/datasets.yaml",
            name,
            dataset.get("homepage", "the dataset's homepage"),
        )
    folder = Path(dest) / name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    done = {"downloaded": 0, "skipped": 0}
    with dataset_lock(folder):
        sums = Sums(folder / SUMS_FILE)
        for i, entry in enumerate(files, 1):
            log.info("[%d/%d] %s <- %s", i, len(files), entry["path"], resolve_url(entry["url"]))
            done[fetch_file(entry, folder, sums, timeout=timeout)] += 1
    log.info(
        "%s: %d downloaded, %d already present, in %.1f s -> %s",
        name,
        done["downloaded"],
        done["skipped"],
        time.time() - t0,
        folder,
    )
    return [folder / f["path"] for f in files]


def _size_text(n: int | None) -> str:
    if n is None:
        return "size ?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover


def _list(name: str | None, registry: dict[str, dict[str, Any]], dest: str, ask_sizes: bool = False) -> None:
    if name is None:
        for key in sorted(registry):
            ds = registry[key]
            flag = "" if ds.get("verified", False) else "  [URLs not verified]"
            print(f"{key:16s} {len(ds['files']):3d} files  {ds.get('description', '')}{flag}")
        return
    ds = get_dataset(name, registry)
    sums = Sums(Path(dest) / name / SUMS_FILE)
    print(f"{name}: {ds.get('description', '')}")
    if ds.get("homepage"):
        print(f"homepage: {ds['homepage']}")
    if ds.get("notes"):
        print(f"notes: {ds['notes']}")
    if not ds.get("verified", False):
        print("warning: the URLs of this dataset are not verified")
    total = 0
    for f in ds["files"]:
        size = f.get("size")
        if size is None and ask_sizes:
            size = server_size(resolve_url(f["url"]))
        total += size or 0
        if f.get("sha256") or f.get("md5"):
            check = "published " + ("sha256" if f.get("sha256") else "md5")
        elif sums.get(f["path"]):
            check = f"recorded sha256 {sums.get(f['path'])[:12]}..."
        else:
            check = "sha256 recorded on first download"
        flags = ", only with --only" if f.get("optional") else ""
        print(f"  {f['name']:40s} {_size_text(size):>9s}  {resolve_url(f['url'])}  [{check}{flags}]")
    if ask_sizes or any(f.get("size") for f in ds["files"]):
        print(f"total: {_size_text(total)} (sizes as {'published' if not ask_sizes else 'the server announces them'})")
    else:
        print("sizes: add --sizes to ask the server for each file's size")


def main(argv: list[str] | None = None, registry: dict[str, dict[str, Any]] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fetch",
        description="Download the public files of a named dataset into <dest>/<dataset>/ (resumable, checksummed).",
        epilog=f"Set {MIRROR_ENV}=http://host:port to fetch every URL from a mirror. Exit code 2 on errors.",
    )
    parser.add_argument("dataset", nargs="?", help="dataset name (see --list)")
    parser.add_argument("--dest", default="data", help="data root; files go to <dest>/<dataset>/ (default: data)")
    parser.add_argument("--list", action="store_true", help="list the datasets, or the files of DATASET, and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these files (names from --list)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up (60)")
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="with --list DATASET: ask the server for sizes not published in the registry (one HEAD request a file)",
    )
    parser.add_argument(
        "--manifest",
        metavar="FILE",
        help="a GDC portal manifest (id, filename, md5, size, state): "
        "fetch the files it lists as dataset DATASET (default: gdc), into <id>/<filename>",
    )
    args = parser.parse_args(argv)
    registry = REGISTRY if registry is None else registry
    if args.manifest:
        args.dataset = args.dataset or "gdc"
        try:
            registry = {**registry, args.dataset: gdc_manifest_dataset(args.manifest)}
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not args.list and not args.dataset:
        parser.error("a DATASET is required (or --list)")
    setup_logging()
    try:
        if args.list:
            _list(args.dataset, registry, args.dest, args.sizes)
            return 0
        fetch_dataset(args.dataset, args.dest, registry, args.only, args.timeout)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
