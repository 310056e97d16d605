"""Installs a stage's Python dependencies inside ``docker build`` (standard library only, Python >= 3.11).

    python install.py lock --out FILE
    python install.py deps --extra NAME[,NAME...] [--no-base] [--prefix DIR]
    python install.py backend
    python install.py code SRC [--prefix DIR]

``deps`` installs the requirements of optional-dependency extras of ``pyproject.toml`` (plus the project's
base dependencies unless ``--no-base``; ``oncoxai[other]`` references are expanded), with ``constraints.txt``
and with every version pinned to what pip resolves for the whole project (``.[all,dev]``, what ``make setup``
installs locally). Each image therefore holds only its stage's packages (the torch image those of every stage
built on it), yet at exactly the versions the local environment has: the stages give the same results in a
container as locally. The resolution costs a minute
(pip fetches the metadata of ~200 packages); ``lock`` makes it once on the build host (docker/images.sh), which
passes it to every build as ``/tmp/build-pip/lock.txt``; a build without one resolves for itself.

With ``--prefix`` the packages go to DIR (same layout as a venv) and packages that the running environment
already has (the torch image's) are not installed again; the Dockerfile copies DIR onto the venv. That is
only correct when nothing already installed had to change, which is checked.

``backend`` prepares the project's build backend (``[build-system] requires``) in a throwaway venv, so that
``code`` can then build and install the project itself (``shared``, ``stages`` and its metadata) without
dependencies and offline: a change of the code rebuilds one small layer and downloads nothing.

Pip settings of the build host reach this script only through the build stage: the standard ``PIP_*``
variables (build arguments) and an optional CA bundle ``/tmp/build-pip/ca.pem`` (see docker/build-pip/).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

BUILD_PIP = Path(os.environ.get("ONCOXAI_BUILD_PIP", "/tmp/build-pip"))
BACKEND = Path(tempfile.gettempdir()) / "build-backend"  # a venv with the build backend; lives in the build stage only
LOCK_EXTRAS = ("all", "dev")  # what `make setup` installs: pip install -c constraints.txt -e '.[all,dev]'


def _name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;@(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def requirements(pyproject: Path, extras: list[str], base: bool = True) -> list[str]:
    """The requirement strings of ``extras`` (and the base dependencies), self-references expanded."""
    project = tomllib.loads(pyproject.read_text())["project"]
    own = project["name"].lower()
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", [])) if base else []
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise SystemExit(f"error: pyproject.toml has no optional-dependencies extra {extra!r}")
        seen.add(extra)
        for req in optional[extra]:
            match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*\[([^\]]+)\]\s*", req)
            if match and match.group(1).lower() == own:
                for inner in match.group(2).split(","):
                    add(inner.strip())
            else:
                out.append(req)

    for extra in extras:
        add(extra)
    return list(dict.fromkeys(out))


def pip_env() -> dict[str, str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", PIP_NO_INPUT="1")
    ca = BUILD_PIP / "ca.pem"
    if ca.is_file():
        env["PIP_CERT"] = str(ca)
    return env


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+ pip " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, env=pip_env())


def installed() -> dict[str, str]:
    """Distributions visible to the running interpreter: normalised name -> version."""
    from importlib import metadata

    return {_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def site_packages(prefix: str) -> Path:
    """Where an install with ``--prefix`` puts pure-Python packages: the same place as in the venv itself."""
    relative = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    return Path(prefix) / relative


def lock(pyproject: Path, constraints: Path, work: Path) -> Path:
    """Pin every package to the resolution of the whole project (what the local .venv holds)."""
    reqs = work / "all.txt"
    reqs.write_text("\n".join(requirements(pyproject, list(LOCK_EXTRAS))) + "\n")
    report = work / "resolution.json"
    pip(
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "-c",
        str(constraints),
        "-r",
        str(reqs),
    )
    pins = sorted(
        f"{_name(item['metadata']['name'])}=={item['metadata']['version']}"
        for item in json.loads(report.read_text())["install"]
    )
    out = work / "lock.txt"
    out.write_text("\n".join(pins) + "\n")
    print(f"resolved {len(pins)} packages for .[{','.join(LOCK_EXTRAS)}]", flush=True)
    return out


def write_lock(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(lock(Path(args.pyproject), Path(args.constraints), Path(tmp)), args.out)


def deps(args: argparse.Namespace) -> None:
    pyproject, constraints = Path(args.pyproject), Path(args.constraints)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if (BUILD_PIP / "lock.txt").is_file():
            pins = BUILD_PIP / "lock.txt"
            print(f"using the build host's resolution ({len(pins.read_text().split())} packages)", flush=True)
        else:
            pins = lock(pyproject, constraints, work)
        reqs = work / "requirements.txt"
        extras = [e.strip() for e in args.extra.split(",") if e.strip()]
        wanted = requirements(pyproject, extras, base=not args.no_base)
        reqs.write_text("\n".join(wanted) + "\n")
        print(
            f"installing .[{','.join(extras)}]{'' if args.no_base else ' and the base dependencies'}: "
            + ", ".join(wanted),
            flush=True,
        )
        before = installed()
        target = ["--prefix", args.prefix] if args.prefix else []
        pip("install", "--no-warn-script-location", *target, "-c", str(constraints), "-c", str(pins), "-r", str(reqs))
        if args.prefix:
            prefix = Path(args.prefix)
            if not prefix.is_dir() or not any(prefix.iterdir()):  # all of it was in the base image: an empty layer
                site_packages(args.prefix).mkdir(parents=True, exist_ok=True)
            after = installed()
            changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
            if changed:
                raise SystemExit(
                    f"error: installing into {args.prefix} changed packages of the base image "
                    f"{changed}; rebuild the base image"
                )
    # The merged environment must be consistent: check it as the final image will see it.
    env = pip_env()
    if args.prefix:
        env["PYTHONPATH"] = str(_check_prefix(args.prefix))
    subprocess.run([sys.executable, "-m", "pip", "check"], check=True, env=env)


def _check_prefix(prefix: str) -> Path:
    site = site_packages(prefix)
    if not site.is_dir():
        found = sorted(str(p) for p in Path(prefix).rglob("site-packages")) + sorted(
            str(p) for p in Path(prefix).rglob("dist-packages")
        )
        raise SystemExit(
            f"error: expected the packages under {site}, found {found}: the copy onto the venv would miss them"
        )
    return site


def backend(args: argparse.Namespace) -> None:
    build = tomllib.loads(Path(args.pyproject).read_text()).get("build-system", {})
    requires = build.get("requires", ["setuptools"])
    subprocess.run([sys.executable, "-m", "venv", str(BACKEND)], check=True)
    subprocess.run(
        [str(BACKEND / "bin" / "python"), "-m", "pip", "install", "--quiet", *requires], check=True, env=pip_env()
    )


def code(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"  # a writable copy: setuptools builds in the source tree
        shutil.copytree(args.src, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"))
        subprocess.run(
            [
                str(BACKEND / "bin" / "python"),
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--no-build-isolation",
                "--wheel-dir",
                str(Path(tmp) / "wheels"),
                str(src),
            ],
            check=True,
            env=pip_env(),
        )
        wheels = sorted((Path(tmp) / "wheels").glob("*.whl"))
        target = ["--prefix", args.prefix] if args.prefix else []
        pip("install", "--no-deps", "--no-index", "--no-warn-script-location", *target, *map(str, wheels))
    if args.prefix:
        _check_prefix(args.prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("deps", help="install an extra's requirements, pinned to the whole project's resolution")
    d.add_argument("--extra", required=True, help="an extra, or several separated by commas")
    d.add_argument("--no-base", action="store_true", help="leave out the project's base dependencies")
    d.add_argument("--prefix", help="install into this prefix, skipping what the environment already has")
    d.add_argument("--pyproject", default="pyproject.toml")
    d.add_argument("--constraints", default="constraints.txt")
    k = sub.add_parser("lock", help="write the whole project's resolution (name==version lines) to a file")
    k.add_argument("--out", required=True)
    k.add_argument("--pyproject", default="pyproject.toml")
    k.add_argument("--constraints", default="constraints.txt")
    b = sub.add_parser("backend", help="prepare the project's build backend in a throwaway venv")
    b.add_argument("--pyproject", default="pyproject.toml")
    c = sub.add_parser("code", help="build and install the project itself, without dependencies, offline")
    c.add_argument("src")
    c.add_argument("--prefix")
    args = parser.parse_args()
    {"lock": write_lock, "deps": deps, "backend": backend, "code": code}[args.command](args)


if __name__ == "__main__":
    main()
