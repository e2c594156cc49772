"""``python -m ups_toolkit.infer --task NAME --model DIR --input FILE``: the ``ups-infer`` console script as a module
(see :mod:`ups_toolkit.inference.cli`)."""

import sys

from .inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
