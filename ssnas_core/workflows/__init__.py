"""One tracked run from start to end, for ``ssnas_core.api`` (and so the CLI) and ``studies/``.

``search`` and ``finetune`` compose data, engine, tracker and checkpoints (resume into the same run, the
registry, the outputs); ``study`` bridges to ``studies/``, which owns optuna; ``runs`` opens and ends MLflow
runs; ``progress`` draws bars on a terminal.
"""
