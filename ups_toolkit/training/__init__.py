"""Supervised multi-task training of the UPS model with Accelerate (docs/design.md D9) and its evaluation (D11).

- :mod:`.config`: experiment YAML (``configs/``) + command-line overrides, validated before anything heavy runs;
- :mod:`.task_data`: the torch dataset, sampler and collate over a task's examples
  (:mod:`ups_toolkit.data.task_examples`);
- :mod:`.loop`: the Accelerate loop (round-robin task cycle, AdamW + warmup/cosine, checkpoints, resume, logging);
- :mod:`.evaluation`: every task scored with its community's metrics, gathered across processes;
- :mod:`.cli`: ``train.py`` and ``python -m ups_toolkit.evaluate``.

Importing this package imports neither torch nor datasets.
"""
