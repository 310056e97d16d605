"""The project's common library: what every stage imports.

- ``config``: experiment YAML loading, ``--set`` overrides, validation against the stages' declared sections.
- ``artifacts``: the artifact contract (``outputs/<experiment>/<stage>/``, atomic folders, manifests).
- ``stage``: the entry point every ``python -m stages.<name>`` goes through.
- ``logs``, ``seeding``, ``devices``: logging and progress bars, seeds, device choice.
- ``genemap``: the pixel->gene map written by preprocess and read by every consumer of images.
- ``models``: torch model builders shared by the stages that train and explain them.
- ``evaluation``: the protocol, framework-free: splits, the classifier result layout, metrics, comparisons,
  baselines, rankings and marker scores.
- ``sources``: which files each stage runs (its import closure), for fingerprints, make and image hashes.
- ``containers``: how make runs a stage or the project's own commands, locally or in the images (standard
  library only, like ``sources``).
- ``docs``: the documentation site's generated parts (config reference, stage outputs, methods, measured figures).

Nothing here imports a stage, and nothing here imports torch at module level except ``models``. The synthetic
fixture generators are data, not part of this contract: they live in ``fixtures/``.
"""
