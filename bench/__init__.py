"""Benchmarks (``make bench``): measured figures written under ``outputs/bench/``, never timed tests.

``python -m bench.preprocess compare``  our ``deepinsight`` layout and rendering beside pyDeepInsight's
                                        ImageTransformer on the same matrix, embedding and image size
``python -m bench.preprocess million``  the real preprocess stage on 100k, 300k and 1M synthetic cells read
                                        from backed .h5ad files: wall time and the child's peak RSS
``python -m bench.preprocess all``      both, into ``outputs/bench/preprocess.json``

Each ``bench/<name>.py`` also declares ``WHAT``, ``REFERENCE`` and ``headline(result)``, the rows of its table on the
docs site's Benchmarks page (bench/figures.py); ``make bench`` ends with ``python -m shared.docs record-bench``,
which records them from the JSONs it wrote into docs/data/benchmarks.yaml.
"""
