"""report: one self-contained ``index.html`` and a machine-readable ``summary.json``.

Reads every enabled provider of the ``classifiers`` role (required), and of ``dataset`` and ``explanations``
when enabled: all models of all trainers side by side, compared fold by fold where they share the splits.

Outputs: ``STAGE.outputs`` in params.py (the docs' "Stages and their outputs" page is made from it; tests check
every run against it).
"""
