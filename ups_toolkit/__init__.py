"""ups-toolkit: one model, one vocabulary, every skeleton task.

Importing the package is cheap on purpose: heavy libraries (torch, transformers, datasets) are imported by the
modules that need them, so command-line help and argument errors answer instantly.
"""

__version__ = "0.1.0"
