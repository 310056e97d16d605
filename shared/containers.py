"""How make runs things: the stages and the project's own commands, locally or in the stage images.

One module builds every container command line: the ``docker run`` of a stage (mounts, user, network, GPU flags,
environment, the commit string), the project's own commands (planning, bundle, index page) in the report image,
the images' names, build arguments and source hashes (``make images``, ``save-images``, ``push-images``), and the
check that refuses an image older than the tree. Standard library only, and nothing heavy on import (``shared``'s
``__init__`` imports nothing): it runs with the system ``python3`` of a collaborator who has Docker and the image
tarballs but no ``.venv``::

    python3 -m shared.containers [--runner R] run-stage STAGE CONFIG        # make's RUN_STAGE
    python3 -m shared.containers [--runner R] control [--config FILE] MODULE [ARG ...]   # make's CONTROL
    python3 -m shared.containers images                        # one line per image: name, image, hash, build args
    python3 -m shared.containers source-hash NAME              # NAME: a stage or "torch"
    python3 -m shared.containers check-image NAME ...          # exit 1 unless each image is current
    python3 -m shared.containers gpu-flags                     # what `docker info` offers
    python3 -m shared.containers check-inputs [--write]        # exit 0: the container check's inputs are unchanged
    run-stage and control take --dry-run: print the command instead of running it

The runner is ``--runner`` (make passes its ``RUNNER``), else ``$RUNNER``: ``local`` (the default:
``$VENV/bin/python``, ``.venv`` unless set), ``docker`` or ``apptainer`` (the images as .sif files, for clusters
without Docker: ``shared.apptainer``); nothing switches it by what happens to be installed.
With ``docker``, a stage runs as

    docker run --rm --network none --user UID:GID [GPU flags] --read-only --tmpfs /tmp:exec --shm-size 2g \\
      -v $PWD/data:/app/data:ro -v $PWD/outputs:/app/outputs [-v <torch checkpoints>:/opt/torch/hub/checkpoints:ro] \\
      -e ONCOXAI_OUTPUTS=outputs -e ONCOXAI_GIT_COMMIT=<commit> [-e VAR for each DOCKER_PASS_ENV variable set] \\
      oncoxai-<stage> --config CONFIG

and the project's own commands run in ``.venv`` when there is one, else in the report image. Settings, from the
environment (make exports its command-line variables): ``IMAGE_PREFIX`` (oncoxai), ``DOCKER_USER`` (the caller's
uid:gid), ``GPU_FLAGS`` (unset: from ``docker info``; empty: none), ``DOCKER_SHM_SIZE`` (2g), ``DOCKER_RUN_FLAGS``,
``DOCKER_PASS_ENV`` (the numerics and threading settings below), ``ONCOXAI_OUTPUTS`` (outputs; relative to the
current folder or absolute), ``TORCH_HOME``/``XDG_CACHE_HOME`` (where ImageNet weights are found).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .sources import REPO_ROOT, files_hash, git_commit, stage_sources

RUNNERS = ("local", "docker", "apptainer")
TEMPLATE = "docker/stage.Dockerfile"
TORCH_DOCKERFILE = "docker/torch.Dockerfile"
#: what every image is built from besides its code (and the Dockerfiles)
BUILD_FILES = ("pyproject.toml", "setup.py", "oncoxai/__init__.py", "constraints.txt", "docker/install.py")
SOURCE_LABEL = "org.oncoxai.source"
#: the stage whose image runs the project's own commands when there is no .venv
CONTROL_STAGE = "report"
#: settings that change numerics or threading, passed on to a stage's container when set: with OpenBLAS told a core
#: type (OPENBLAS_CORETYPE) locally but detecting another in a container, results differ in the last bits
PASS_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "MKL_NUM_THREADS",
    "MKL_CBWR",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
)
#: passed like PASS_ENV, whatever DOCKER_PASS_ENV says: the progress bars' switch
ALWAYS_PASS_ENV = ("ONCOXAI_PROGRESS",)


class ContainerError(Exception):
    """A one-line error for the user (printed as ``error: ...``, exit 1)."""


# -- the images --------------------------------------------------------------------------------------------------
def image_name(name: str, prefix: str = "oncoxai") -> str:
    """``oncoxai-train-torch`` for stage ``train_torch``, ``oncoxai-torch`` for the torch image."""
    return f"{prefix}-{name.replace('_', '-')}"


def stage_names(repo: Path = REPO_ROOT) -> list[str]:
    """The stages that have an image: every package under stages/ with an entry point and a config declaration."""
    return sorted(
        p.name for p in (repo / "stages").iterdir() if (p / "__main__.py").is_file() and (p / "params.py").is_file()
    )


def extra_requirements(pyproject: str, extra: str) -> list[str]:
    """The requirements of one optional-dependency extra of pyproject.toml's text (tomllib where Python has it)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        return _extra_requirements_plain(pyproject, extra)
    return tomllib.loads(pyproject).get("project", {}).get("optional-dependencies", {}).get(extra, [])


