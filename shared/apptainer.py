"""The stage images under Apptainer (Singularity's successor), for HPC clusters where Docker is not allowed: the
definition files that turn ``make save-images``' tarball into one ``.sif`` per image, and the ``apptainer run`` of a
stage with the same volume layout as the docker one (``shared.containers``). Standard library only, like
``shared.containers``: it runs with a system ``python3``.

    python3 -m shared.apptainer definitions ARCHIVE [--out DIR]   # DIR/<image>.def per image (dist/sif)
    python3 -m shared.apptainer build ARCHIVE [--out DIR]         # the definitions, then apptainer build each .sif
    python3 -m shared.containers --runner apptainer run-stage STAGE CONFIG   # make all RUNNER=apptainer

A definition bootstraps from the archive (Apptainer's ``docker-archive`` agent; the archive holds every image, so
``From:`` names the image's versioned tag in it, as containers/image's ``docker-archive:PATH:REFERENCE`` reads it)
and runs the stage's module in /app, the images' working directory, which Apptainer does not enter by itself. A
stage runs as

    apptainer run --containall --cleanenv --no-home [--nv] \\
      --bind $PWD/data:/app/data:ro,$PWD/outputs:/app/outputs \\
      --env HOME=/tmp,ONCOXAI_OUTPUTS=outputs,ONCOXAI_GIT_COMMIT=<commit>[,VAR=value for each PASS_ENV set] \\
      dist/sif/oncoxai-<stage>.sif --config CONFIG

that is: the caller's own user (Apptainer never switches user), a read-only image, an empty private /tmp
(``--containall``), no host environment beyond the one passed (``--cleanenv``), data/ read-only and the outputs
read-write at the paths the docker run uses, and ``--nv`` (the host's NVIDIA driver) when ``nvidia-smi`` is found
or ``APPTAINER_GPU=1`` (``APPTAINER_GPU=0``: never). Unlike docker's ``--network none`` the job shares the host's
network (an isolated network namespace needs root or fakeroot on most sites); no stage uses the network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from .containers import (
    ALWAYS_PASS_ENV,
    CONTROL_STAGE,
    ContainerError,
    Settings,
    images,
    installed,
    outputs_volume,
)

#: where ``make sif`` writes the definitions and images (beside ``make save-images``' dist/images)
SIF_DIR = "dist/sif"


def sif_path(name: str, sif_dir: str | Path = SIF_DIR, prefix: str = "oncoxai") -> Path:
    """The image file of stage ``name`` (or "torch"): ``dist/sif/oncoxai-train-torch.sif``."""
    return Path(sif_dir) / f"{prefix}-{name.replace('_', '-')}.sif"


def definition(name: str, image: str, tag: str, archive: str | Path) -> str:
    """The Apptainer definition of one stage image, bootstrapped from ``make save-images``' tarball."""
    return "\n".join(
        [
            "Bootstrap: docker-archive",
            f"From: {Path(archive).resolve()}:{image}:{tag}",
            "",
            "%labels",
            f"    org.oncoxai.stage {name}",
            f"    org.oncoxai.source {tag.rsplit('-', 1)[-1]}",
            "",
            "%runscript",
            "    cd /app",
            f'    exec python -m oncoxai.stages.{name} "$@"',
            "",
            "%help",
            f"    The oncoxai {name} stage: apptainer run <image> --config CONFIG, with data/ and the outputs bound",
            "    under /app (python3 -m shared.apptainer, docs/how-to/containers.md).",
            "",
        ]
    )


def definitions(archive: str | Path, version: str, prefix: str = "oncoxai") -> dict[str, str]:
    """{stage: definition} for every stage image of this tree, each naming the tag ``make save-images`` gave it
    (``<version>-<source hash>``). The shared torch image is only a parent: it gets none."""
    return {
        im.name: definition(im.name, im.image, f"{version}-{im.source_hash}", archive)
        for im in images(prefix)
        if im.name != "torch"
    }


def wants_gpu(environ: Mapping[str, str]) -> bool:
    value = environ.get("APPTAINER_GPU", "")
    if value in ("0", "1"):
        return value == "1"
    return shutil.which("nvidia-smi") is not None


def binds(s: Settings) -> list[tuple[str, str, str]]:
    """(host, container, mode) of every bind: the docker run's volumes, the same paths inside."""
    host, inside, _ = outputs_volume(s.outputs, s.repo)
    out = [(str(s.repo / "data"), "/app/data", "ro"), (str(host), inside, "rw")]
    if s.torch_checkpoints is not None:
        out.append((str(s.torch_checkpoints), "/opt/torch/hub/checkpoints", "ro"))
    return out


