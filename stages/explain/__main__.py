"""python -m stages.explain --config FILE: attributions, class maps, gene rankings, marker precision."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from shared.artifacts import StageRun, write_json_atomic
from shared.devices import choose_device, describe_device
from shared.genemap import PixelGeneMap
from shared.logs import get_logger
from shared.models import load_classifier
from shared.stage import main

from .attributions import METHODS, attribute_batched
from .figures import plot_class_maps
from .params import Explain
from .rankings import class_means, marker_precision, read_markers, top_genes

log = get_logger("stages.explain")


def explain_model(name: str, trained: Path, pre: Path, out: Path, p: Explain, device, markers) -> dict:
    """Every configured method for one trained model; returns its metrics entry."""
    model, spec = load_classifier(trained / name, device)
    dataset = json.loads((trained / "dataset.json").read_text())
    samples = pd.read_csv(pre / "samples.csv", dtype={"sample": str, "label": str})
    test = np.flatnonzero(samples["split"].to_numpy() == "test")
    labels = samples["label_index"].to_numpy()[test]
    classes = spec["classes"]
    vectors = np.asarray(np.load(pre / dataset["vectors"], mmap_mode="r")[test]) if dataset.get("vectors") else None
    genes_table = pd.read_csv(pre / "genes.csv", dtype={"gene": str})
    on_vectors = spec["arch"] == "dense"
    if on_vectors:  # attributions of the dense network are per gene already
        inputs, gmap, gene_names = vectors, None, genes_table["gene"].to_numpy()
    else:
        inputs = np.asarray(np.load(pre / "images.npy", mmap_mode="r")[test])
        # a transductive image (sample-spot) has no pixel->gene map: its attributions stay in image space
        gmap = PixelGeneMap.load(trained / dataset["gene_map"]) if dataset.get("gene_map") else None
        gene_names = None if gmap is None else gmap.genes
        if gmap is None:
            log.info("%s: the '%s' images have no pixel->gene map: attributions stay in image space", name,
                     dataset.get("transform"))
    entry = {"arch": spec["arch"], "gene_map": gene_names is not None, "transform": dataset.get("transform"),
             "methods": {}}
    for method_name in p.methods:
        folder = out / name / method_name
        folder.mkdir(parents=True)
        method = METHODS[method_name](model)
        attr = attribute_batched(method, inputs, labels, device, p.batch_size, f"{name} {method_name}")
        np.save(folder / "attributions.npy", attr)
        result = {"top_k": p.top_k, "signed": method.signed}
        ranking = pd.DataFrame(columns=["class", "rank", "gene", "score"])
        if gene_names is not None:
            sample_genes = attr if on_vectors else gmap.gene_attributions(attr, vectors).astype(np.float32)
            table = pd.DataFrame(class_means(sample_genes, labels, len(classes)).T,
                                 index=pd.Index(gene_names, name="gene"), columns=classes)
            ranking = top_genes(table, p.top_k)
            np.save(folder / "sample_genes.npy", sample_genes.astype(np.float32))
            table.to_csv(folder / "gene_attributions.csv")
            ranking.to_csv(folder / "top_genes.csv", index=False)
            if markers is not None:
                prec = marker_precision(table, markers, p.precision_k)
                prec.to_csv(folder / "marker_precision.csv", index=False)
                result[f"marker_precision_at_{p.precision_k}"] = float(prec["precision"].mean())
                result["per_class_precision"] = dict(zip(prec["class"], prec["precision"].astype(float)))
                log.info("%s %s: planted-marker precision@%d = %.3f (per class %s)", name, method_name,
                         p.precision_k, result[f"marker_precision_at_{p.precision_k}"],
                         json.dumps(result["per_class_precision"]))
        if not on_vectors:
            class_maps = class_means(attr, labels, len(classes)).astype(np.float32)
            np.save(folder / "class_maps.npy", class_maps)
            plot_class_maps(class_maps, classes, ranking, genes_table, folder / "figures" / "class_maps.png",
                            f"{name} · {method_name}: class-mean maps of held-out test samples"
                            + (" (top genes circled)" if gmap is not None else " (no gene map: image space only)"),
                            signed=method.signed)
        entry["methods"][method_name] = result
    return entry


def run(run: StageRun) -> None:
    exp = run.exp
    p: Explain = exp.section("explain")
    pre, trained = run.upstream("preprocess"), run.upstream("train_torch")
    device = choose_device(exp.device)
    run.device = describe_device(device)
    models = [m["name"] for m in json.loads((trained / "models.json").read_text()) if m["kind"] == "deep"]
    classes = json.loads((trained / "dataset.json").read_text())["classes"]
    markers = read_markers(p.markers, classes) if p.markers else None
    summary = {"target": "true class", "split": "held-out test", "models": {}}
    for name in models:
        summary["models"][name] = explain_model(name, trained, pre, run.out, p, device, markers)
    write_json_atomic(run.out / "metrics.json", summary)


if __name__ == "__main__":
    raise SystemExit(main("explain", run))