def _extra_requirements_plain(pyproject: str, extra: str) -> list[str]:
    """extra_requirements without tomllib: the extras are flat lists of double-quoted strings, read as such."""
    section = re.search(r"^\[project\.optional-dependencies\]\n(.*?)(?=^\[|\Z)", pyproject, re.M | re.S)
    found = re.search(rf"^{re.escape(extra)}\s*=\s*\[(.*?)\]\s*$", section.group(1) if section else "", re.M | re.S)
    return re.findall(r'"([^"]*)"', re.sub(r"#[^\n]*", "", found.group(1))) if found else []


def on_torch(stage: str, repo: Path = REPO_ROOT) -> bool:
    """Whether a stage's image builds on the shared torch image: its extra needs the project's ``torch`` extra."""
    for req in extra_requirements((repo / "pyproject.toml").read_text(), stage):
        own = re.fullmatch(r"oncoxai\[(.*)\]", req.replace(" ", ""))
        if own and "torch" in own.group(1).split(","):
            return True
    return False


@dataclass(frozen=True)
class Image:
    name: str  # "torch" or a stage
    image: str  # oncoxai-torch, oncoxai-train-torch, ...
    dockerfile: str
    parent: str  # "torch" (on the torch image) or "base" (on BASE_IMAGE)
    build_args: tuple[str, ...]  # KEY=VALUE, besides BASE_IMAGE and the pip settings
    source_hash: str


def source_files(name: str, repo: Path = REPO_ROOT) -> list[Path]:
    """What goes into image ``name``: for a stage the files it runs (shared.sources: its own package and what it
    imports, nothing else), the build files and the template (and the torch image's Dockerfile when it builds on
    it); for torch the build files and its Dockerfile."""
    build = [repo / f for f in BUILD_FILES]
    if name == "torch":
        return sorted([*build, repo / TORCH_DOCKERFILE])
    extra = [*build, repo / TEMPLATE] + ([repo / TORCH_DOCKERFILE] if on_torch(name, repo) else [])
    return stage_sources(name) + sorted(extra)


def source_hash(name: str, repo: Path = REPO_ROOT) -> str:
    """The label org.oncoxai.source of image ``name``: changes exactly when its sources do."""
    if name != "torch" and name not in stage_names(repo):
        raise ContainerError(f"no image '{name}': a stage ({', '.join(stage_names(repo))}) or torch")
    return files_hash(source_files(name, repo))[:16]


def torch_stages(repo: Path = REPO_ROOT) -> list[str]:
    """The stages whose images build on the torch image."""
    return [stage for stage in stage_names(repo) if on_torch(stage, repo)]


def images(prefix: str = "oncoxai", repo: Path = REPO_ROOT) -> list[Image]:
    """Every image, the torch image first, then one per stage from the template. The torch image holds the packages
    of every stage built on it (EXTRAS: their extras), so that they are installed once, not once per image: those
    images then add only the project's code to its layers."""
    on_it = torch_stages(repo)
    extras = f"EXTRAS={','.join(on_it)}"
    out = [Image("torch", image_name("torch", prefix), TORCH_DOCKERFILE, "base", (extras,), source_hash("torch", repo))]
    for stage in stage_names(repo):
        torch = stage in on_it
        args = [f"STAGE={stage}", f"EXTRA={stage}", f"IMAGE_NAME={image_name(stage, prefix)}"]
        if torch:
            args.append(f"PARENT={image_name('torch', prefix)}")
        out.append(
            Image(
                stage,
                image_name(stage, prefix),
                TEMPLATE,
                "torch" if torch else "base",
                tuple(args),
                source_hash(stage, repo),
            )
        )
    return out


