"""report: one self-contained ``index.html`` and a machine-readable ``summary.json``.

Reads the finished folders of preprocess, train_torch and explain under ``outputs/<experiment>/``.
Writes ``outputs/<experiment>/report/``:

- ``index.html``    metrics, confusion matrix, training curves, class attribution maps, top genes per class,
                    provenance; every image embedded, nothing fetched from the network
- ``summary.json``  headline figures (layout in the README, "summary.json")
- ``figures/``      the PNGs embedded in the page, for slides and papers
"""
