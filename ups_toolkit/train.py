"""``python -m ups_toolkit.train --config X.yaml``: the ``ups-train`` console script as a module, so that
``accelerate launch -m ups_toolkit.train ...`` starts several processes from any folder (see
:mod:`ups_toolkit.training.cli`)."""

import sys

from .training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