def check_image(name: str, prefix: str = "oncoxai", repo: Path = REPO_ROOT) -> None:
    """Raise unless image ``name`` exists and was built from these sources: its results would be older code's."""
    image, expected = image_name(name, prefix), source_hash(name, repo)
    try:
        proc = subprocess.run(
            ["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{SOURCE_LABEL}"}}}}', image],
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        raise ContainerError(f"RUNNER=docker needs the docker client: {exc.strerror}") from exc
    if proc.returncode != 0:
        raise ContainerError(
            f"no image {image} (run: make images, or make load-images with the tarballs made from this tree, "
            "or use RUNNER=local)"
        )
    label = proc.stdout.strip()
    if label != expected:
        raise ContainerError(
            f"image {image} was built from other sources ({label}) than this tree ({expected}): run make images, "
            "or make load-images with the tarballs made from this tree (or use RUNNER=local)"
        )


# -- what the container check depends on ------------------------------------------------------------------------
#: The files whose change can make `make test-docker` fail while `make test` passes: the images' recipes, build
#: scripts and dependency pins, how make and the runner start a container and where it writes, the project's commands
#: the report image runs, the configs the check runs and the check itself. README.md, copied into the build as the
#: package's long description only, is not. Nor is the stages' code: it runs alike in both places. Of the
#: container-only failures a code change can bring, an import that an image does not install is checked in every
#: `make test` (tests/unit/test_containers.py) and a file read from the repository instead of the volumes by the
#: installed command's run (tests/stage/test_package.py); the others (a download under --network none, a setting
#: not passed into the container, a write outside the outputs on the read-only root, package data the build leaves
#: out) wait for the next check: when these files change, when the record is MAX_AGE_DAYS old (the base image and
#: the unpinned packages move), or with CONTAINER_CHECK=always.
CHECK_INPUTS = (
    ".ci/run",
    "Makefile",
    "configs/demo.yaml",
    "configs/demo_mri.yaml",
    "configs/demo_tcga.yaml",
    "constraints.txt",
    "docker",
    "oncoxai/__init__.py",
    "pyproject.toml",
    "setup.py",
    "shared/artifacts.py",
    "shared/bundle.py",
    "shared/containers.py",
    "shared/pipeline.py",
    "shared/sources.py",
    "stages/report/experiments.py",
    "tests/conftest.py",
    "tests/e2e/test_docker.py",
    "tests/support.py",
)
#: the last container check that passed: its inputs' hashes, commit and date (written by .ci/run after it)
RECORD = ".ci/containers-checked.json"
MAX_AGE_DAYS = 7


def check_inputs(repo: Path = REPO_ROOT) -> dict[str, str]:
    """sha256 of each file of CHECK_INPUTS (the files git tracks under them; every file there without git)."""
    import hashlib

    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--", *CHECK_INPUTS], cwd=repo, capture_output=True, timeout=30, check=True
        )
        names = [n for n in proc.stdout.decode().split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = [
            str(f.relative_to(repo))
            for entry in CHECK_INPUTS
            for f in ([repo / entry] if (repo / entry).is_file() else sorted((repo / entry).rglob("*")))
            if f.is_file()
        ]
    return {n: hashlib.sha256((repo / n).read_bytes()).hexdigest() for n in sorted(names) if (repo / n).is_file()}


def _today():
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).date()


def check_reasons(record: Path, repo: Path = REPO_ROOT, now: dict[str, str] | None = None) -> tuple[list[str], dict]:
    """Why the container check must run (empty: it need not), and the record read ({} when there is none, it cannot
    be read, or it lists no file). now: the inputs' hashes, check_inputs(repo) unless given."""
    import datetime

    try:
        recorded = json.loads(record.read_text())
        files, date = recorded["files"], datetime.date.fromisoformat(recorded["date"])
        if not files:
            raise ValueError("no files")
    except (OSError, ValueError, KeyError, TypeError):
        return [f"no record of a passed check in {record}"], {}
    now = check_inputs(repo) if now is None else now
    if not now:
        return [f"none of {', '.join(CHECK_INPUTS)} found under {repo}"], recorded
    changed = sorted(n for n in now.keys() | files.keys() if now.get(n) != files.get(n))
    reasons = []
    if changed:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        reasons.append(f"{shown} changed since the check that passed at {recorded.get('commit')}")
    if (_today() - date).days >= MAX_AGE_DAYS:
        reasons.append(f"the last check passed on {date}, {MAX_AGE_DAYS} or more days ago")
    return reasons, recorded


