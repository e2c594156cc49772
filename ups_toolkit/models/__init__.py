"""The UPS model: DSTE encoder (``dste``), dynamic routing (``routing``), USDRL checkpoint loading
(``usdrl_weights``), the token decoder (``decoder``) and the Hugging Face model (``configuration_ups``,
``modeling_ups``).

Importing this package does not import torch; the names below are loaded from their modules on first use, so
``import ups_toolkit.models`` stays cheap for command-line help and configuration checks. The first access to any
Hugging Face name (``UPSConfig``, ``UPSForSeq2Seq``, ...) imports ``modeling_ups``, which registers model type "ups"
with ``AutoConfig`` / ``AutoModel`` / ``AutoModelForSeq2SeqLM``::

    from ups_toolkit.models import UPSForSeq2Seq          # registers the Auto classes
    model = AutoModel.from_pretrained("runs/x/model")     # works from here on, no trust_remote_code
"""

from importlib import import_module

_EXPORTS = {
    "DSTE": "dste",
    "DSTEConfig": "dste",
    "DSTEOutput": "dste",
    "DSTLayer": "dste",
    "TaskRouter": "routing",
    "RoutedLayer": "routing",
    "gumbel_temperature": "routing",
    "straight_through_gumbel": "routing",
    "load_usdrl_weights": "usdrl_weights",
    "map_usdrl_state_dict": "usdrl_weights",
    "UPSDecoder": "decoder",
    "VocabularyEmbedding": "decoder",
    # Hugging Face names: all through modeling_ups, so that touching any of them registers the Auto classes
    "UPSConfig": "modeling_ups",
    "UPSForSeq2Seq": "modeling_ups",
    "UPSPreTrainedModel": "modeling_ups",
    "UPSEncoder": "modeling_ups",
    "UPSEncoderOutput": "modeling_ups",
    "UPSSeq2SeqOutput": "modeling_ups",
    "GrammarLogitsProcessor": "modeling_ups",
    "check_checkpoint": "modeling_ups",
    "register_auto_classes": "modeling_ups",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
