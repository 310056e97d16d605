"""Which files of the repository a stage runs: the one source of truth for change detection.

A stage's sources are the modules its entry point (``stages/<stage>/__main__.py``) and its config declaration
(``params.py``) import, followed recursively through the repository's own packages (imports anywhere in a module,
relative or absolute, including ``from package import module``), the ``__init__.py`` of every package on the way,
and the package data beside the stage's code (templates). Nothing else: editing the fixture generator, a benchmark
or another stage changes no stage's sources.

Used by the stage fingerprint (``shared.artifacts.code_hash``), by the make plan (a stage's prerequisites) and by
the container images (``shared.containers``: one hash per image). ``git_commit`` is the commit string every
manifest records, and the one ``shared.containers`` hands to a container. Standard library only, so that it runs
without the project's environment::

    python3 -m shared.sources list STAGE     # the files, one per line, relative to the repository
    python3 -m shared.sources hash STAGE [EXTRA_FILE ...]   # STAGE "-": the extra files only
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the project's own top-level packages: imports of anything else (numpy, torch, ...) are not followed, so the same
#: files are found in the repository and where the project is installed (a container's site-packages)
OWN_PACKAGES = ("shared", "stages")
#: files beside a stage's modules that it reads at run time (package data)
DATA_SUFFIXES = {".html", ".css", ".j2", ".js", ".json", ".yaml"}


def stage_dirs() -> list[Path]:
    """Folders holding stage packages: ``stages/`` and those listed in ``ONCOXAI_STAGE_PATH`` (see stages/)."""
    extra = [Path(p) for p in os.environ.get("ONCOXAI_STAGE_PATH", "").split(os.pathsep) if p]
    return [REPO_ROOT / "stages", *extra]


def module_file(name: str) -> Path | None:
    """The file of a repository module (``pkg/mod.py`` or ``pkg/mod/__init__.py``), or None for anything else.
    ``stages.<name>...`` is looked up in every stage folder, as the ``stages`` package's ``__path__`` does."""
    parts = name.split(".")
    if parts[0] not in OWN_PACKAGES:
        return None
    if parts[0] == "stages" and len(parts) > 1:
        places = [(d, parts[1:]) for d in stage_dirs()]
    else:
        places = [(REPO_ROOT, parts)]
    for base, rest in places:
        path = base.joinpath(*rest)
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


@cache
def _imports(path: Path, module: str) -> tuple[str, ...]:
    """Module names the file ``path`` (module ``module``) imports: ``imported_names`` of the whole file."""
    return imported_names(ast.parse(path.read_text(), filename=str(path)), path, module)


def imported_names(tree: ast.AST, path: Path, module: str) -> tuple[str, ...]:
    """Module names the syntax tree ``tree`` (the file ``path``, module ``module``, or a part of it) imports: absolute
    names, relative imports resolved; ``from a import b`` yields both a and a.b."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.append(prefix)
            names += [f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*"]
    return tuple(n for n in names if n)


def closure(modules: list[str]) -> list[Path]:
    """Every repository file reached from ``modules`` by imports, with the packages' ``__init__.py``."""
    seen: dict[Path, str] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            sub = ".".join(parts[:i])
            path = module_file(sub)
            if path is not None and path not in seen:
                seen[path] = sub
                todo += _imports(path, sub)
    return sorted(seen)


def stage_sources(stage: str) -> list[Path]:
    """The files that make up stage ``stage`` (absolute paths, sorted)."""
    main = module_file(f"stages.{stage}.__main__")
    if main is None:
        raise FileNotFoundError(f"no stage package '{stage}' (stages/{stage}/__main__.py)")
    files = set(closure([f"stages.{stage}.__main__", f"stages.{stage}.params"]))
    for path in main.parent.rglob("*"):
        if path.is_file() and path.suffix in DATA_SUFFIXES and "__pycache__" not in path.parts:
            files.add(path)
    return sorted(files)


def display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def files_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(display(path).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The commit of the code that ran in ``repo``, "-dirty" appended when tracked files differ from it
    (``ONCOXAI_GIT_COMMIT`` when set by a container runner)."""
    if env := os.environ.get("ONCOXAI_GIT_COMMIT"):
        return env
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] not in ("list", "hash"):
        print("usage: python3 -m shared.sources list|hash STAGE [EXTRA_FILE ...]", file=sys.stderr)
        return 2
    command, stage, extra = args[0], args[1], [Path(p).resolve() for p in args[2:]]
    try:
        files = [] if stage == "-" else stage_sources(stage)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if command == "list":
        print("\n".join(display(p) for p in files))
    else:
        print(files_hash(files + sorted(extra))[:16])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