def write_record(record: Path, files: dict[str, str], seconds: int | None = None, repo: Path = REPO_ROOT) -> None:
    """Record that the container check passed on the inputs ``files`` (their hashes when it started), atomically."""
    entry = {"commit": git_commit(repo), "date": _today().isoformat(), "test_docker_s": seconds, "files": files}
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(entry, indent=1) + "\n")
    os.replace(tmp, record)


# -- GPUs --------------------------------------------------------------------------------------------------------
def gpu_flags(info: Mapping) -> list[str]:
    """The flags that give a container the engine's NVIDIA GPUs, from ``docker info --format '{{json .}}'``:
    ``--gpus all`` with the NVIDIA runtime registered (nvidia-container-toolkit's classic setup), ``--device
    nvidia.com/gpu=all`` where the GPUs are CDI devices only (Docker >= 28 with CDI), nothing otherwise (CPU)."""
    if not isinstance(info, Mapping):
        return []
    if "nvidia" in (info.get("Runtimes") or {}):
        return ["--gpus", "all"]
    devices = info.get("DiscoveredDevices") or []
    if any(str(d.get("ID", "")).startswith("nvidia.com/gpu") for d in devices if isinstance(d, Mapping)):
        return ["--device", "nvidia.com/gpu=all"]
    return []


def engine_gpu_flags() -> list[str]:
    """gpu_flags of the engine that answers; none when no engine answers or its answer is not JSON."""
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{json .}}"], capture_output=True, text=True, timeout=60)
        return gpu_flags(json.loads(proc.stdout or "{}"))
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return []


# -- the command lines -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """Everything a container command depends on (``from_env`` reads it from the environment)."""

    repo: Path  # the folder make runs in: data/ is there, relative paths start there
    user: str
    commit: str
    outputs: str = "outputs"  # ONCOXAI_OUTPUTS as given: relative to repo, or absolute
    prefix: str = "oncoxai"
    gpu_flags: tuple[str, ...] = ()
    shm_size: str = "2g"
    run_flags: tuple[str, ...] = ()
    pass_env: tuple[str, ...] = PASS_ENV
    env: Mapping[str, str] = field(default_factory=dict)  # the caller's environment: which pass_env are set
    torch_checkpoints: Path | None = None  # mounted read-only when given

    @classmethod
    def from_env(cls, environ: Mapping[str, str], repo: Path, detect_gpus: bool = True) -> Settings:
        cache = Path(environ.get("XDG_CACHE_HOME") or Path(environ.get("HOME", "~")).expanduser() / ".cache")
        checkpoints = Path(environ.get("TORCH_HOME") or cache / "torch") / "hub" / "checkpoints"
        if "GPU_FLAGS" in environ:
            gpus = shlex.split(environ["GPU_FLAGS"])
        else:
            gpus = engine_gpu_flags() if detect_gpus else []
        return cls(
            repo=repo,
            user=environ.get("DOCKER_USER") or f"{os.getuid()}:{os.getgid()}",
            commit=git_commit(),
            outputs=environ.get("ONCOXAI_OUTPUTS") or "outputs",
            prefix=environ.get("IMAGE_PREFIX") or "oncoxai",
            gpu_flags=tuple(gpus),
            shm_size=environ.get("DOCKER_SHM_SIZE") or "2g",
            run_flags=tuple(shlex.split(environ.get("DOCKER_RUN_FLAGS", ""))),
            pass_env=tuple(environ["DOCKER_PASS_ENV"].split()) if "DOCKER_PASS_ENV" in environ else PASS_ENV,
            env=dict(environ),
            torch_checkpoints=checkpoints if checkpoints.is_dir() else None,
        )


def outputs_volume(outputs: str, repo: Path) -> tuple[Path, str, str]:
    """(host folder, where the container sees it, ONCOXAI_OUTPUTS inside): a relative outputs folder is mounted
    under /app (the image's working directory, where the resolved config's relative paths point), an absolute one
    at the same path."""
    if os.path.isabs(outputs):
        path = os.path.normpath(outputs)
        return Path(path), path, path
    rel = os.path.normpath(outputs)
    if rel == ".." or rel.startswith("../") or rel == ".":
        raise ContainerError(
            f"ONCOXAI_OUTPUTS={outputs}: with RUNNER=docker use a folder inside {repo} or an absolute path"
        )
    return repo / rel, f"/app/{rel}", rel


