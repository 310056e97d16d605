"""Benchmarks (``make bench``): measured figures written under ``outputs/bench/``, never timed tests.

``python -m bench.preprocess compare``  our ``deepinsight`` layout and rendering beside pyDeepInsight's
                                        ImageTransformer on the same matrix, embedding and image size
``python -m bench.preprocess million``  the real preprocess stage on 100k, 300k and 1M synthetic cells read
                                        from backed .h5ad files: wall time and the child's peak RSS
``python -m bench.preprocess all``      both, into ``outputs/bench/preprocess.json``
"""
