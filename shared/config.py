"""Experiment configuration: one YAML file per experiment, validated before any work starts.

Layout of a config file::

    name: demo                 # experiment name -> outputs/<name>/
    seed: 0
    device: auto               # auto (CUDA when present) | cpu | cuda | cuda:1 ...
    stages: [preprocess, train_torch, explain, report]
    expression: {...}          # sections declared by the stages (stages/<stage>/params.py)
    preprocess: {...}

Each stage package declares the sections it reads in ``stages/<stage>/params.py`` as a ``STAGE = StageSpec(...)``.
They are discovered here, so a new stage plugs in without changing this module. Every section forbids
unknown keys and checks types strictly; the first problem is raised as a one-line ``UserError`` naming the key.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .errors import UserError


class Section(BaseModel):
    """Base of every config section: unknown keys and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _InputFileMarker:
    """Marks a string field as an input file: it must exist, and its hash enters the stage fingerprint."""


class _InputDirMarker:
    """Marks a string field as an input folder (an MRI cohort): it must exist; the listing of its files (relative
    path, size, modification time) enters the stage fingerprint (hashing every byte of a cohort would take minutes)."""


INPUT_FILE = _InputFileMarker()
InputFile = Annotated[str, INPUT_FILE]
INPUT_DIR = _InputDirMarker()
InputDir = Annotated[str, INPUT_DIR]


#: The roles a stage can play. A stage that reads a role reads every enabled stage providing it, found through
#: these declarations and never by a stage's name, so a new trainer plugs in by adding its own folder.
ROLES = {
    "dataset": "prepared samples for training: samples.csv (sample, label, label_index, split, group), dataset.json, "
    "the input arrays, and for genes genes.csv and the pixel->gene map",
    "classifiers": "trained models in the classifier result layout (shared.evaluation.results): models.json and per "
    "model metrics.json, folds.csv, per_class.csv, confusion matrices, roc.csv, predictions",
    "explanations": "attributions in the explanation layout: metrics.json (per model and method, with each method's "
    "description) and per model and method top_genes.csv, gene_attributions.csv, figures",
}


@dataclass(frozen=True)
class Output:
    """A file (or a pattern of files) a stage writes, relative to its folder.

    ``{model}`` and ``{method}`` stand for one folder per model / method; ``**`` for any files below. ``when`` says
    in words when the file is written; a file with a ``when`` may be missing from a run, one without must not.
    """

    path: str
    description: str
    when: str = ""

    def matches(self, relpath: str) -> bool:
        """Whether a file (a path relative to the stage's folder, with /) is this output."""
        out = ""
        for token in re.split(r"(\{model\}|\{method\}|\*\*|\*)", self.path):
            out += {"{model}": r"[^/]+", "{method}": r"[^/]+", "**": r".+", "*": r"[^/]*"}.get(token, re.escape(token))
        return re.fullmatch(out, relpath) is not None


@dataclass(frozen=True)
class StageSpec:
    """What a stage declares about itself: the roles it provides and reads, the config sections it reads and the
    files it writes (``outputs``: tests check every run against them; the docs' tables are made from them)."""

    name: str
    provides: tuple[str, ...] = ()
    #: roles of which at least one provider must be enabled
    requires: tuple[str, ...] = ()
    #: roles read when a provider is enabled
    uses: tuple[str, ...] = ()
    sections: dict[str, type[Section]] = field(default_factory=dict)
    outputs: tuple[Output, ...] = ()
    description: str = ""

    def __post_init__(self):
        for role in (*self.provides, *self.requires, *self.uses):
            assert role in ROLES, f"stage {self.name}: unknown role {role!r} (known: {', '.join(ROLES)})"


def discover_stages() -> dict[str, StageSpec]:
    """Import ``stages.<name>.params`` for every stage package and collect their ``STAGE`` specs."""
    import stages

    specs: dict[str, StageSpec] = {}
    for mod in sorted(pkgutil.iter_modules(stages.__path__), key=lambda m: m.name):
        if not mod.ispkg:
            continue
        try:
            params = importlib.import_module(f"stages.{mod.name}.params")
        except ModuleNotFoundError as exc:
            if exc.name == f"stages.{mod.name}.params":
                continue
            raise
        spec: StageSpec = params.STAGE
        assert spec.name == mod.name, f"stages/{mod.name}/params.py declares STAGE name {spec.name!r}"
        specs[spec.name] = spec
    return specs


def _section_models(specs: dict[str, StageSpec]) -> dict[str, type[Section]]:
    models: dict[str, type[Section]] = {}
    for spec in specs.values():
        for key, model in spec.sections.items():
            if key in models and models[key] is not model:
                raise AssertionError(f"config section {key!r} is declared by two stages with different models")
            models[key] = model
    return models