def config_mount(config: str, repo: Path) -> tuple[Path, str]:
    """(host file, where the container sees it): the same relative path under /app, or the same absolute path."""
    if os.path.isabs(config):
        return Path(config), os.path.normpath(config)
    rel = os.path.normpath(config)
    return repo / rel, f"/app/{rel}"


def _common(s: Settings) -> tuple[list[str], list[str]]:
    """(the volumes, the environment) every container gets: data/ read-only, the outputs read-write, the commit."""
    host, inside, env_value = outputs_volume(s.outputs, s.repo)
    volumes = ["-v", f"{s.repo / 'data'}:/app/data:ro", "-v", f"{host}:{inside}"]
    return volumes, ["-e", f"ONCOXAI_OUTPUTS={env_value}", "-e", f"ONCOXAI_GIT_COMMIT={s.commit}"]


def stage_command(stage: str, config: str, s: Settings) -> list[str]:
    """The ``docker run`` of one stage: as the calling user, no network, a read-only root file system with a tmpfs
    /tmp (HOME and caches point there; see docker/stage.Dockerfile), data/ read-only, the outputs read-write."""
    volumes, env = _common(s)
    if s.torch_checkpoints is not None:  # ImageNet weights a local run would find (train_torch.pretrained: auto)
        volumes += ["-v", f"{s.torch_checkpoints}:/opt/torch/hub/checkpoints:ro"]
    for name in (*ALWAYS_PASS_ENV, *s.pass_env):
        if name in s.env and name not in ("ONCOXAI_OUTPUTS", "ONCOXAI_GIT_COMMIT"):
            env += ["-e", name]  # the value comes from docker's own environment, which is this one
    return [
        "docker", "run", "--rm", "--network", "none", "--user", s.user, *s.gpu_flags,
        "--read-only", "--tmpfs", "/tmp:exec", "--shm-size", s.shm_size, *s.run_flags,
        *volumes, *env, image_name(stage, s.prefix), "--config", config,
    ]  # fmt: skip


def installed(module_args: Sequence[str]) -> list[str]:
    """MODULE ARGS as an image runs them: the project is installed there as the package oncoxai (setup.py)."""
    return [f"oncoxai.{module_args[0]}", *module_args[1:]]


def control_command(module_args: Sequence[str], s: Settings, config: str | None = None) -> list[str]:
    """``python -m MODULE ARGS`` in the report image, the config file (when given and there) mounted where the
    container sees it under the same path."""
    volumes, env = _common(s)
    if config:
        host, inside = config_mount(config, s.repo)
        if host.is_file():
            volumes += ["-v", f"{host}:{inside}:ro"]
    return [
        "docker", "run", "--rm", "--network", "none", "--user", s.user, "--read-only", "--tmpfs", "/tmp",
        *volumes, *env, "--entrypoint", "python", image_name(CONTROL_STAGE, s.prefix), "-m", *installed(module_args),
    ]  # fmt: skip


# -- the command-line interface ----------------------------------------------------------------------------------
def runner(environ: Mapping[str, str]) -> str:
    value = environ.get("RUNNER") or "local"
    if value not in RUNNERS:
        raise ContainerError(f"RUNNER must be local, docker or apptainer, not '{value}'")
    return value


def _venv_python(environ: Mapping[str, str], repo: Path) -> Path:
    return repo / (environ.get("VENV") or ".venv") / "bin" / "python"


def _run(argv: list[str], dry_run: bool, show: bool) -> int:
    """Print (dry run) or replace this process with argv: make's signals and exit status reach it directly."""
    if dry_run:
        print(shlex.join(argv))
        return 0
    if show:
        print(shlex.join(argv), file=sys.stderr, flush=True)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise ContainerError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    return 127  # not reached


def _docker_settings(args: argparse.Namespace, environ: Mapping[str, str], repo: Path, gpus: bool) -> Settings:
    s = Settings.from_env(environ, repo, detect_gpus=gpus)
    if not args.dry_run:
        host, _, _ = outputs_volume(s.outputs, repo)
        host.mkdir(parents=True, exist_ok=True)  # else the engine creates it, owned by root
    return s


