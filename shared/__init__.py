"""The project's common library: what every stage imports.

- ``config``: experiment YAML loading, ``--set`` overrides, validation against the stages' declared sections.
- ``artifacts``: the artifact contract (``outputs/<experiment>/<stage>/``, atomic folders, manifests).
- ``stage``: the entry point every ``python -m stages.<name>`` goes through.
- ``logs``, ``seeding``, ``devices``: logging and progress bars, seeds, device choice.
- ``genemap``: the pixel->gene map written by preprocess and read by every consumer of images.
- ``models``: torch model builders shared by the stages that train and explain them.
- ``synthetic``: fixture generators with planted ground truth.

Nothing here imports a stage, and nothing here imports torch at module level except ``models``.
"""
