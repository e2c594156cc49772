"""Train (or with --eval-only, score) one UPS model on several tasks: ``python train.py --config configs/demo.yaml``.

A thin wrapper over :mod:`ups_toolkit.training.cli`; ``accelerate launch train.py ...`` runs it on several processes.
"""

import sys

from ups_toolkit.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
