"""The pipeline's stages, one package each, run as ``python -m stages.<name> --config FILE``.

A stage declares itself in ``stages/<name>/params.py`` (``STAGE = StageSpec(...)``: the roles it provides and
reads, its config sections, its outputs); ``shared.config`` discovers every stage package here. Stage packages kept
outside the repository plug in the same way: list their parent folders in ``ONCOXAI_STAGE_PATH`` (os.pathsep
separated) and ``python -m stages.<name>`` finds them.
"""

import os as _os

__path__ += [p for p in _os.environ.get("ONCOXAI_STAGE_PATH", "").split(_os.pathsep) if p]  # noqa: F821
