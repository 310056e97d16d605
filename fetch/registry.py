"""The dataset registry: ``fetch/datasets.yaml`` read, validated and expanded into ``REGISTRY`` at import.

``REGISTRY`` maps a dataset name to a plain dict (the shape ``main(registry=...)`` and ``fetch_dataset`` also
accept, e.g. from tests)::

    {
        "description": str,          # one line, shown by --list
        "homepage": str,             # where a person can check the files by hand
        "verified": bool,            # False: URLs not confirmed; the CLI prints a warning before downloading
        "notes": str,                # optional: what the files hold, what is *not* in them
        "files": [
            {
                "name": str,         # short name for --only (unique in the dataset)
                "url": str,
                "path": str,         # destination, relative to <dest>/<dataset>/ (no "..", not absolute)
                "sha256": str,       # optional, only where the source publishes it
                "md5": str,          # optional, only where the source publishes it
                "size": int,         # optional, bytes, only where the source publishes it (checked)
                "optional": bool,    # optional: fetched only when named with --only
            },
        ],
    }

In the YAML a dataset may also hold ``tissue_files`` (a list of tissue names and templates for each file's name,
path and url), expanded here into the leading entries of ``files``; a key present in the YAML is present in the
dict, an absent one is absent (so ``entry.get("optional")`` reads as before). ``--only`` accepts a file's ``name``
or the file name of its ``path``.

The shape is a pydantic model (``Dataset``); ``check_registry`` applies it, and the checks no model expresses (at
least one file, no duplicate name or path), to any registry, and turns the first problem into a one-line
``UserError`` naming the source, the dataset, the file and the key.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import UserError

from .checksums import SUMS_FILE

DATASETS_FILE = Path(__file__).with_name("datasets.yaml")
_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}


def gtex_slug(tissue: str) -> str:
    """The file-name slug of a GTEx tissue (SMTSD) name: 'Brain - Cortex' -> 'brain_cortex'."""
    return re.sub(r"[()]", "", tissue).replace(" - ", "_").replace(" ", "_").lower()


# ---------------------------------------------------------------------------------------------------------------
# The shape
# ---------------------------------------------------------------------------------------------------------------


class FileEntry(BaseModel):
    """One file of a dataset."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    path: str = Field(min_length=1)
    sha256: str | None = None
    md5: str | None = None
    size: int | None = Field(default=None, ge=0)
    optional: bool = False

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"url must be http(s): {url}")
        return url

    @field_validator("path")
    @classmethod
    def _inside(cls, path: str) -> str:
        p = PurePosixPath(path)
        if p.is_absolute() or ".." in p.parts or path.endswith("/") or p.name == SUMS_FILE:
            raise ValueError(f"path must be a relative file path inside the dataset folder: {path}")
        return path

    @field_validator("sha256", "md5")
    @classmethod
    def _hex(cls, digest: str | None, info) -> str | None:
        if digest is not None and not _HEX[info.field_name].match(digest):
            raise ValueError(f"'{info.field_name}' is not a lower-case hex {info.field_name} digest")
        return digest


