"""train_torch: CNNs on the dataset's images and a dense network on its vectors, with the shared protocol.

Reads the ``dataset`` role (images.npy / vectors.npy, samples.csv, dataset.json, pixel_genes.npz). The protocol
(shared.evaluation): stratified (group-aware when groups exist) k-fold on the training split; each fold trains
with early stopping on its validation fold and restores its best checkpoint; the k fold models form an ensemble
(mean of logits) scored once on the held-out test split, which no fold or stopping rule ever saw. Baselines are
fitted on the same folds and genes. Results in the classifier result layout (shared.evaluation.results).

Outputs: ``STAGE.outputs`` in params.py (the docs' "Stages and their outputs" page is made from it; tests check
every run against it).
"""
