"""USDRL pretraining model: a DSTE encoder, three projectors and the MG-FD loss (docs/design.md D10).

    views (4 × B sequences) ──DSTE, one pass over 4B──▶ y_t (4B, T, d), y_s (4B, S, d), g (4B, 2d)
    max_T y_t ─P_t─▶ z_t,  max_S y_s ─P_s─▶ z_s,  g ─P_i─▶ z_i        (per view: BatchNorm sees B samples)
    [all-gather z across ranks] ─▶ MG-FD(z_t, z_s, z_i) ─▶ loss

Projectors [code USDRL]: P_t, P_s = Linear(d, 2d)–BN–ReLU–Linear(2d, 2d)–BN–ReLU–Linear(2d, 2d); P_i the same on g
(input 2d) with output 4d (2048/2048/4096 for the paper's d = 1024: 10.50 M + 10.50 M + 16.79 M parameters; the whole
model 94,931,160). Widths are arguments. Every new Linear is trunc-normal std 0.02, bias 0 (D6 "Init"); BatchNorm
keeps PyTorch's init; the encoder is used as given (a fresh DSTE already has this init; a loaded one keeps its weights).

Batch statistics: the encoder has no BatchNorm, so one pass over the 4B sequences equals four passes of B; each view's
projection runs on its own B samples, as the reference's per-view calls (its BN saw 178 = 356 / 2 GPUs per replica).
Under ``torch.distributed`` the projections are all-gathered with a differentiable all-gather before the loss, so
MG-FD sees the global batch while BN stays per rank (D10, last bullet).

Multi-modal views (``modalities`` with more than one entry; views.py explains which view carries what): the
encoder's own input embedding embeds ``modalities[0]``; every further modality gets its own Linear–LN–ReLU–Linear
embeddings per stream (and per layout) here. The fused view 3 enters the DST layers as a bias-free Linear of the mean
of its per-modality embeddings, one Linear per stream (UmURL-style, our reading); the DST layers, positions and
projectors are shared. The DST stack then runs on embedded tokens (:meth:`USDRLPretrainingModel.encode_embedded`,
the DSTE forward from its embeddings on; a test checks it equals ``DSTE.forward``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, DataFormatError
from ..models.dste import DSTE, DSTEConfig, DSTEOutput, stream_embedding
from ..models.routing import expand_to_blocks
from ..models.usdrl_weights import check_state_dict_fits
from .losses import GRANULARITIES, MGFDLoss, MGFDOutput
from .views import NUM_VIEWS, view_modalities

ENCODER_FORMAT = "ups-dste-encoder/1"  # safetensors metadata tag of save_encoder files


def projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear–BN–ReLU–Linear–BN–ReLU–Linear, (N, in_dim) → (N, out_dim). Parameters sit at indices 0, 1, 3, 4, 6,
    as in the reference's ``{t,s,i}_proj``."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class StreamEmbeddings(nn.Module):
    """Input embeddings of one extra modality for one layout: temporal (N, T, M·V·C) → (N, T, d) and spatial
    (N, M·V, T·C) → (N, M·V, d), each Linear → LayerNorm → ReLU → Linear as the DSTE's own."""

    def __init__(self, in_temporal: int, in_spatial: int, d_model: int):
        super().__init__()
        self.temporal = stream_embedding(in_temporal, d_model)
        self.spatial = stream_embedding(in_spatial, d_model)


