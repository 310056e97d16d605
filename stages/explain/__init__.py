"""explain: attributions for the trained torch models, mapped back to genes, and scored against ground truth.

Reads ``outputs/<experiment>/train_torch/`` (the model and the pixel->gene map it was trained through) and
``outputs/<experiment>/preprocess/`` (the test images and the gene values they were rendered from).
For every method named in the config (one interface: ``attributions.METHODS``) and every held-out test sample,
the attribution of the sample's true class is computed in batches, averaged per class, and mapped back to genes.
Writes ``outputs/<experiment>/explain/<method>/``:

- ``attributions.npy``        (n_test, channels, height, width) float32 per-sample maps
- ``class_maps.npy``          (n_classes, channels, height, width) class-mean maps
- ``sample_genes.npy``        (n_test, n_genes) float32 per-sample gene attributions
- ``gene_attributions.csv``   genes x classes table of class-mean gene attributions
- ``top_genes.csv``           class, rank, gene, score (the ``top_k`` genes per class)
- ``marker_precision.csv``    precision of the planted/known markers among each class's top ``precision_k`` genes
- ``figures/class_maps.png``  class-mean maps with their top genes marked
and ``outputs/<experiment>/explain/metrics.json`` with the headline figures per method.
"""
