"""Config section read by report."""

from __future__ import annotations

from pydantic import Field

from shared.config import Output, Section, StageSpec


class Report(Section):
    #: the report page's title
    title: str = "Explainable tumour transcriptomics"
    #: rows of each class's top-genes table in the page
    top_genes_shown: int = Field(10, ge=1)


STAGE = StageSpec(
    name="report",
    requires=("classifiers",),
    uses=("dataset", "explanations"),
    sections={"report": Report},
    outputs=(
        Output(
            "index.html",
            "the self-contained report: data, every classifier of every trainer side by side, "
            "paired comparisons, explanations, provenance; nothing fetched from the network",
        ),
        Output("summary.json", "headline figures: models, comparisons, explanations (docs/reference/summary-json.md)"),
        Output("figures/*.png", "the figures embedded in the page, for slides and papers"),
        Output(
            "multiqc/*_models_mqc.yaml",
            "the held-out scores table as MultiQC custom content (a MultiQC report run over the outputs shows it)",
        ),
        Output(
            "multiqc/*_comparisons_mqc.yaml",
            "the paired comparisons as MultiQC custom content",
            when="two or more models compared on the same folds",
        ),
        Output(
            "screenshot.png",
            "a full-page screenshot of index.html in headless Chromium (make check-report)",
            when="after the browser check",
        ),
    ),
    description="self-contained index.html and summary.json",
)
