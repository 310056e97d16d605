"""The artifact contract: ``outputs/<experiment>/<stage>/`` folders, written atomically, each with a manifest.

A stage writes into a hidden temporary folder beside its final one (``.<stage>.tmp-<pid>``) and renames it into
place only when everything, ``manifest.json`` last, is written. A killed stage therefore leaves no manifest
behind, the previous complete result (if any) stays untouched, and the next run redoes the work.

One writer per stage folder: a run holds an exclusive lock on ``outputs/<experiment>/.<stage>.lock`` (flock) from
before it clears stale temporary folders until it has published; a second run of the same stage of the same
experiment stops at once with a one-line error naming the holder's pid (the lock dies with its process, so a killed
run never leaves a stale lock; a finished run removes the file).

``manifest.json`` records: stage, experiment, the config the stage read, hashes of its inputs (files and
upstream manifests), package versions, git commit, device, wall time, the files written (size and sha256), and
a fingerprint of everything that determines the result. A stage whose fingerprint matches its manifest is up to
date and is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import Experiment
from .errors import UserError
from .sources import git_commit

MANIFEST = "manifest.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = (
    "oncoxai",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "anndata",
    "scanpy",
    "umap-learn",
    "torch",
    "torchvision",
    "captum",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "tf-keras-vis",
    "monai",
    "torchio",
    "nibabel",
    "pydantic",
)


def outputs_root() -> Path:
    return Path(os.environ.get("ONCOXAI_OUTPUTS", "outputs"))


def experiment_dir(name: str, root: Path | None = None) -> Path:
    return (root or outputs_root()) / name


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def listing_hash(folder: Path) -> str:
    """A hash of a folder's files: relative path, size and modification time of each (not their bytes)."""
    if not folder.is_dir():
        raise UserError(f"input folder not found: {folder}")
    listing = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            listing.append([str(path.relative_to(folder)), st.st_size, st.st_mtime_ns])
    return sha256_json(listing)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace``: readers never see half a file."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def replace_or_copy(source: str | Path, target: str | Path) -> None:
    """Move ``source`` to ``target``: a rename on one file system (no data copied), else a copy through a temporary
    file and a rename, the source then removed."""
    try:
        os.replace(source, target)
    except OSError:
        target = Path(target)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        Path(source).unlink()


def write_if_changed(path: str | Path, text: str) -> bool:
    """Atomically write ``text`` unless the file already holds it (keeps mtimes stable for make)."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    write_text_atomic(path, text)
    return True


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def code_hash(stage: str) -> str:
    """Hash of the sources that produce a stage's result: the files it imports (``shared.sources``)."""
    from .sources import files_hash, stage_sources

    return files_hash(stage_sources(stage))