class TissueFiles(BaseModel):
    """One file per tissue: ``{tissue}`` and ``{slug}`` (``gtex_slug``) in each template, ``{path}`` in the url."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tissues: list[str] = Field(min_length=1)
    name: str
    path: str
    url: str

    @field_validator("name", "path", "url")
    @classmethod
    def _template(cls, template: str, info) -> str:
        try:
            template.format(tissue="t", slug="s", **({"path": "p"} if info.field_name == "url" else {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad template {template!r} ({exc.__class__.__name__}: {exc})") from None
        return template

    def expand(self) -> list[dict[str, Any]]:
        files = []
        for tissue in self.tissues:
            slug = gtex_slug(tissue)
            path = self.path.format(tissue=tissue, slug=slug)
            name = self.name.format(tissue=tissue, slug=slug)
            files.append({"name": name, "url": self.url.format(tissue=tissue, slug=slug, path=path), "path": path})
        return files


class Dataset(BaseModel):
    """A dataset: what ``--list`` shows about it and its files."""

    model_config = ConfigDict(extra="forbid", strict=True)

    description: str = ""
    homepage: str | None = None
    verified: bool = False
    notes: str | None = None
    tissue_files: TissueFiles | None = None
    files: list[FileEntry] = []


# ---------------------------------------------------------------------------------------------------------------
# Checking and loading
# ---------------------------------------------------------------------------------------------------------------


def _error(source: str, name: str, raw: Any, err: ValidationError) -> UserError:
    """The first problem pydantic found, as one line naming the dataset, the file and the key. An unknown key comes
    first: a misspelt ``url`` is reported as itself, not as the ``url`` it leaves missing."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = list(first["loc"])
    if loc and loc[0] == "files" and (len(loc) == 1 or not isinstance(loc[1], int)):
        return UserError(f"{source}: dataset '{name}' has no 'files' list")
    where = f"{source}: dataset '{name}'"
    if len(loc) >= 2 and loc[0] == "files":
        entry = raw["files"][loc[1]]
        where += f", file {entry.get('name', loc[1]) if isinstance(entry, dict) else loc[1]!r}"
        loc = loc[2:]
    key = ".".join(str(p) for p in loc)
    kind = first["type"]
    if kind == "extra_forbidden":
        return UserError(f"{where}: unknown key '{key}' (check the spelling; see fetch/datasets.yaml)")
    if kind == "missing" or (key in ("name", "url", "path") and kind in ("string_type", "string_too_short")):
        return UserError(f"{where}: missing '{key}'")
    if key == "size":
        return UserError(f"{where}: 'size' must be a number of bytes")
    if key in _HEX:
        return UserError(f"{where}: '{key}' is not a lower-case hex {key} digest")
    if kind == "value_error":  # our validators' messages; "url must be ..." names its key already
        message = str(first["ctx"]["error"])
        return UserError(f"{where}: {message if message.startswith(key + ' ') else f'{key}: {message}'}")
    got = first.get("input")
    got_s = f" (got {got!r})" if not isinstance(got, dict | list) else ""
    return UserError(f"{where}: {key or 'the dataset'}: {first['msg']}{got_s}")


def _validate(name: str, raw: Any, source: str) -> Dataset:
    try:
        return Dataset.model_validate(raw)
    except ValidationError as err:
        raise _error(source, name, raw, err) from None


def check_registry(registry: dict[str, dict[str, Any]], source: str = "registry") -> None:
    """Validate a registry's shape; a malformed one is a ``UserError`` naming the dataset, the file and the key."""
    for name, raw in registry.items():
        ds = _validate(name, raw, source)
        if ds.tissue_files is not None:
            raise UserError(f"{source}: dataset '{name}': 'tissue_files' is for a datasets YAML (load_registry)")
        if not ds.files:
            raise UserError(f"{source}: dataset '{name}' has no 'files' list")
        seen_names, seen_paths = set(), set()
        for f in ds.files:
            path = str(PurePosixPath(f.path))
            if f.name in seen_names or path in seen_paths:
                raise UserError(f"{source}: dataset '{name}', file {f.name!r}: duplicate name or path")
            seen_names.add(f.name)
            seen_paths.add(path)


def expand(name: str, raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A dataset as the YAML states it -> the registry's dict: ``tissue_files`` become the first files."""
    ds = _validate(name, raw, source)
    out = {key: value for key, value in raw.items() if key != "tissue_files"}
    if ds.tissue_files is not None:
        out["files"] = [*ds.tissue_files.expand(), *raw.get("files", [])]
    return out


def load_registry(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read, expand and check a datasets YAML (default: ``fetch/datasets.yaml``); a ``UserError`` when malformed."""
    source = "fetch/datasets.yaml" if path is None else str(path)
    path = DATASETS_FILE if path is None else Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{source}: cannot read the dataset registry ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{source}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{source}: expected a mapping of dataset names to datasets")
    registry = {str(name): expand(str(name), ds, source) for name, ds in raw.items()}
    check_registry(registry, source)
    return registry


REGISTRY: dict[str, dict[str, Any]] = load_registry()


# ---------------------------------------------------------------------------------------------------------------
# Looking up
# ---------------------------------------------------------------------------------------------------------------


def get_dataset(name: str, registry: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise UserError(f"unknown dataset '{name}' (known: {', '.join(sorted(registry))}; python -m fetch --list)")
    return registry[name]


def select_files(name: str, dataset: dict[str, Any], only: Iterable[str] | None) -> list[dict[str, Any]]:
    files = dataset["files"]
    if not only:
        return [f for f in files if not f.get("optional")]
    chosen = []
    for want in only:
        match = [f for f in files if want in (f["name"], PurePosixPath(f["path"]).name)]
        if not match:
            raise UserError(f"dataset '{name}' has no file '{want}' (its names: python -m fetch {name} --list)")
        chosen.extend(f for f in match if f not in chosen)
    return chosen
