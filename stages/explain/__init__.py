"""explain: attributions of every torch classifier of every trainer, returned to genes, scored against known markers.

Finds the models through the ``classifiers`` role (each trainer's ``models.json``) and the inputs each model reads
through its own spec (``model.json``'s ``input``: array, scaling, samples, genes, pixel->gene map), so vectors,
images and volumes go through the same code. For every method named in the config (one interface:
``methods.METHODS``) and every held-out test sample, the attribution of the sample's true class is computed
in batches, averaged per class, and mapped back to genes where the inputs have genes. The samples are read,
explained and written a chunk at a time (``store.py``), so memory does not grow with their number.

Outputs: ``STAGE.outputs`` in params.py (the docs' "Stages and their outputs" page is made from it; tests check
every run against it).
"""
