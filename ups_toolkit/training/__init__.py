"""Supervised multi-task training of the UPS model with Accelerate (DESIGN.md D9) and its evaluation (D11).

- :mod:`.config`: experiment YAML (``configs/``) + command-line overrides, validated before anything heavy runs;
- :mod:`.task_data`: per task a dataset over prepared data (encoder input at T frames + target tokens), collate;
- :mod:`.loop`: the Accelerate loop (round-robin task cycle, AdamW + warmup/cosine, checkpoints, resume, logging);
- :mod:`.evaluation`: every task scored with its community's metrics, gathered across processes;
- :mod:`.cli`: ``train.py`` and ``python -m ups_toolkit.evaluate``.

Importing this package imports neither torch nor datasets.
"""
