"""The evaluation protocol, once, with no deep-learning framework: every trainer (torch, TensorFlow, 3-D, or a
plain scikit-learn model) imports it, so their models are split, scored, written and compared alike.

- ``splits``: the declared policy for classes too small for the protocol, the held-out test split and the
  repeated, stratified, group-aware k-fold inside the training split.
- ``results``: ``ModelResult`` (what one trained model produced) and its writer, the classifier result layout.
- ``metrics``: classification metrics, per-class table, confusion matrices, ROC curves (scikit-learn).
- ``compare``: paired comparisons of two models over the same folds (corrected t-test, Wilcoxon, and their limits).
- ``baselines``: logistic regression and a random forest on the same folds and genes.
- ``rankings``: class means of attributions, top genes per class, precision of known markers.

Nothing here imports torch or TensorFlow (a test checks it).
"""
