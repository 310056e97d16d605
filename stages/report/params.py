"""Config section read by report."""
from __future__ import annotations

from pydantic import Field

from shared.config import Section, StageSpec


class Report(Section):
    title: str = "Explainable tumour transcriptomics"
    top_genes_shown: int = Field(10, ge=1)


STAGE = StageSpec(
    name="report",
    needs=("preprocess", "train_torch", "explain"),
    sections={"report": Report},
    description="self-contained index.html and summary.json",
)
