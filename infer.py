"""Run any task of a trained UPS model on your own data: ``python infer.py --task NAME --model DIR --input FILE``.

A thin wrapper over :mod:`ups_toolkit.inference.cli`; ``python infer.py --help`` lists the options.
"""

import sys

from ups_toolkit.inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
