"""``python -m ups_toolkit.evaluate --model DIR --config configs/X.yaml``: score a saved UPS model with each task's
community metrics (see :mod:`ups_toolkit.training.evaluation`) and print a metrics table."""

import sys

from .training.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
