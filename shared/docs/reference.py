"""The reference pages' generated parts, made from what the code declares: ``stages`` (each stage's roles, config
sections and outputs, from its ``StageSpec``), ``config`` (every config key with its type, default and comment, from
the pydantic sections the stages declare) and ``methods`` (explain's attribution methods, from
stages/explain/methods.py)."""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..config import ROLES, TOP_KEYS, Resources, Section, StageSpec, _section_models, discover_stages
from ..sources import REPO_ROOT


def _own_stages() -> dict[str, StageSpec]:
    """The repository's own stages (not those plugged in through ONCOXAI_STAGE_PATH), data first, then trainers,
    explainers, the rest."""
    specs = {n: s for n, s in discover_stages().items() if (REPO_ROOT / "stages" / n / "params.py").is_file()}

    def rank(name: str) -> int:
        provides = specs[name].provides
        return next((i for i, role in enumerate(("dataset", "classifiers", "explanations")) if role in provides), 3)

    return {name: specs[name] for name in sorted(specs, key=lambda n: (rank(n), n))}


def stages_section() -> str:
    lines = [
        "Roles: a stage reads every enabled stage that provides a role it requires or uses, never a stage by its name.",
        "",
    ]
    lines += [f"- `{role}`: {text}" for role, text in ROLES.items()]
    for name, spec in _own_stages().items():
        lines += ["", f"## {name}", "", spec.description + ".", ""]
        facts = [
            f"provides {', '.join(f'`{r}`' for r in spec.provides)}" if spec.provides else "",
            f"requires {', '.join(f'`{r}`' for r in spec.requires)}" if spec.requires else "",
            f"uses {', '.join(f'`{r}`' for r in spec.uses)} when enabled" if spec.uses else "",
            f"config sections {', '.join(f'`{s}`' for s in spec.sections)}" if spec.sections else "",
        ]
        lines += ["; ".join(f for f in facts if f).capitalize() + ".", ""]
        lines += [f"| `outputs/<experiment>/{name}/...` | what it holds | written |", "| --- | --- | --- |"]
        for out in spec.outputs:
            lines.append(f"| `{out.path}` | {out.description} | {out.when or 'always'} |")
        lines.append("| `manifest.json` | config, input hashes, packages, commit, device, wall time, files | always |")
    return "\n".join(lines) + "\n"


# ---- the configuration reference ----------------------------------------------------------------------------------


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """{field: the ``#:`` comment lines right above it, joined} for a pydantic model and its bases. Written by hand:
    pydantic reads docstrings below fields (``use_attribute_docstrings``), not the ``#:`` comments above them that
    this code base (and Sphinx's autodoc) uses."""
    comments: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass.__module__.startswith("pydantic"):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # made by create_model: no source of its own
            continue
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                above, i = [], node.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#:"):
                    above.insert(0, lines[i].strip()[2:].strip())
                    i -= 1
                if above:
                    comments[node.target.id] = " ".join(above)
    return comments


def _sub_section(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def type_text(annotation: Any) -> str:
    """A config reader's name for a type: ``a | b`` for a Literal, ``list of ...``, ``... | null``, ``path``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        from ..config import INPUT_DIR, INPUT_FILE

        kind = "file" if INPUT_FILE in args[1:] else "folder" if INPUT_DIR in args[1:] else None
        return f"path ({kind})" if kind else type_text(args[0])
    if origin in (list, tuple):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {type_text(args[0])} → {type_text(args[1])}"
    if args and (origin is typing.Union or type(annotation).__name__ == "UnionType"):
        return " \\| ".join("null" if a is type(None) else type_text(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return {str: "text", int: "integer", float: "number", bool: "true \\| false"}.get(annotation, str(annotation))


def _bounds(field) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    found = []
    for meta in field.metadata:
        for attr, sign in signs.items():
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return f" ({', '.join(found)})" if found else ""


def _default_text(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    import yaml

    return f"`{yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix('...').strip()}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_tables(key: str, model: type[BaseModel], level: int, reader: str = "") -> list[str]:
    """One table per section (dotted key) and one per sub-section below it."""
    lines = [f"{'#' * level} `{key}`", ""] + ([f"Read by {reader}.", ""] if reader else [])
    doc = inspect.getdoc(model)
    if doc and doc != inspect.getdoc(Section):
        lines += [" ".join(doc.split()), ""]
    comments, subs = field_comments(model), []
    lines += ["| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        sub = _sub_section(field.annotation)
        if sub is not None:
            lines.append(f"| `{name}` | section | | see [`{key}.{name}`](#{(key + '.' + name).replace('.', '')}) |")
            subs.append((name, sub))
            continue
        kind = type_text(field.annotation) + _bounds(field)
        lines.append(f"| `{name}` | {kind} | {_default_text(field)} | {_cell(comments.get(name, ''))} |")
    for name, sub in subs:
        lines += [""] + _section_tables(f"{key}.{name}", sub, level + 1)
    return lines


def config_section() -> str:
    """Every key of an experiment config: the top-level keys, then each stage's sections in stage order."""
    lines = ["## Top-level keys", "", "| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    for key, (kind, default, text) in TOP_KEYS.items():
        shown = "required" if default is ... or hasattr(default, "metadata") else f"`{default}`"
        lines.append(f"| `{key}` | {type_text(kind)} | {shown} | {_cell(text)} |")
    lines += [""] + _section_tables(
        "resources.<stage>", Resources, 2, reader="the Snakemake workflow (shared.workflow)"
    )
    specs = _own_stages()
    models = _section_models(specs)
    for stage, spec in specs.items():
        for key in spec.sections:
            lines += [""] + _section_tables(key, models[key], 2, reader=stage)
    return "\n".join(lines) + "\n"


def methods_section() -> str:
    """A table of explain's attribution methods, made from their declarations (stages/explain/methods.py)."""
    from stages.explain.methods import METHODS

    lines = [
        "| method | signed | inputs | options (`explain.<key>`: defaults) | what it shows |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cls in METHODS.values():
        options = ""
        if cls.Options is not None:
            defaults = ", ".join(f"{k} {f.default!r}" for k, f in cls.Options.model_fields.items())
            options = f"`{cls.options_key}`: {defaults}"
        kinds = ", ".join(cls.kinds)
        lines.append(f"| `{cls.name}` | {'yes' if cls.signed else 'no'} | {kinds} | {options} | {cls.description} |")
    return "\n".join(lines) + "\n"
