"""Load USDRL reference weights (wengwanjiang/USDRL) into our :class:`~ups_toolkit.models.dste.DSTE`.

Released checkpoints are ``torch.save`` dicts ``{epoch, state_dict, optimizer}`` of ``nn.DataParallel(model)``: the
keys carry ``module.`` and, for the pretraining model and ``Downstream``, ``backbone.`` before the encoder's own
names. They are read with ``torch.load(weights_only=True)`` only (no code runs while unpickling).

Key mapping, reference encoder (``DSTE``) → ours, for the layout the weights were trained on (``ntu25`` by default):

============================================  ==========================================================
reference                                     ours
============================================  ==========================================================
``ske_emb.t_embedding.{0,1,3}.*``             ``embeddings.<layout>.temporal.{0,1,3}.*``
``ske_emb.s_embedding.{0,1,3}.*``             ``embeddings.<layout>.spatial.{0,1,3}.*``
``spe`` (1, 50, d)                            ``embeddings.<layout>.spatial_pe``
``tpe.pe`` (200, 1, d) buffer                 dropped (ours is computed, not stored)
``t_tr``, ``t_tr1``, ``s_tr``, ``s_tr1``      ``temporal_layers.0``, ``temporal_layers.1``, ``spatial_layers.0``,
                                              ``spatial_layers.1`` (below: ``<L>``)
``<ref>.CA.attn.*`` and ``<ref>.DSA.attn.*``  ``<L>.attn.*`` — one module shared by both branches, so both copies must
                                              be equal (``in_proj_weight``, ``in_proj_bias``, ``out_proj.{weight,bias}``)
``<ref>.CA.conv1.weight`` (d, d, 1)           ``<L>.ca.query_proj.weight`` (d, d); bias as is
``<ref>.CA.{norm1,norm2,mlp.fc1,mlp.fc2}.*``  ``<L>.ca.{norm1,norm2,mlp.fc1,mlp.fc2}.*``
``<ref>.DSA.{norm1,norm2,mlp.fc1,mlp.fc2}.*`` ``<L>.dsa.{norm1,norm2,mlp.fc1,mlp.fc2}.*``
``<ref>.DSA.wt1.*``, ``<ref>.DSA.wt2.*``      ``<L>.dsa.token_mix1.*``, ``<L>.dsa.token_mix2.*``
============================================  ==========================================================

Keys outside the encoder are returned apart, never loaded: the ``Downstream`` classifier ``fc.*`` and the pretraining
projectors ``{t,s,i}_proj.*``. With routing (H > 1) every block of a layer receives the same reference weights; the
router's embeddings and the input embeddings of other layouts keep their initialisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DataFormatError
from .routing import expand_to_blocks

REFERENCE_LAYERS = {"t_tr": "temporal_layers.0", "t_tr1": "temporal_layers.1",
                    "s_tr": "spatial_layers.0", "s_tr1": "spatial_layers.1"}
SHARED_ATTENTION = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
HEAD_KEY = re.compile(r"^(fc|[tsi]_proj)\.")  # Downstream classifier, pretraining projectors
IGNORED_KEYS = {"tpe.pe"}

_EMBEDDING = re.compile(r"^ske_emb\.([ts])_embedding\.([013])\.(weight|bias)$")
_LAYER = re.compile(r"^(t_tr|t_tr1|s_tr|s_tr1)\.(CA|DSA)\.(.+)$")
_BRANCH_RENAMES = {
    ("CA", "conv1.weight"): "ca.query_proj.weight",
    ("CA", "conv1.bias"): "ca.query_proj.bias",
    ("DSA", "wt1.weight"): "dsa.token_mix1.weight",
    ("DSA", "wt1.bias"): "dsa.token_mix1.bias",
    ("DSA", "wt2.weight"): "dsa.token_mix2.weight",
    ("DSA", "wt2.bias"): "dsa.token_mix2.bias",
}
_BRANCH_COMMON = re.compile(r"^(norm1|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")


@dataclass
class LoadReport:
    """What :func:`load_usdrl_weights` did: encoder keys loaded, our keys left at their initialisation (router,
    other layouts), and checkpoint keys that belong to heads outside the encoder (``fc.*``, ``*_proj.*``)."""

    loaded: list[str] = field(default_factory=list)
    kept_initialised: list[str] = field(default_factory=list)
    head_keys: list[str] = field(default_factory=list)


def strip_prefixes(state_dict: dict) -> dict:
    """Drop DataParallel's ``module.`` and the wrappers' ``backbone.`` from every key."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def map_usdrl_state_dict(state_dict: dict, layout: str = "ntu25", source=None) -> tuple[dict, dict]:
    """Rename a USDRL state dict to our unrouted DSTE keys (table in the module docstring).

    Returns (encoder state dict, head state dict). Raises :class:`DataFormatError` naming ``source`` for a key that
    belongs to neither, or for CA/DSA attention copies that differ (not the reference's shared module).
    """
    encoder, heads, attention = {}, {}, {}
    for key, value in strip_prefixes(state_dict).items():
        if key in IGNORED_KEYS:
            continue
        if HEAD_KEY.match(key):
            heads[key] = value
            continue
        if key == "spe":
            encoder[f"embeddings.{layout}.spatial_pe"] = value
            continue
        match = _EMBEDDING.match(key)
        if match:
            stream = {"t": "temporal", "s": "spatial"}[match.group(1)]
            encoder[f"embeddings.{layout}.{stream}.{match.group(2)}.{match.group(3)}"] = value
            continue
        match = _LAYER.match(key)
        if match is None:
            raise DataFormatError(f"unexpected key {key!r}: not a USDRL DSTE, classifier or projector key", file=source)
        ours, branch, rest = REFERENCE_LAYERS[match.group(1)], match.group(2), match.group(3)
        if rest.startswith("attn."):
            name = rest[len("attn."):]
            if name not in SHARED_ATTENTION:
                raise DataFormatError(f"unexpected attention key {key!r}", file=source)
            attention.setdefault(f"{ours}.attn.{name}", {})[branch] = (key, value)
        elif (branch, rest) in _BRANCH_RENAMES:
            if rest == "conv1.weight":
                if value.dim() != 3 or value.shape[-1] != 1:
                    raise DataFormatError(
                        f"{key!r} has shape {tuple(value.shape)}; only kernel size 1 (d, d, 1) is supported",
                        file=source,
                    )
                value = value[..., 0]
            encoder[f"{ours}.{_BRANCH_RENAMES[(branch, rest)]}"] = value
        elif _BRANCH_COMMON.match(rest):
            encoder[f"{ours}.{branch.lower()}.{rest}"] = value
        else:
            raise DataFormatError(f"unexpected key {key!r}", file=source)
    for ours, copies in attention.items():
        tensors = [value for _, value in copies.values()]
        if len(tensors) == 2 and not torch.equal(tensors[0], tensors[1]):
            names = " and ".join(k for k, _ in copies.values())
            raise DataFormatError(f"{names} differ; the reference shares one attention module", file=source)
        encoder[ours] = tensors[0]
    return encoder, heads