class ExclusiveLock:
    """An exclusive, non-blocking flock on ``path``, holding the owner's pid: one writer at a time.

    A second process that tries to take it gets a ``UserError`` whose message is ``busy(pid)`` (the holder's pid as
    the file records it, or "unknown"). The lock dies with its process, so a killed holder never leaves a stale lock;
    a holder that releases it removes the file. Not POSIX (no fcntl): no lock. Used by ``StageRun`` (one run per
    stage folder) and by ``fetch`` (one download per dataset folder)::

        with ExclusiveLock(folder / ".fetch.lock", lambda pid: f"{folder}: busy (pid {pid})"):
            ...
    """

    def __init__(self, path: str | Path, busy: Callable[[str], str]):
        self.path, self.busy, self.fh = Path(path), busy, None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        while True:
            fh = open(self.path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                fh.close()
                raise UserError(self.busy(holder)) from None
            try:  # the previous holder removes the file as it leaves: hold the lock of the file that is there
                if os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            fh.close()
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self.fh = fh

    def release(self) -> None:
        if self.fh is not None:
            try:  # removed while still held, so a run that opened it meanwhile sees a stale file and retries
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.fh.close()
            self.fh = None

    def __enter__(self) -> ExclusiveLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def _stage_lock(exp_dir: Path, stage: str, final: Path) -> ExclusiveLock:
    """The lock of one stage folder: ``outputs/<experiment>/.<stage>.lock``."""
    return ExclusiveLock(
        exp_dir / f".{stage}.lock",
        lambda pid: (
            f"{final}: another run is writing this stage now (pid {pid}); wait for it to finish, or stop it, "
            "then run again"
        ),
    )


class StageRun:
    """One run of one stage: fingerprint, temporary output folder, manifest, atomic publish.

    Use as a context manager; write outputs under ``run.out``::

        run = StageRun(exp, "explain")
        if not run.is_current():
            with run:
                np.save(run.out / "x.npy", x)
    """

    def __init__(self, exp: Experiment, stage: str, root: Path | None = None, publish: bool = True):
        self.exp = exp
        self.stage = stage
        self.exp_dir = experiment_dir(exp.name, root)
        self.final = self.exp_dir / stage
        # secondary ranks of a distributed run compute alongside the main one but never publish
        self.publish = publish
        self.out = self.exp_dir / (f".{stage}.tmp-{os.getpid()}" if publish else f".{stage}.rank-{os.getpid()}")
        self.extra: dict[str, Any] = {}
        self.device = "cpu"
        self._started = 0.0
        self._inputs: list[dict[str, Any]] | None = None

    # -- upstream ------------------------------------------------------------------------------------------
    def upstream(self, stage: str) -> Path:
        """The finished folder of an upstream stage; a clear error when it has not run."""
        folder = self.exp_dir / stage
        if read_manifest(folder) is None:
            raise UserError(f"{folder}: no finished '{stage}' output (run: make stage-{stage.replace('_', '-')})")
        return folder

    def providers(self, role: str, required: bool = False) -> dict[str, Path]:
        """{stage: finished folder} of every enabled stage providing ``role`` (see ``shared.config.ROLES``)."""
        found = {stage: self.upstream(stage) for stage in self.exp.providers(role)}
        if required and not found:
            raise UserError(f"{self.exp.source}: no enabled stage provides {role} for {self.stage}")
        return found

    def provider(self, role: str) -> Path:
        """The folder of the one provider of ``role`` (an error when there are several: use ``providers``)."""
        found = self.providers(role, required=True)
        if len(found) > 1:
            raise UserError(f"{self.exp.source}: {self.stage} reads one {role} provider, but {list(found)} are enabled")
        return next(iter(found.values()))

    def inputs(self) -> list[dict[str, Any]]:
        """Input files and upstream manifests with their hashes."""
        if self._inputs is None:
            items = []
            for path in self.exp.input_files(self.stage):
                p = Path(path)
                if not p.is_file():
                    raise UserError(f"input file not found: {path}")
                items.append({"path": path, "size": p.stat().st_size, "sha256": sha256_file(p)})
            for path in self.exp.input_dirs(self.stage):
                items.append({"path": path, "listing_sha256": listing_hash(Path(path))})
            for need in self.exp.upstream(self.stage):
                manifest = read_manifest(self.upstream(need))
                items.append(
                    {
                        "path": str(self.exp_dir / need / MANIFEST),
                        "fingerprint": manifest["fingerprint"],
                        "files_sha256": sha256_json(manifest["files"]),
                    }
                )
            self._inputs = items
        return self._inputs

    def fingerprint(self) -> str:
        return sha256_json(
            {
                "stage": self.stage,
                "config": self.exp.stage_sections(self.stage),
                "inputs": self.inputs(),
                "code": code_hash(self.stage),
            }
        )

    def is_current(self) -> bool:
        """True when a finished result exists with the same fingerprint; its manifest is touched for make."""
        manifest = read_manifest(self.final)
        if manifest is None or manifest.get("fingerprint") != self.fingerprint():
            return False
        os.utime(self.final / MANIFEST)
        if self.publish:  # what a killed forced rerun left (folders, checkpoints) goes too, unless a run is writing
            lock = _stage_lock(self.exp_dir, self.stage, self.final)
            try:
                lock.acquire()
            except UserError:
                return True
            try:
                self._clear_stale()
                shutil.rmtree(self.exp_dir / ".checkpoints" / self.stage, ignore_errors=True)
            finally:
                lock.release()
        return True

    def _clear_stale(self) -> None:
        """The temporary and replaced folders of earlier runs that were killed (called with the stage's lock held)."""
        for pattern in (f".{self.stage}.tmp-*", f".{self.stage}.old-*"):
            for stale in self.exp_dir.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)

    # -- running -------------------------------------------------------------------------------------------
    def record(self, **values: Any) -> None:
        """Extra facts for the manifest (model shape, parameter count, ...)."""
        self.extra.update(values)

    @property
    def checkpoints(self) -> Path:
        """A folder that survives a killed run (unlike ``out``) for resumable work; keyed by the fingerprint."""
        return self.exp_dir / ".checkpoints" / self.stage / self._fingerprint[:16]

    def __enter__(self) -> StageRun:
        # the fingerprint first: a missing upstream result or input stops the run before anything is created
        self._fingerprint = self.fingerprint()
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        if self.publish:
            self._lock = _stage_lock(self.exp_dir, self.stage, self.final)
            self._lock.acquire()
            self._clear_stale()
        self.out.mkdir(parents=True)
        self._started = time.time()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None or not self.publish:
                shutil.rmtree(self.out, ignore_errors=True)
                return False
            try:
                self._publish()
            except BaseException:
                shutil.rmtree(self.out, ignore_errors=True)
                raise
            shutil.rmtree(self.exp_dir / ".checkpoints" / self.stage, ignore_errors=True)
            return False
        finally:
            if self.publish:
                self._lock.release()

    def _publish(self) -> None:
        files = []
        for path in sorted(self.out.rglob("*")):
            if path.is_file():
                files.append(
                    {"path": str(path.relative_to(self.out)), "size": path.stat().st_size, "sha256": sha256_file(path)}
                )
        manifest = {
            "stage": self.stage,
            "experiment": self.exp.name,
            "fingerprint": self._fingerprint,
            "config": self.exp.stage_sections(self.stage),
            "inputs": self.inputs(),
            "packages": package_versions(),
            "git_commit": git_commit(),
            "device": self.device,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._started)),
            "wall_time_s": round(time.time() - self._started, 3),
            **self.extra,
            "files": files,
        }
        write_json_atomic(self.out / MANIFEST, manifest)
        old = self.exp_dir / f".{self.stage}.old-{os.getpid()}"
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.out, self.final)
        shutil.rmtree(old, ignore_errors=True)
