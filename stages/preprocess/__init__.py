"""preprocess: expression data -> QC'd, normalised matrix -> images (or vectors), with the pixel->gene map.

Reads: the expression file named by the ``expression`` config section (``.h5ad``: X, a layer or .raw; obs
``label_key`` and optional ``group_key``).
Writes ``outputs/<experiment>/preprocess/``:

- ``images.npy``      (n_samples, channels, height, width) uint8, memory-mappable
- ``vectors.npy``     (n_samples, n_genes) float32, the scaled gene values the images were rendered from
- ``samples.csv``     sample, label, label_index, split (train/test), group
- ``genes.csv``       the selected genes in column order, with the training statistics used to scale them
- ``pixel_genes.npz`` the pixel->gene map (shared.genemap.PixelGeneMap)
- ``gene_coords.csv`` each gene's embedded 2-D position and its pixel
- ``dataset.json``    classes, image shape, transform, whether it is transductive, counts per split

Every data-dependent step (gene selection, scaling, the gene layout) is fitted on the training split only.
"""
