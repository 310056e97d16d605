"""train_torch: CNN classifiers on the preprocess images, with an honest protocol.

Reads ``outputs/<experiment>/preprocess/`` (images.npy, samples.csv, dataset.json, pixel_genes.npz).
Protocol: stratified (group-aware when groups exist) k-fold on the training split; each fold trains with early
stopping on its validation fold and restores its best checkpoint; the k fold models form an ensemble (mean of
logits) that is scored once on the held-out test split, which no fold or stopping rule ever saw.
Writes ``outputs/<experiment>/train_torch/``:

- ``model.json``, ``member<k>.pt``   the ensemble (shared.models.load_classifier)
- ``metrics.json``                 held-out test metrics of the ensemble, per-fold validation and test metrics
- ``per_class.csv``, ``confusion_matrix.csv``, ``test_predictions.csv``, ``cv_predictions.csv``
- ``history.csv``                  fold, epoch, train/validation loss and accuracy, learning rate
- ``tensorboard/fold<k>/``         TensorBoard event files
- ``pixel_genes.npz``, ``dataset.json``   the map the model was trained through, copied from preprocess
"""
