"""USDRL self-supervised pretraining (docs/design.md D10): the four views (``views``), the MG-FD loss (``losses``),
the pretraining model and encoder export (``model``), and the frozen-encoder evaluations (``evaluation``).

The training loop lives elsewhere; it calls ``USDRLPretrainingModel(encoder)(views, layout)`` and backpropagates
``.loss``. Importing this package does not import torch; names load from their modules on first use.
"""

from importlib import import_module

_EXPORTS = {
    "MODALITIES": "views",
    "PretrainingViewDataset": "views",
    "ViewGenerator": "views",
    "collate_views": "views",
    "usdrl_view_transforms": "views",
    "view_modalities": "views",
    "MGFDLoss": "losses",
    "MGFDOutput": "losses",
    "sim_loss": "losses",
    "vac_loss": "losses",
    "xc_loss": "losses",
    "USDRLPretrainingModel": "model",
    "USDRLPretrainingOutput": "model",
    "gather_across_ranks": "model",
    "load_encoder": "model",
    "EncoderLoadReport": "model",
    "load_encoder_weights": "model",
    "save_encoder": "model",
    "LinearProbeResult": "evaluation",
    "extract_features": "evaluation",
    "knn1_accuracy": "evaluation",
    "linear_probe": "evaluation",
    "semi_supervised_subset": "evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