def _check_inputs(args: argparse.Namespace, repo: Path) -> int:
    record, now = Path(args.record), check_inputs(repo)
    if args.write:
        files = json.loads(Path(args.saved).read_text()) if args.saved else now
        if files != now:
            print(f"{record} not written: the container check's inputs changed while it ran", file=sys.stderr)
            return 1
        write_record(record, files, args.seconds, repo)
        print(f"{record}: the container check passed on these inputs ({len(files)} files)")
        return 0
    if args.save:
        Path(args.save).write_text(json.dumps(now))
    reasons, recorded = check_reasons(record, repo, now)
    if reasons:
        print(f"the container check runs: {'; '.join(reasons)}")
        return 1
    print(
        f"the container check's inputs ({len(now)} files: {', '.join(CHECK_INPUTS)}) are those of the check that "
        f"passed at {recorded.get('commit')} on {recorded.get('date')} ({record}); CONTAINER_CHECK=always runs it"
    )
    return 0


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python3 -m shared.containers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", help="local, docker or apptainer (default: $RUNNER, else local)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run-stage", help="run one stage (RUNNER=local: the .venv; docker: its image)")
    p.add_argument("stage")
    p.add_argument("config")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p = sub.add_parser("control", help="python -m MODULE ARGS: in the .venv when there is one, else the report image")
    p.add_argument("--config", help="the experiment config the command reads (mounted for the container)")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("module")
    p.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("images", help="one line per image: name, image, parent, source hash, build arguments")
    p = sub.add_parser("source-hash", help="the org.oncoxai.source label image NAME must carry")
    p.add_argument("name")
    p = sub.add_parser("check-image", help="fail unless each image exists and was built from these sources")
    p.add_argument("names", nargs="+")
    sub.add_parser("gpu-flags", help="the docker run flags for the engine's GPUs (docker info)")
    p = sub.add_parser("check-inputs", help=f"exit 0 when the container check need not run ({RECORD})")
    p.add_argument("--record", default=RECORD, help=f"the record of the last check that passed (default: {RECORD})")
    p.add_argument("--save", metavar="FILE", help="also keep the inputs' hashes in FILE (for --write --from FILE)")
    p.add_argument("--write", action="store_true", help="record that the check passed (on --from FILE's inputs)")
    p.add_argument("--from", dest="saved", metavar="FILE", help="with --write: the hashes kept by --save at the start")
    p.add_argument("--seconds", type=int, help="with --write: how long the check took")
    args = parser.parse_args(argv)
    if args.runner is not None:
        environ = {**environ, "RUNNER": args.runner}
    repo = Path.cwd()
    prefix = environ.get("IMAGE_PREFIX") or "oncoxai"
    try:
        if args.command == "images":
            for im in images(prefix):
                print(im.name, im.image, im.parent, im.source_hash, im.dockerfile, *im.build_args)
        elif args.command == "source-hash":
            print(source_hash(args.name))
        elif args.command == "check-image":
            for name in args.names:
                check_image(name, prefix)
        elif args.command == "check-inputs":
            return _check_inputs(args, repo)
        elif args.command == "gpu-flags":
            print(shlex.join(engine_gpu_flags()))
        elif args.command == "run-stage":
            if runner(environ) == "local":
                python = _venv_python(environ, repo)
                return _run([str(python), "-m", f"stages.{args.stage}", "--config", args.config], args.dry_run, False)
            if runner(environ) == "apptainer":
                from . import apptainer

                s = _docker_settings(args, environ, repo, gpus=False)
                if not args.dry_run:
                    apptainer.check_sif(args.stage, s)
                command = apptainer.stage_command(args.stage, args.config, s, apptainer.wants_gpu(environ))
                return _run(command, args.dry_run, True)
            s = _docker_settings(args, environ, repo, gpus=True)
            if not args.dry_run:
                check_image(args.stage, s.prefix)
            return _run(stage_command(args.stage, args.config, s), args.dry_run, True)
        elif args.command == "control":
            module = [args.module, *args.args]
            python = _venv_python(environ, repo)
            if runner(environ) == "local" or python.is_file():
                return _run([str(python), "-m", *module], args.dry_run, False)
            s = _docker_settings(args, environ, repo, gpus=False)
            if runner(environ) == "apptainer":
                from . import apptainer

                if not args.dry_run:
                    apptainer.check_sif(CONTROL_STAGE, s)
                return _run(apptainer.control_command(module, s, args.config), args.dry_run, True)
            if not args.dry_run:
                check_image(CONTROL_STAGE, s.prefix)
            return _run(control_command(module, s, args.config), args.dry_run, True)
    except ContainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