def _environment(s: Settings) -> list[str]:
    _, _, env_value = outputs_volume(s.outputs, s.repo)
    env = {
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "ONCOXAI_OUTPUTS": env_value,
        "ONCOXAI_GIT_COMMIT": s.commit,
    }
    for name in (*ALWAYS_PASS_ENV, *s.pass_env):
        if name in s.env and name not in env:
            env[name] = s.env[name]
    if any("," in v for v in env.values()):
        raise ContainerError(
            f"apptainer --env cannot pass a value with a comma: {sorted(k for k, v in env.items() if ',' in v)}"
        )
    return ["--env", ",".join(f"{k}={v}" for k, v in env.items())]


def _run_line(s: Settings, gpu: bool) -> list[str]:
    bound = ",".join(f"{h}:{c}" + (":ro" if mode == "ro" else "") for h, c, mode in binds(s))
    return ["apptainer", "run", "--containall", "--cleanenv", "--no-home", *(["--nv"] if gpu else []), "--bind", bound]


def stage_command(stage: str, config: str, s: Settings, gpu: bool, sif_dir: str | Path = SIF_DIR) -> list[str]:
    """The ``apptainer run`` of one stage (see the module's docstring)."""
    return [*_run_line(s, gpu), *_environment(s), str(sif_path(stage, sif_dir, s.prefix)), "--config", config]


def control_command(module_args: list[str], s: Settings, config: str | None = None, sif_dir=SIF_DIR) -> list[str]:
    """``python -m MODULE ARGS`` in the report image (its working directory /app), the config bound there."""
    line = _run_line(s, gpu=False)
    if config and not Path(config).is_absolute() and (s.repo / config).is_file():
        line[-1] += f",{s.repo / config}:/app/{config}:ro"
    return [
        *line[:2],
        "--pwd",
        "/app",
        *line[2:],
        *_environment(s),
        str(sif_path(CONTROL_STAGE, sif_dir, s.prefix)),
        "python",
        "-m",
        *installed(module_args),
    ]


def check_sif(stage: str, s: Settings, sif_dir: str | Path = SIF_DIR) -> None:
    path = s.repo / sif_path(stage, sif_dir, s.prefix)
    if not path.is_file():
        raise ContainerError(
            f"{sif_path(stage, sif_dir, s.prefix)}: no image; build them with make sif ARCHIVE=<make save-images' "
            "tarball> on a machine with Apptainer, or copy them there"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m shared.apptainer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("definitions", "build"):
        p = sub.add_parser(command, help=f"{command}: the .def files{', then apptainer build' * (command == 'build')}")
        p.add_argument("archive", help="make save-images' tarball (dist/images/oncoxai-images-<version>.tar)")
        p.add_argument("--out", default=SIF_DIR, help=f"where the .def and .sif files go (default {SIF_DIR})")
        p.add_argument("--version", help="the images' version (default: the project's, from pyproject.toml)")
        p.add_argument("--prefix", default="oncoxai")
    args = parser.parse_args(argv)
    try:
        if not Path(args.archive).is_file():
            raise ContainerError(f"{args.archive}: no such archive; run make save-images (or copy its tarball here)")
        version = args.version or _project_version()
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        defs = definitions(args.archive, version, args.prefix)
        for name, text in defs.items():
            (out / f"{sif_path(name, '', args.prefix).stem}.def").write_text(text)
        print(f"wrote {len(defs)} definitions to {out}")
        if args.command == "build":
            if shutil.which("apptainer") is None:
                raise ContainerError(
                    "apptainer not found: install it (apptainer.org), or copy the .def files and the archive to a "
                    "machine that has it and run apptainer build <image>.sif <image>.def there"
                )
            for name in defs:
                target = sif_path(name, out, args.prefix)
                tmp = target.with_name(f".{target.name}.tmp")
                subprocess.run(["apptainer", "build", "--force", str(tmp), str(target.with_suffix(".def"))], check=True)
                tmp.replace(target)
                print(f"built {target}")
    except ContainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"error: apptainer build failed (exit {exc.returncode}); its output is above", file=sys.stderr)
        return 1
    return 0


def _project_version() -> str:
    import re

    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    found = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    if found is None:
        raise ContainerError("pyproject.toml: no version; pass --version")
    return found.group(1)


if __name__ == "__main__":
    raise SystemExit(main())