class Resources(Section):
    """What the Snakemake workflow (`python -m shared.workflow`, docs/how-to/cluster.md) asks its executor for, for one
    stage, e.g. `resources: {train_torch: {gpus: 1, mem_mb: 32000}}`. A key left out (null) takes the stage's default
    (the table in docs/how-to/cluster.md). Make ignores this section, and no stage's fingerprint includes it."""

    #: CPU cores for the stage's job (Snakemake's threads; SLURM's --cpus-per-task; locally capped at --cores)
    threads: int | None = Field(None, ge=1)
    #: memory for the job in MB (Snakemake's mem_mb; SLURM's --mem)
    mem_mb: int | None = Field(None, ge=1)
    #: GPUs for the job (Snakemake's gpu resource: the SLURM executor asks sbatch for them, the Kubernetes one puts
    #: them in the pod's request); 0: none. With device auto the stage uses the GPU it is given
    gpus: int | None = Field(None, ge=0)
    #: wall-time limit in minutes (Snakemake's runtime; SLURM's --time)
    runtime: int | None = Field(None, ge=1)
    #: further Snakemake resources, passed as they are: slurm_partition, slurm_account, slurm_extra, a Kubernetes
    #: machine_type ...
    extra: dict[str, str | int] = Field(default_factory=dict)


#: Each stage's resources where its config sets none (``resources:`` overrides them key by key); a stage not listed
#: (one plugged in through ONCOXAI_STAGE_PATH) gets ``DEFAULT_RESOURCES["*"]``. No GPU by default: a job that asks
#: for one waits forever where there is none, and every stage runs on CPU; ask for one per stage in the config.
DEFAULT_RESOURCES: dict[str, dict[str, int]] = {
    "preprocess": {"threads": 4, "mem_mb": 16000, "gpus": 0, "runtime": 120},
    "train_torch": {"threads": 8, "mem_mb": 16000, "gpus": 0, "runtime": 720},
    "train_tf_gradcam": {"threads": 8, "mem_mb": 16000, "gpus": 0, "runtime": 720},
    "train_3d_mri": {"threads": 8, "mem_mb": 32000, "gpus": 0, "runtime": 1440},
    "explain": {"threads": 8, "mem_mb": 16000, "gpus": 0, "runtime": 720},
    "report": {"threads": 1, "mem_mb": 4000, "gpus": 0, "runtime": 30},
    "*": {"threads": 4, "mem_mb": 8000, "gpus": 0, "runtime": 120},
}


def _has_required_fields(model: type[BaseModel]) -> bool:
    return any(f.is_required() for f in model.model_fields.values())


@dataclass(frozen=True)
class Experiment:
    """A validated experiment config."""

    name: str
    seed: int
    device: str
    stages: tuple[str, ...]
    sections: dict[str, Section]
    specs: dict[str, StageSpec]
    source: str
    #: per stage, what the Snakemake workflow asks for (only the stages the config names; see resources_for)
    resources: dict[str, Resources] = field(default_factory=dict)

    def section(self, key: str) -> Section:
        try:
            return self.sections[key]
        except KeyError:
            raise UserError(f"{self.source}: missing section '{key}'") from None

    def stage_sections(self, stage: str) -> dict[str, Any]:
        """The config values a stage depends on (its sections plus the seed), for manifests and fingerprints."""
        spec = self.specs[stage]
        out: dict[str, Any] = {"seed": self.seed}
        for key in spec.sections:
            out[key] = self.sections[key].model_dump(mode="json")
        return out

    def providers(self, role: str) -> list[str]:
        """The enabled stages that provide ``role``, in pipeline order."""
        return [s for s in self.stages if role in self.specs[s].provides]

    def upstream(self, stage: str) -> list[str]:
        """The enabled stages whose results ``stage`` reads (providers of the roles it requires or uses)."""
        return _upstream(stage, self.stages, self.specs)

    def input_files(self, stage: str) -> list[str]:
        """Paths of the input files named by the stage's sections (fields typed ``InputFile``)."""
        files: list[str] = []
        for key in self.specs[stage].sections:
            files.extend(_input_files(self.sections[key]))
        return files

    def input_dirs(self, stage: str) -> list[str]:
        """Paths of the input folders named by the stage's sections (fields typed ``InputDir``)."""
        dirs: list[str] = []
        for key in self.specs[stage].sections:
            dirs.extend(_input_files(self.sections[key], INPUT_DIR))
        return dirs

    def resources_for(self, stage: str) -> dict[str, Any]:
        """The stage's Snakemake resources: its ``DEFAULT_RESOURCES`` with the config's ``resources.<stage>`` keys over
        them (``extra`` merged in as further resources)."""
        out: dict[str, Any] = dict(DEFAULT_RESOURCES.get(stage, DEFAULT_RESOURCES["*"]))
        given = self.resources.get(stage)
        if given is not None:
            out.update({k: v for k, v in given.model_dump(exclude={"extra"}).items() if v is not None})
            out.update(given.extra)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "seed": self.seed, "device": self.device, "stages": list(self.stages)}
        if self.resources:
            out["resources"] = {k: r.model_dump(mode="json", exclude_defaults=True) for k, r in self.resources.items()}
        for key, sec in self.sections.items():
            out[key] = sec.model_dump(mode="json")
        return out


