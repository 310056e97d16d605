"""python -m stages.explain --config FILE: attributions, class maps, gene rankings, marker precision."""
from __future__ import annotations

import json

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


def run(run: StageRun) -> None:
    exp = run.exp
    p: Explain = exp.section("explain")
    pre, trained = run.upstream("preprocess"), run.upstream("train_torch")
    device = choose_device(exp.device)
    run.device = describe_device(device)

    model, spec = load_classifier(trained, device)
    dataset = json.loads((trained / "dataset.json").read_text())
    # a transductive image (sample-spot) has no pixel->gene map: its attributions stay in image space
    gmap = PixelGeneMap.load(trained / dataset["gene_map"]) if dataset.get("gene_map") else None
    if gmap is None:
        log.info("the '%s' images have no pixel->gene map: attributions are reported in image space only",
                 dataset.get("transform"))
    classes = spec["classes"]
    samples = pd.read_csv(pre / "samples.csv", dtype={"sample": str, "label": str})
    test = np.flatnonzero(samples["split"].to_numpy() == "test")
    images = np.load(pre / "images.npy", mmap_mode="r")
    labels = samples["label_index"].to_numpy()[test]
    test_images = np.asarray(images[test])
    # the gene values let a pixel shared by several genes split its attribution by their contributions
    test_values = np.asarray(np.load(pre / dataset["vectors"], mmap_mode="r")[test]) if dataset.get("vectors") else None
    genes = pd.read_csv(pre / "genes.csv", dtype={"gene": str})
    markers = read_markers(p.markers, classes) if p.markers else None

    summary = {"model": spec["arch"], "target": "true class", "n_test": int(len(test)), "gene_map": gmap is not None,
               "transform": dataset.get("transform"), "methods": {}}
    for name in p.methods:
        folder = run.out / name
        folder.mkdir()
        method = METHODS[name](model)
        attr = attribute_batched(method, test_images, labels, device, p.batch_size, name)
        class_maps = class_means(attr, labels, len(classes)).astype(np.float32)
        np.save(folder / "attributions.npy", attr)
        np.save(folder / "class_maps.npy", class_maps)
        entry = {"top_k": p.top_k, "signed": method.signed}
        ranking = pd.DataFrame(columns=["class", "rank", "gene", "score"])
        if gmap is not None:
            sample_genes = gmap.gene_attributions(attr, test_values).astype(np.float32)
            table = pd.DataFrame(class_means(sample_genes, labels, len(classes)).T,
                                 index=pd.Index(gmap.genes, name="gene"), columns=classes)
            ranking = top_genes(table, p.top_k)
            np.save(folder / "sample_genes.npy", sample_genes)
            table.to_csv(folder / "gene_attributions.csv")
            ranking.to_csv(folder / "top_genes.csv", index=False)
        plot_class_maps(class_maps, classes, ranking, genes, folder / "figures" / "class_maps.png",
                        f"{spec['arch']} · {name}: class-mean maps of held-out test samples"
                        + (" (top genes circled)" if gmap is not None else " (no gene map: image space only)"),
                        signed=method.signed)
        if markers is not None and gmap is not None:
            prec = marker_precision(table, markers, p.precision_k)
            prec.to_csv(folder / "marker_precision.csv", index=False)
            entry[f"marker_precision_at_{p.precision_k}"] = float(prec["precision"].mean())
            entry["per_class_precision"] = dict(zip(prec["class"], prec["precision"].astype(float)))
            log.info("%s: planted-marker precision@%d = %.3f (per class %s)", name, p.precision_k,
                     entry[f"marker_precision_at_{p.precision_k}"], json.dumps(entry["per_class_precision"]))
        summary["methods"][name] = entry
    write_json_atomic(run.out / "metrics.json", summary)


if __name__ == "__main__":
    raise SystemExit(main("explain", run))
