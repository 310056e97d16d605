"""GDC manifests: the GDC portal cart's ``gdc_manifest.<date>.txt`` as a registry dataset (``--manifest FILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.errors import UserError

GDC_API = "https://api.gdc.cancer.gov"
GDC_MANIFEST_COLUMNS = ["id", "filename", "md5", "size"]


def gdc_manifest_dataset(path: str | Path) -> dict[str, Any]:
    """A registry dataset from a GDC manifest (the portal cart's ``gdc_manifest.<date>.txt``: tab separated, columns
    ``id filename md5 size state``): each file from the GDC data endpoint into ``<id>/<filename>`` (gdc-client's
    layout), with its published md5 and size."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the GDC manifest ({exc.strerror or exc})") from None
    header = lines[0].split("\t") if lines else []
    if header[:4] != GDC_MANIFEST_COLUMNS:
        raise UserError(
            f"{path}: not a GDC manifest (header {header[:5]}, expected {GDC_MANIFEST_COLUMNS + ['state']}); "
            "download it from the GDC portal's cart (Download Cart > Manifest)"
        )
    files = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 4 or not cells[3].isdigit():
            raise UserError(f"{path}:{n}: expected id, filename, md5, size (tab separated), got {cells[:4]}")
        file_id, name, md5, size = cells[:4]
        files.append(
            {
                "name": file_id,
                "url": f"{GDC_API}/data/{file_id}",
                "path": f"{file_id}/{name}",
                "md5": md5.lower(),
                "size": int(size),
            }
        )
    if not files:
        raise UserError(f"{path}: the GDC manifest lists no files")
    return {
        "description": f"GDC files listed by {path.name}",
        "homepage": "https://portal.gdc.cancer.gov/",
        "verified": True,
        "files": files,
    }