def _marks_input(annotation: Any, marker=INPUT_FILE) -> bool:
    """True for ``InputFile`` and for containers/optionals of it (``list[InputFile]``, ``InputFile | None``)."""
    if any(m is marker for m in getattr(annotation, "__metadata__", ())):
        return True
    return any(_marks_input(arg, marker) for arg in get_args(annotation))


def _input_files(section: BaseModel, marker=INPUT_FILE) -> list[str]:
    files: list[str] = []
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if value is None:
            continue
        if any(m is marker for m in info.metadata) or _marks_input(info.annotation, marker):
            files.extend(value if isinstance(value, list) else [value])
        elif isinstance(value, BaseModel):
            files.extend(_input_files(value, marker))
    return files


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train_torch.epochs=2'`` -> (['train_torch', 'epochs'], 2). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train_torch.epochs=2")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"--set {text!r}: empty key component")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        _set(data, parts, value, f"--set {text!r}")
    return data


def _set(data: dict[str, Any], parts: list[str], value: Any, where: str) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"{where}: '{'.'.join(parts[: i + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_variant(raw: dict[str, Any], variant: str | None, source: str) -> dict[str, Any]:
    """The config with its ``variants:`` block removed and, when ``variant`` is named, that variant's settings
    applied (dotted keys, as ``--set``) and ``_<variant>`` appended to the experiment name, so that the variant's
    outputs sit beside the default's (``outputs/<name>_<variant>/``)."""
    data = copy.deepcopy(raw)
    variants = data.pop("variants", None) or {}
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise UserError(f"config error in {source}: variants: expected a mapping of name -> {{dotted.key: value}}")
    if variant is None:
        return data
    if variant not in variants:
        raise UserError(f"config error in {source}: no variant '{variant}' (variants: {', '.join(variants) or 'none'})")
    for key, value in variants[variant].items():
        _set(data, str(key).split("."), value, f"config error in {source}: variants.{variant}.{key}")
    data["name"] = f"{data.get('name')}_{variant}"
    return data


