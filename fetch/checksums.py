"""Checksums: the published ones in the registry, and ``SHA256SUMS``, the record of every file fetched so far.

Trust on first use
    Where the source publishes a checksum, the registry entry carries it (``md5`` or ``sha256``) and every
    download and every present file is checked against it. Of the built-in sources only GDC publishes one, and
    none is invented: instead the first successful download records the file's sha256 in
    ``<dest>/<dataset>/SHA256SUMS`` (the ``sha256sum`` format: ``<hex>  <path>``; ``cd data/gtex-v8 && sha256sum -c
    SHA256SUMS`` checks it), and every later run verifies the present file, or a new download, against that
    record. A mismatch deletes the ``.part`` and stops with a one-line error naming the file; if the source really
    did change, delete the file's line from SHA256SUMS and fetch again. A file that is already present with a good
    checksum is skipped without any request. A present file with no checksum known anywhere (SHA256SUMS deleted,
    file copied in by hand) is trusted as it is and its sha256 is recorded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shared.artifacts import write_text_atomic
from shared.errors import UserError
from shared.logs import get_logger

log = get_logger("fetch")

SUMS_FILE = "SHA256SUMS"
CHUNK = 1 << 20


class Sums:
    """``<dest>/<dataset>/SHA256SUMS``: the sha256 of every file fetched so far (trust on first use)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, str] = {}
        if path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip() or line.startswith("#"):
                    continue
                m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
                if not m:
                    raise UserError(f"{path}:{n}: not a sha256sum line ('<64 hex>  <path>'); fix or delete the line")
                self.entries[m.group(2)] = m.group(1).lower()

    def get(self, rel: str) -> str | None:
        return self.entries.get(rel)

    def record(self, rel: str, sha256: str) -> None:
        if self.entries.get(rel) == sha256:
            return
        self.entries[rel] = sha256
        text = "".join(f"{digest}  {name}\n" for name, digest in sorted(self.entries.items()))
        write_text_atomic(self.path, text)


def expected_digests(entry: dict[str, Any], recorded: str | None) -> dict[str, str]:
    """Every checksum known for a file: the registry's (published) and the one recorded on first download."""
    want = {algo: str(entry[algo]).lower() for algo in ("sha256", "md5") if entry.get(algo)}
    if recorded:
        if "sha256" in want and want["sha256"] != recorded:
            log.warning("%s: SHA256SUMS disagrees with the published sha256; the published one wins", entry["path"])
        else:
            want["sha256"] = recorded
    return want


def file_digests(path: Path, algos: Iterable[str] = ("sha256",)) -> dict[str, str]:
    hashers = {algo: hashlib.new(algo) for algo in set(algos) | {"sha256"}}
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            for h in hashers.values():
                h.update(block)
    return {algo: h.hexdigest() for algo, h in hashers.items()}


def mismatches(want: dict[str, str], got: dict[str, str]) -> list[str]:
    """``algo expected X, got Y`` for each known checksum the file fails."""
    return [f"{algo} expected {want[algo]}, got {got[algo]}" for algo in sorted(want) if want[algo] != got[algo]]