def gather_across_ranks(z: torch.Tensor) -> torch.Tensor:
    """(B, D) → (world·B, D), rank-major, differentiable; the input itself outside a multi-process run.

    Backward sums the gradients every rank's loss sends to this rank's rows, so after DDP averages the parameter
    gradients over ranks they equal the gradient of the one global loss. Every rank must pass the same B
    (Accelerate's default ``even_batches=True``; ``drop_last=True`` in pretraining).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # torch 2.13 marks it deprecated in favour of the private, still-renamed _functional_collectives; it works
        # (all-to-all backward on gloo, reduce-scatter on NCCL) and is the public differentiable all-gather.
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(z.contiguous()))


@dataclass
class USDRLPretrainingOutput:
    """loss: scalar MG-FD total (fp32). mgfd: the loss and its parts (:class:`MGFDOutput`).
    projections: ``{"t"|"s"|"i": [z_0..z_3]}``, each (B_global, D_g), what the loss saw.
    pooled: (4, B, 2d) the encoder's pooled features g of this rank's views."""

    loss: torch.Tensor
    mgfd: MGFDOutput
    projections: dict[str, list[torch.Tensor]]
    pooled: torch.Tensor

    def log_dict(self) -> dict[str, float]:
        return self.mgfd.log_dict()


class USDRLPretrainingModel(nn.Module):
    """DSTE + projectors + MG-FD. ``model(views, layout) -> USDRLPretrainingOutput`` with ``.loss`` to backpropagate.

    ``views``: 4 items, each a dict ``{modality: (B, T, M, V, C)}`` as :func:`~ups_toolkit.pretraining.views.
    collate_views` returns, or (one-modality runs) a plain tensor. ``projector_hidden`` / ``projector_out`` default to
    2d, ``instance_out`` to 4d. ``loss``: an :class:`MGFDLoss` (default: the AAAI weights). ``gather``: all-gather
    the projections across ranks before the loss when ``torch.distributed`` is initialised.

    Input embeddings of layouts absent from a batch get no gradient: with several layouts under DDP, wrap with
    ``find_unused_parameters=True`` (Accelerate: ``DistributedDataParallelKwargs``).

    Example::

        encoder = DSTE(DSTEConfig.from_preset("tiny"))
        model = USDRLPretrainingModel(encoder)
        out = model(batch["views"], layout="ntu25")
        out.loss.backward()
    """

    def __init__(
        self,
        encoder: DSTE,
        *,
        modalities: Sequence[str] = ("joint",),
        projector_hidden: int | None = None,
        projector_out: int | None = None,
        instance_out: int | None = None,
        loss: MGFDLoss | None = None,
        gather: bool = True,
    ):
        super().__init__()
        config = encoder.config
        if config.num_blocks != 1:
            raise ConfigError(
                f"USDRL pretraining takes an unrouted DSTE (num_blocks 1), got num_blocks {config.num_blocks}; "
                f"the pretrained weights are copied into every routed block when a UPS model loads them (D7)"
            )
        d = config.d_model
        hidden = projector_hidden or 2 * d
        self.encoder = encoder
        self.modalities = tuple(modalities)
        self.plan = view_modalities(self.modalities)
        self.criterion = loss if loss is not None else MGFDLoss()
        self.gather = gather
        self.projectors = nn.ModuleDict({
            "t": projector(d, hidden, projector_out or 2 * d),
            "s": projector(d, hidden, projector_out or 2 * d),
            "i": projector(2 * d, hidden, instance_out or 4 * d),
        })
        # extra modalities: per-modality, per-layout input embeddings and one fusion Linear per stream
        self.modality_embeddings = nn.ModuleDict()
        self.fusion = None
        if len(self.modalities) > 1:
            for modality in self.modalities[1:]:
                self.modality_embeddings[modality] = nn.ModuleDict({
                    layout: StreamEmbeddings(config.num_spatial_tokens(layout) * config.in_channels,
                                             config.num_frames * config.in_channels, d)
                    for layout in config.layouts
                })
            self.fusion = nn.ModuleDict({"temporal": nn.Linear(d, d, bias=False),
                                         "spatial": nn.Linear(d, d, bias=False)})
        for module in (self.projectors, self.modality_embeddings, self.fusion):
            if module is not None:
                module.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------------------------------------------- encoding

    def _check_views(self, views) -> list[dict[str, torch.Tensor]]:
        if len(views) != NUM_VIEWS:
            raise ValueError(f"USDRL pretraining takes {NUM_VIEWS} views, got {len(views)}")
        out = []
        for k, (view, expected) in enumerate(zip(views, self.plan)):
            if isinstance(view, torch.Tensor):
                if len(expected) != 1:
                    raise ValueError(f"view {k} must be a dict with modalities {expected}, got a tensor")
                view = {expected[0]: view}
            if set(view) != set(expected):
                raise ValueError(f"view {k} must carry modalities {expected}, got {tuple(view)}")
            out.append(view)
        batch = {v.shape[0] for view in out for v in view.values()}
        if len(batch) != 1:
            raise ValueError(f"all views must hold the same batch size, got {sorted(batch)}")
        if self.training and min(batch) < 2:
            # said here, before BatchNorm's own less telling error about "more than 1 value per channel"
            raise ValueError(
                f"USDRL pretraining needs at least 2 samples per batch and rank (the projectors' BatchNorm and MG-FD's "
                f"variance and covariance use batch statistics); got B = {min(batch)}. Use drop_last=True so that "
                f"no final batch of 1 remains"
            )
        return out

    def embed(self, pose: torch.Tensor, modality: str, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embedding of one modality: pose (N, T, M, V, C) → temporal (N, T, d), spatial (N, M·V, d)."""
        pose = self.encoder._fit_pose(pose, layout)  # the DSTE's own checks and person/channel padding
        n, t, m, v, c = pose.shape
        if modality == self.modalities[0]:
            streams = self.encoder.embeddings[layout]
        else:
            streams = self.modality_embeddings[modality][layout]
        temporal = streams.temporal(pose.reshape(n, t, m * v * c))
        spatial = streams.spatial(pose.permute(0, 2, 3, 1, 4).reshape(n, m * v, t * c))
        return temporal, spatial

    def embed_view(self, view: Mapping[str, torch.Tensor], layout: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One view's tokens: the embedding of its only modality, or the fusion W·mean_m(E_m) of several."""
        embedded = [self.embed(pose, modality, layout) for modality, pose in view.items()]
        if len(embedded) == 1:
            return embedded[0]
        temporal = torch.stack([t for t, _ in embedded]).mean(0)
        spatial = torch.stack([s for _, s in embedded]).mean(0)
        return self.fusion["temporal"](temporal), self.fusion["spatial"](spatial)

    def encode_embedded(self, temporal: torch.Tensor, spatial: torch.Tensor, layout: str) -> DSTEOutput:
        """The DSTE from its input embeddings on: temporal (N, T, d), spatial (N, S, d) tokens of ``layout``.

        Positions before every layer, spatial tokens padded to S_max, padded slots zeroed and masked, max-pooling:
        exactly ``DSTE.forward`` after ``embeddings[layout]`` (unrouted).
        """
        encoder = self.encoder
        n, s = spatial.shape[:2]
        s_max = encoder.config.max_spatial_tokens
        x = temporal
        for layer in encoder.temporal_layers:
            x = layer(x + encoder.temporal_pe, None)
        temporal = x

        padding = s_max - s
        x = F.pad(spatial, (0, 0, 0, padding))
        spatial_pe = F.pad(encoder.embeddings[layout].spatial_pe, (0, 0, 0, padding))
        real = (torch.arange(s_max, device=x.device) < s).expand(n, s_max)
        token_mask = real if padding else None
        for layer in encoder.spatial_layers:
            x = layer(x + spatial_pe, token_mask)
            if padding:
                x = x.masked_fill(~real[..., None], 0.0)
        spatial = x

        pooled_spatial = spatial.masked_fill(~real[..., None], float("-inf")).amax(1) if padding else spatial.amax(1)
        pooled = torch.cat([temporal.amax(1), pooled_spatial], dim=-1)
        routes = torch.zeros(len(encoder.temporal_layers) + len(encoder.spatial_layers), dtype=torch.long)
        return DSTEOutput(temporal, spatial, ~real, pooled, routes)

    def encode(self, views: Sequence[Mapping[str, torch.Tensor]], layout: str) -> DSTEOutput:
        """All four views through the encoder in one pass over 4B sequences (view-major)."""
        if self.fusion is None:  # one modality: the DSTE's own forward
            return self.encoder(torch.cat([view[self.modalities[0]] for view in views]), layout)
        tokens = [self.embed_view(view, layout) for view in views]
        return self.encode_embedded(torch.cat([t for t, _ in tokens]), torch.cat([s for _, s in tokens]), layout)

    # ----------------------------------------------------------------------------------------------------- forward

    def forward(self, views, layout: str = "ntu25") -> USDRLPretrainingOutput:
        views = self._check_views(views)
        batch = next(iter(views[0].values())).shape[0]
        d = self.encoder.config.d_model
        pooled = self.encode(views, layout).pooled  # (4B, 2d) = [max_T y_t ; max_S y_s]
        features = {"t": pooled[:, :d], "s": pooled[:, d:], "i": pooled}
        projections = {}
        for g in GRANULARITIES:
            z = [self.projectors[g](f) for f in features[g].split(batch)]  # BatchNorm per view, per rank
            projections[g] = [gather_across_ranks(v) for v in z] if self.gather else z
        mgfd = self.criterion(projections)
        return USDRLPretrainingOutput(loss=mgfd.loss, mgfd=mgfd, projections=projections,
                                      pooled=pooled.view(NUM_VIEWS, batch, -1))


# -------------------------------------------------------------------------------------------------------------------
# Encoder export: the DSTE alone, to initialise a UPS model's encoder


def save_encoder(model: USDRLPretrainingModel | DSTE, path, *, modality: str | None = None) -> Path:
    """Write the DSTE's state dict to ``path`` (safetensors, atomically) with its config in the metadata.

    Only the encoder is written; projectors, extra-modality embeddings and fusion stay in the pretraining
    checkpoint. ``modality``: what the encoder's own input embedding was trained on (default: the model's first
    modality, else ``joint``); stored as metadata so a loader can check it.
    """
    from safetensors.torch import save_file

    encoder = model.encoder if isinstance(model, USDRLPretrainingModel) else model
    if modality is None:
        modality = model.modalities[0] if isinstance(model, USDRLPretrainingModel) else "joint"
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"format": ENCODER_FORMAT, "dste_config": json.dumps(encoder.config.to_dict()), "modality": modality}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_encoder_file(path) -> tuple[dict[str, torch.Tensor], DSTEConfig, dict[str, str]]:
    """(state dict, DSTEConfig, metadata) of a :func:`save_encoder` file; DataFormatError naming it otherwise."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataFormatError("encoder file not found", file=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as e:  # not a safetensors file, truncated ...
        raise DataFormatError(f"cannot read safetensors ({type(e).__name__}: {e})", file=path) from None
    if metadata.get("format") != ENCODER_FORMAT:
        raise DataFormatError(
            f"not an encoder export: metadata format is {metadata.get('format')!r}, expected {ENCODER_FORMAT!r}",
            file=path,
        )
    try:
        config = DSTEConfig(**json.loads(metadata["dste_config"]))
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise DataFormatError(f"bad dste_config metadata ({e})", file=path) from None
    return state, config, metadata


@dataclass
class EncoderLoadReport:
    """What :func:`load_encoder_weights` did. loaded: encoder keys set from the file. kept_initialised: encoder keys
    the file cannot have (router, layouts it was not trained on). skipped: file keys of layouts the encoder lacks."""

    loaded: list[str]
    kept_initialised: list[str]
    skipped: list[str]


def load_encoder_weights(encoder: DSTE, path) -> EncoderLoadReport:
    """Load a :func:`save_encoder` file into ``encoder``.

    A routed encoder (H > 1) gets the weights copied into every block (D7). Keys the file cannot have (the router,
    input embeddings of layouts it was not trained on) keep their initialisation; input embeddings of layouts the
    encoder lacks are skipped; every other key must be present with the same shape, else :class:`DataFormatError`
    names the file and lists the problems.
    """
    state, _, _ = read_encoder_file(path)
    if encoder.router is not None:
        state = expand_to_blocks(state, encoder.layer_prefixes(), encoder.config.num_blocks)

    def layout_of(key):
        return key.split(".")[1] if key.startswith("embeddings.") else None

    ours = encoder.state_dict()
    file_layouts = {layout_of(k) for k in state} - {None}
    skipped = sorted(k for k in state if layout_of(k) is not None and layout_of(k) not in encoder.embeddings)
    state = {k: v for k, v in state.items() if k not in set(skipped)}
    not_in_file = sorted(k for k in ours if k.startswith("router.")
                         or (layout_of(k) is not None and layout_of(k) not in file_layouts))
    check_state_dict_fits(state, ours, not_in_file, what="encoder weights do not fit this DSTE", file=path)
    encoder.load_state_dict(state, strict=False)
    return EncoderLoadReport(loaded=sorted(state), kept_initialised=not_in_file, skipped=skipped)


def load_encoder(path) -> DSTE:
    """A new DSTE built from the config stored in a :func:`save_encoder` file, with its weights."""
    _, config, _ = read_encoder_file(path)
    encoder = DSTE(config)
    load_encoder_weights(encoder, path)
    return encoder


__all__ = [
    "ENCODER_FORMAT",
    "EncoderLoadReport",
    "StreamEmbeddings",
    "USDRLPretrainingModel",
    "USDRLPretrainingOutput",
    "gather_across_ranks",
    "load_encoder",
    "load_encoder_weights",
    "projector",
    "read_encoder_file",
    "save_encoder",
]