def variant_names(path: str | Path) -> list[str]:
    """The names under a config file's ``variants:`` block."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return list((raw.get("variants") or {}) if isinstance(raw, dict) else {})


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p != "__root__")
    if first["type"] == "extra_forbidden":
        return (
            f"config error in {source}: unknown key '{loc}' (check the spelling; see docs/reference/configuration.md)"
        )
    if first["type"] == "missing":
        return f"config error in {source}: missing key '{loc}'"
    got = first.get("input")
    if loc == "name" and isinstance(got, str):
        return (
            f"config error in {source}: name: {got!r} is not a plain folder name (letters, digits, _ . -, "
            "starting with a letter or digit; no '/' or '..'): outputs go to outputs/<name>/"
        )
    got_s = f" (got {got!r})" if not isinstance(got, dict) else ""
    return f"config error in {source}: {loc}: {first['msg']}{got_s}"


#: The experiment-wide keys, {key: (type, default, what it is)}; every other top-level key is a stage's section.
TOP_KEYS: dict[str, tuple[Any, Any, str]] = {
    "name": (
        str,
        Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        "the experiment's name (letters, digits, '_', '.', '-'): outputs go to outputs/<name>/",
    ),
    "seed": (int, 0, "seeds numpy, torch, Python and TensorFlow, the splits and every random draw"),
    "device": (str, "auto", "auto (CUDA when present) | cpu | cuda | cuda:1 ..."),
    "stages": (list[str], ..., "the stages to run, e.g. [preprocess, train_torch, explain, report]"),
    "resources": (
        dict[str, Resources],
        {},
        "per stage, the threads, memory, GPUs and run time the Snakemake workflow asks for (see `resources.<stage>` "
        "below); make ignores it",
    ),
}


def _top_model(specs: dict[str, StageSpec]) -> type[BaseModel]:
    fields: dict[str, Any] = {key: (kind, default) for key, (kind, default, _) in TOP_KEYS.items()}
    for key, model in _section_models(specs).items():
        default = None if _has_required_fields(model) else Field(default_factory=model)
        fields[key] = (model | None, default)
    return create_model("ExperimentConfig", __config__=ConfigDict(extra="forbid", strict=True), **fields)


def validate(raw: Any, source: str = "<config>", check_files: bool = True) -> Experiment:
    """Validate a raw config mapping. Raises ``UserError`` with a one-line message naming the key."""
    if not isinstance(raw, dict):
        raise UserError(f"config error in {source}: expected a mapping of keys at the top level")
    specs = discover_stages()
    try:
        model = _top_model(specs).model_validate(raw)
    except ValidationError as err:
        raise UserError(_format_error(source, err)) from None

    enabled = list(model.stages)
    for stage in enabled:
        if stage not in specs:
            raise UserError(f"config error in {source}: stages: unknown stage '{stage}' (known: {', '.join(specs)})")
        for role in specs[stage].requires:
            if not any(role in specs[s].provides for s in enabled if s in specs):
                known = [s for s in specs if role in specs[s].provides]
                raise UserError(
                    f"config error in {source}: stages: '{stage}' needs a stage that provides {role} "
                    f"({' or '.join(known) or 'none is installed'}); add one to stages"
                )
    for stage in model.resources:
        if stage not in specs:
            raise UserError(f"config error in {source}: resources: unknown stage '{stage}' (known: {', '.join(specs)})")
    sections: dict[str, Section] = {}
    for stage in enabled:
        for key in specs[stage].sections:
            value = getattr(model, key)
            if value is None:
                raise UserError(f"config error in {source}: missing section '{key}' (needed by stage {stage})")
            sections[key] = value
    exp = Experiment(
        name=model.name,
        seed=model.seed,
        device=model.device,
        stages=tuple(_ordered(enabled, specs)),
        sections=sections,
        specs=specs,
        source=source,
        resources=dict(model.resources),
    )
    if check_files:
        for stage in exp.stages:
            for path in exp.input_files(stage):
                if not Path(path).is_file():
                    raise UserError(
                        f"config error in {source}: input file not found: {path} (fix the path or create it)"
                    )
            for path in exp.input_dirs(stage):
                if not Path(path).is_dir():
                    raise UserError(
                        f"config error in {source}: input folder not found: {path} (fix the path or create it)"
                    )
    return exp


def _upstream(stage: str, enabled, specs: dict[str, StageSpec]) -> list[str]:
    roles = set(specs[stage].requires) | set(specs[stage].uses)
    return [s for s in enabled if s != stage and roles & set(specs[s].provides)]


def _ordered(enabled: list[str], specs: dict[str, StageSpec]) -> list[str]:
    """Enabled stages in dependency order (stable with respect to the config's order)."""
    done: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in trail:
            raise AssertionError(f"stage dependency cycle: {' -> '.join(trail + (name,))}")
        for need in _upstream(name, enabled, specs):
            visit(need, trail + (name,))
        done.append(name)

    for name in enabled:
        visit(name, ())
    return done


def load(
    path: str | Path, overrides: list[str] | None = None, check_files: bool = True, variant: str | None = None
) -> Experiment:
    """Read, apply the named ``variant`` and the ``overrides``, and validate a config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"config file not found: {path} (pass CONFIG=configs/<experiment>.yaml)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config error in {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is None:
        raise UserError(f"config error in {path}: the file is empty")
    if isinstance(raw, dict):
        raw = apply_overrides(apply_variant(raw, variant, str(path)), overrides or [])
    return validate(raw, source=str(path), check_files=check_files)


def check(paths: list[str]) -> int:
    """``python -m shared.config check FILE...``: validate each config and each of its variants without needing
    the data (missing input files are listed, not errors). One line per experiment; exit 2 on the first error."""
    for path in paths:
        for variant in [None, *variant_names(path)]:
            try:
                exp = load(path, variant=variant)
                missing = ""
            except UserError as exc:
                if "input file not found" not in str(exc) and "input folder not found" not in str(exc):
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                exp = load(path, check_files=False, variant=variant)
                absent = [
                    p for s in exp.stages for p in [*exp.input_files(s), *exp.input_dirs(s)] if not Path(p).exists()
                ]
                missing = f"; {len(absent)} input(s) not here yet, e.g. {absent[0]}"
            print(
                f"ok: {path}{f' (variant {variant})' if variant else ''}: {exp.name}, stages {', '.join(exp.stages)}"
                f"{missing}"
            )
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "check":
        print("usage: python -m shared.config check CONFIG.yaml [...]", file=sys.stderr)
        raise SystemExit(2)
    # run through the imported module: the stages' declarations mark their input files with *its* markers
    from shared import config as _config

    raise SystemExit(_config.check(sys.argv[2:]))
