"""python -m stages.explain --config FILE: attributions, class maps, gene rankings, marker precision."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from shared.artifacts import StageRun, write_json_atomic
from shared.devices import choose_device, describe_device
from shared.errors import UserError
from shared.evaluation.rankings import class_means, marker_precision, read_markers, top_genes
from shared.genemap import PixelGeneMap
from shared.logs import get_logger
from shared.models import load_classifier
from shared.stage import main

from .attributions import METHODS, attribute_batched
from .figures import plot_class_maps
from .params import Explain

log = get_logger("stages.explain")
#: the model files explain can load (shared.models.load_classifier); other frameworks explain their own models
FRAMEWORK = "torch"


class ModelInputs:
    """The held-out test inputs a model reads, found through its spec (``model.json``'s ``input``; paths relative
    to the experiment folder): the stored array and its scaling, the samples, and for genes the names, the
    pixel->gene map and the gene values the images were rendered from."""

    def __init__(self, exp_dir: Path, spec: dict):
        inp = spec["input"]
        self.kind, self.scale = inp["kind"], float(inp.get("scale", 1.0))
        samples = pd.read_csv(exp_dir / inp["samples"], dtype={"sample": str, "label": str})
        self.rows = np.flatnonzero(samples["split"].to_numpy() == "test")
        self.samples = samples.iloc[self.rows].reset_index(drop=True)
        self.labels = samples["label_index"].to_numpy()[self.rows]
        self.array = np.asarray(np.load(exp_dir / inp["array"], mmap_mode="r")[self.rows])
        self.gmap = PixelGeneMap.load(exp_dir / inp["gene_map"]) if inp.get("gene_map") else None
        self.gene_values = (np.asarray(np.load(exp_dir / inp["gene_values"], mmap_mode="r")[self.rows])
                            if inp.get("gene_values") else None)
        features = exp_dir / inp["features"] if inp.get("features") else None
        # genes.csv: gene (in column order) and, for images, the pixel (row, col) each gene sits on
        self.genes_table = (pd.read_csv(features, dtype={"gene": str})
                            if features is not None and features.is_file() else None)
        self.features = None if self.genes_table is None else self.genes_table["gene"].to_numpy()

    @property
    def gene_names(self) -> np.ndarray | None:
        """Genes the attributions can be returned to (None: they stay in image space)."""
        if self.kind == "vector":
            return self.features
        return None if self.gmap is None else self.gmap.genes

    def to_genes(self, attr: np.ndarray) -> np.ndarray:
        """(n, ...) attributions -> (n, n_genes): as they are for vectors, through the map for images."""
        if self.kind == "vector":
            return attr.reshape(len(attr), -1)
        return self.gmap.gene_attributions(attr, self.gene_values)


def explain_model(name: str, folder: Path, exp_dir: Path, out: Path, p: Explain, device, markers) -> dict:
    """Every configured method for one trained model; returns its metrics entry."""
    model, spec = load_classifier(folder, device)
    data = ModelInputs(exp_dir, spec)
    classes = spec["classes"]
    gene_names = data.gene_names
    if gene_names is None:
        log.info("%s: the '%s' inputs have no pixel->gene map: attributions stay in input space", name, data.kind)
    entry = {"arch": spec["arch"], "input": data.kind, "gene_map": gene_names is not None, "methods": {}}
    for method_name in p.methods:
        folder_m = out / name / method_name
        folder_m.mkdir(parents=True)
        method = METHODS[method_name](model)
        attr = attribute_batched(method, data.array, data.labels, device, p.batch_size, f"{name} {method_name}",
                                 scale=data.scale)
        np.save(folder_m / "attributions.npy", attr)
        result = {"top_k": p.top_k, "signed": method.signed, "description": method.description}
        ranking = pd.DataFrame(columns=["class", "rank", "gene", "score"])
        if gene_names is not None:
            sample_genes = data.to_genes(attr).astype(np.float32)
            table = pd.DataFrame(class_means(sample_genes, data.labels, len(classes)).T,
                                 index=pd.Index(gene_names, name="gene"), columns=classes)
            ranking = top_genes(table, p.top_k)
            if data.kind != "vector":  # for vectors these are attributions.npy already
                np.save(folder_m / "sample_genes.npy", sample_genes)
            table.to_csv(folder_m / "gene_attributions.csv")
            ranking.to_csv(folder_m / "top_genes.csv", index=False)
            if markers is not None:
                prec = marker_precision(table, markers, p.precision_k)
                prec.to_csv(folder_m / "marker_precision.csv", index=False)
                result[f"marker_precision_at_{p.precision_k}"] = float(prec["precision"].mean())
                result["per_class_precision"] = dict(zip(prec["class"], prec["precision"].astype(float)))
                log.info("%s %s: planted-marker precision@%d = %.3f (per class %s)", name, method_name,
                         p.precision_k, result[f"marker_precision_at_{p.precision_k}"],
                         json.dumps(result["per_class_precision"]))
        class_maps = class_means(attr, data.labels, len(classes)).astype(np.float32)
        np.save(folder_m / "class_maps.npy", class_maps)
        plot_class_maps(class_maps, classes, ranking, data.genes_table, folder_m / "figures" / "class_maps.png",
                        f"{name} · {method_name}: class means over held-out test samples"
                        + ("" if data.kind == "vector" else " (top genes circled)" if data.gmap is not None
                           else " (no gene map: input space only)"),
                        signed=method.signed, feature_names=gene_names)
        entry["methods"][method_name] = result
    return entry


def run(run: StageRun) -> None:
    exp = run.exp
    p: Explain = exp.section("explain")
    device = choose_device(exp.device)
    run.device = describe_device(device)
    summary = {"target": "true class", "split": "held-out test", "models": {}, "not_explained": {}}
    where: dict[str, str] = {}
    markers = None
    for stage, folder in run.providers("classifiers", required=True).items():
        for entry in json.loads((folder / "models.json").read_text()):
            name = entry["name"]
            if entry.get("framework") != FRAMEWORK or entry.get("kind") == "baseline":
                summary["not_explained"][name] = (f"{entry.get('framework')} {entry.get('kind')} model of {stage}: "
                                                  f"explain computes attributions of {FRAMEWORK} networks")
                continue
            if name in where:
                raise UserError(f"two classifier providers name a model '{name}' ({where[name]} and {stage}): "
                                "rename one")
            where[name] = stage
            if markers is None and p.markers:
                classes = json.loads((folder / entry["folder"] / "model.json").read_text())["classes"]
                markers = read_markers(p.markers, classes)
            summary["models"][name] = {"provider": stage, **explain_model(
                name, folder / entry["folder"], run.exp_dir, run.out, p, device, markers)}
    write_json_atomic(run.out / "metrics.json", summary)


if __name__ == "__main__":
    raise SystemExit(main("explain", run))