def read_usdrl_checkpoint(path) -> dict:
    """The state dict of a USDRL checkpoint file, read with ``torch.load(weights_only=True)``.

    Accepts a bare state dict or a dict holding it under ``state_dict`` (the released files) or ``model``.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataFormatError("checkpoint file not found", file=path) from None
    except Exception as e:  # a truncated zip, a pickle needing code, a text file ...
        raise DataFormatError(f"cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})", file=path) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataFormatError("checkpoint holds no state dict of tensors", file=path)
    return obj


def load_usdrl_weights(encoder, source, layout: str = "ntu25") -> LoadReport:
    """Load reference USDRL weights (a checkpoint path or a state dict) into ``encoder`` (a DSTE).

    Every encoder key the reference has must be present with the same shape, and the checkpoint must hold no other
    encoder keys; otherwise :class:`DataFormatError` lists what is missing, unexpected or mis-shaped. Our keys that
    the reference cannot have (router embeddings, input embeddings of other layouts) keep their initialisation.
    """
    where = source if isinstance(source, (str, Path)) else None
    state = read_usdrl_checkpoint(source) if where is not None else source
    if layout not in encoder.embeddings:
        raise DataFormatError(f"the encoder has no layout {layout!r} to load the reference embeddings into", file=where)
    mapped, heads = map_usdrl_state_dict(state, layout, source=where)
    if encoder.router is not None:
        mapped = expand_to_blocks(mapped, encoder.layer_prefixes(), encoder.config.num_blocks)
    ours = encoder.state_dict()
    not_ours = [k for k in ours if k.startswith("router.") or
                (k.startswith("embeddings.") and not k.startswith(f"embeddings.{layout}."))]
    check_state_dict_fits(mapped, ours, not_ours, what="checkpoint does not fit this DSTE", file=where)
    encoder.load_state_dict(mapped, strict=False)
    return LoadReport(loaded=sorted(mapped), kept_initialised=sorted(not_ours), head_keys=sorted(heads))


def check_state_dict_fits(state: dict, ours: dict, exempt, *, what: str, file=None) -> None:
    """Raise :class:`DataFormatError` ``"<what>: missing ...; unexpected ...; shape mismatches ..."`` unless every key
    of ``ours`` except ``exempt`` is in ``state`` with the same shape and ``state`` has no other keys."""
    missing = sorted(set(ours) - set(state) - set(exempt))
    unexpected = sorted(set(state) - set(ours))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs encoder {tuple(ours[k].shape)}"
              for k in sorted(set(state) & set(ours)) if state[k].shape != ours[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys (first: {', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys (first: {', '.join(unexpected[:5])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {'; '.join(shapes[:3])})")
    if problems:
        raise DataFormatError(f"{what}: " + "; ".join(problems), file=file)


__all__ = ["LoadReport", "check_state_dict_fits", "load_usdrl_weights", "map_usdrl_state_dict", "read_usdrl_checkpoint", "strip_prefixes"]
