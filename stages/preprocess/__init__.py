"""preprocess: expression data -> QC'd, normalised matrix -> images (or vectors), with the pixel->gene map.

Reads: the expression file named by the ``expression`` config section (``.h5ad``: X, a layer or .raw; obs
``label_key`` and optional ``group_key``).
Provides the ``dataset`` role. Outputs: ``STAGE.outputs`` in params.py (the docs' "Stages and their outputs" page
is made from it; tests check every run against it).

Every data-dependent step (gene selection, scaling, the gene layout) is fitted on the training split only.
"""
