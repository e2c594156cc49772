"""DSTE: the dual-stream skeleton transformer encoder of USDRL, shared by several joint layouts (docs/design.md D6).

Faithful to the reference (wengwanjiang/USDRL ``model/DSTE.py``), including its quirks, so released USDRL weights
load (:mod:`ups_toolkit.models.usdrl_weights`) and reproduce the reference outputs:

- Two streams over the same pose. A temporal token per frame holds every (person, joint, channel) value; a spatial
  token per (person, joint) holds that joint's whole trajectory (every frame, channel). Each stream has its own
  embedding Linear → LayerNorm → ReLU → Linear and its own DST layers; the streams never interact.
- Positions are added before **every** layer: a fixed sinusoid on the temporal stream, a learned table on the spatial
  stream: y_t = L_t2(PE + L_t1(PE + E_t)), y_s = L_s2(S + L_s1(S + E_s)).
- A DST layer mixes two branches that share one attention module A:
  * DSA (sparse token mixing): H = W2·ReLU(W1·X) + X along the token axis (W1, W2 ∈ R^{L×L}), except the anchor
    tokens 0, gap, 2·gap, … which keep X. P1 = H + A(LN1 H), P1 += MLP(LN2 P1); P2 = X + A(LN1 X),
    P2 += MLP(LN2 P2); DSA = (P1 + P2)/2 — attention and MLP run twice.
  * CA: Q = X + ReLU(Conv1d_{k=1}(X)); R = X + A(LN1' Q) (the residual is X, not Q); CA = MLP'(LN2' R) with **no**
    residual around the MLP.
  * Y = α·CA + (1 − α)·DSA. DropPath (per sample, training only) wraps every attention and MLP output.
- Pooled feature g = [max_t y_t ; max_s y_s] ∈ R^{2d}; the dense token outputs feed the decoder.

What is ours [ours]:

- The shared attention is held once per layer (the reference registers the same module under both branches, which
  puts aliased tensors in the state dict; safetensors refuses those). It keeps ``nn.MultiheadAttention``'s packed
  ``in_proj_weight`` (3d, d) rows q, k, v and runs PyTorch's scaled-dot-product attention.
- Speed with the same arithmetic: the three calls of A in a layer (LN1 H, LN1 X, LN1' Q) run as one batch of 3N
  sequences, the two DSA MLP calls as one batch of 2N, and CA's k=1 convolution is a Linear (weight (d, d)).
- Several layouts share the layers: each layout has its own input embeddings and spatial position table; the
  spatial token axis is padded to ``max_spatial_tokens`` (S_max). Padded tokens are zeroed after the embedding and
  after every layer, masked as attention keys, and excluded from the max-pool; inside DSA's token mixing the hidden
  units of padded positions are masked as well, so the real tokens of a layout with S < S_max tokens are computed
  exactly as by a DSTE of S tokens whose mixing weights are the top-left S×S block. NTU-25 × 2 persons fills all 50
  slots: no mask, the reference arithmetic.
- Optional dynamic routing (:mod:`ups_toolkit.models.routing`): with ``num_blocks`` H > 1 every layer holds H DST
  blocks and a task picks one per layer.

Input ``pose`` is our time-first schema (N, T, M, V, C). The reference feeder builds its tokens from (C, T, V, M)
data; the same orders from our layout are:

- temporal token of frame t: ``pose[n, t].reshape(M·V·C)`` — person-major, then joint, then channel;
- spatial token of (person m, joint v): ``pose[n, :, m, v].reshape(T·C)`` — frame-major, channel-minor, tokens
  ordered person-major (tokens 0..V-1 are person 1).
Persons beyond the input's M (up to the layout's person count, ``max_persons`` unless ``layout_persons`` says
otherwise) and channels beyond its C are zero (a 2D pose (x, y) gets a third channel 0, the reference's "score or
0"), so every layout keeps fixed token widths M·V·C and T·C.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..skeleton import get_layout
from .routing import RoutedLayer, TaskRouter, expand_to_blocks, gumbel_temperature

# Presets differ only in width and heads; every other field keeps the paper's value unless overridden.
PRESETS = {
    "paper": dict(d_model=1024, num_heads=1),  # USDRL, 57,137,368 parameters with NTU-25 inputs
    "base": dict(d_model=512, num_heads=8),
    "small": dict(d_model=256, num_heads=4),
    "tiny": dict(d_model=64, num_heads=2),  # tests and CPU smoke runs
}


@dataclass
class DSTEConfig:
    """Shape of a DSTE encoder. Token counts are fields, never constants.

    Example::

        config = DSTEConfig.from_preset("small", layouts=("ntu25", "coco17", "h36m17"))
        encoder = DSTE(config)
        out = encoder(pose, layout="coco17")   # pose (N, 64, M ≤ 2, 17, C ≤ 3)
    """

    d_model: int = 1024
    num_heads: int = 1
    num_frames: int = 64  # T: temporal tokens; fixes the temporal token-mixing width
    max_spatial_tokens: int = 50  # S_max: spatial tokens after padding; fixes the spatial token-mixing width
    temporal_layers: int = 2
    spatial_layers: int = 2
    alpha: float = 0.5  # weight of CA; DSA gets 1 − alpha
    gap: int = 4  # every gap-th token is a DSA anchor
    drop_path: float = 0.1
    mlp_ratio: int = 2
    layouts: tuple[str, ...] = ("ntu25",)
    max_persons: int = 2  # persons per sample, absent ones are 0 (the reference's convention)
    layout_persons: dict[str, int] = field(default_factory=dict)  # per-layout override, e.g. {"h36m32": 1}
    in_channels: int = 3
    num_blocks: int = 1  # H parallel blocks per layer; 1 = no routing
    num_tasks: int = 1
    task_dim: int = 256  # q, width of block and task embeddings

    def __post_init__(self):
        self.layouts = tuple(self.layouts)
        self.layout_persons = dict(self.layout_persons)
        problems = []
        if self.d_model % 2 or self.d_model % self.num_heads:
            problems.append(f"d_model {self.d_model} must be even and divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.alpha <= 1.0:
            problems.append(f"alpha {self.alpha} must lie in [0, 1]")
        if not 0.0 <= self.drop_path < 1.0:
            problems.append(f"drop_path {self.drop_path} must lie in [0, 1)")
        for name in ("num_frames", "max_spatial_tokens", "gap", "mlp_ratio", "max_persons", "in_channels",
                     "num_blocks", "num_tasks", "task_dim", "temporal_layers", "spatial_layers"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.layouts:
            problems.append("layouts is empty")
        for name in self.layout_persons:
            if name not in self.layouts:
                problems.append(f"layout_persons names {name!r}, which is not in layouts")
            elif self.layout_persons[name] < 1:
                problems.append(f"layout_persons[{name!r}] must be at least 1")
        for name in self.layouts:
            tokens = self.num_spatial_tokens(name)  # unknown names raise ConfigError here
            if tokens > self.max_spatial_tokens:
                problems.append(
                    f"layout {name!r} needs {tokens} spatial tokens ({self.persons(name)} persons × "
                    f"{get_layout(name).num_joints} joints) but max_spatial_tokens is {self.max_spatial_tokens} "
                    f"(raise it, or set layout_persons)"
                )
        if problems:
            raise ConfigError("invalid DSTE config: " + "; ".join(problems))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "DSTEConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown DSTE preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return {**asdict(self), "layouts": list(self.layouts)}

    def persons(self, layout: str) -> int:
        """Persons M of a layout's tokens: ``layout_persons[layout]`` if given, else ``max_persons``."""
        return self.layout_persons.get(layout, self.max_persons)

    def num_spatial_tokens(self, layout: str) -> int:
        """Real spatial tokens of a layout: persons × joints (≤ max_spatial_tokens)."""
        return self.persons(layout) * get_layout(layout).num_joints


@dataclass
class DSTEOutput:
    """What the encoder returns for a batch of N sequences of one layout.

    temporal: (N, T, d) dense temporal tokens y_t.
    spatial: (N, S_max, d) dense spatial tokens y_s; padded slots are 0.
    spatial_padding_mask: (N, S_max) bool, True where the slot is padding (PyTorch ``key_padding_mask`` convention).
    pooled: (N, 2d) g = [max_t y_t ; max over real spatial tokens of y_s].
    routes: (temporal_layers + spatial_layers,) long, the block each layer ran (temporal layers first); all 0
        without routing. In training these are the sampled blocks.
    """

    temporal: torch.Tensor
    spatial: torch.Tensor
    spatial_padding_mask: torch.Tensor
    pooled: torch.Tensor
    routes: torch.Tensor = field(default=None)


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) fixed positions: sin on even channels, cos on odd, wavelengths 2π·10000^{2i/dim}.

    Built on the CPU even under a ``torch.device("meta")`` context: it is a non-persistent buffer that no checkpoint
    restores, so it must hold real values however the model is instantiated.
    """
    position = torch.arange(num_positions, dtype=torch.float32, device="cpu").unsqueeze(1)
    inverse_wavelength = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(num_positions, dim, device="cpu")
    table[:, 0::2] = torch.sin(position * inverse_wavelength)
    table[:, 1::2] = torch.cos(position * inverse_wavelength)
    return table


def stream_embedding(in_features: int, d_model: int) -> nn.Sequential:
    """Linear(in, d) → LayerNorm → ReLU → Linear(d, d); indices 0, 1, 3 hold the parameters, as in the reference."""
    return nn.Sequential(nn.Linear(in_features, d_model), nn.LayerNorm(d_model), nn.ReLU(), nn.Linear(d_model, d_model))


class LayoutEmbedding(nn.Module):
    """Input embeddings of one joint layout: temporal stream, spatial stream and the learned spatial positions.

    temporal: (N, T, M·V·C) → (N, T, d); spatial: (N, M·V, T·C) → (N, M·V, d); spatial_pe (1, M·V, d).
    """

    def __init__(self, num_tokens: int, in_temporal: int, in_spatial: int, d_model: int):
        super().__init__()
        self.temporal = stream_embedding(in_temporal, d_model)
        self.spatial = stream_embedding(in_spatial, d_model)
        self.spatial_pe = nn.Parameter(torch.zeros(1, num_tokens, d_model))
        nn.init.trunc_normal_(self.spatial_pe, std=0.02)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's residual branch with probability p, scale by 1/(1−p)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        scale = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep).div_(keep)
        return x * scale


class MLP(nn.Module):
    """Linear(d, ratio·d) → GELU → Linear(ratio·d, d), token-wise."""

    def __init__(self, d_model: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, ratio * d_model)
        self.fc2 = nn.Linear(ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters, computed by SDPA.

    ``in_proj_weight`` (3d, d) stacks the q, k, v projections (rows in that order), ``out_proj`` is Linear(d, d).
    x (B, L, d); token_mask (B, L) bool, True for real tokens (padded keys are ignored) or None → (B, L, d).
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's default

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, length, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, length, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if token_mask is None else token_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(y.transpose(1, 2).reshape(b, length, d))


class DSABranch(nn.Module):
    """Parameters of DSA: the token-axis mixing W1, W2 (Linear(L, L)), LN1, LN2 and the MLP."""

    def __init__(self, num_tokens: int, d_model: int, mlp_ratio: int, gap: int):
        super().__init__()
        self.token_mix1 = nn.Linear(num_tokens, num_tokens)
        self.token_mix2 = nn.Linear(num_tokens, num_tokens)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio)
        self.gap = gap
        # 0 on the anchor rows 0, gap, 2·gap, …: their W2 output is exactly 0, so H = X there
        self.register_buffer("mixed_rows", self.mixed_rows_table(num_tokens, gap), persistent=False)

    @staticmethod
    def mixed_rows_table(num_tokens: int, gap: int) -> torch.Tensor:
        """(L,) float: 1 for mixed tokens, 0 for anchors (built on the CPU for the same reason as sinusoid_table)."""
        return (torch.arange(num_tokens, device="cpu") % gap != 0).float()

    def sparse_mix(self, x: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """H = W2·ReLU(W1·X) + X along the token axis; anchor tokens keep X. x (N, L, d) → (N, L, d)."""
        w1, w2 = self.token_mix1, self.token_mix2
        hidden = torch.relu(torch.matmul(w1.weight, x) + w1.bias[:, None])  # (N, L, d): hidden unit per token
        if token_mask is not None:
            hidden = hidden * token_mask[..., None]  # a padded position is no hidden unit either
        # Masking the (L, L) weight instead of overwriting anchors in the (N, L, d) result: same values, less work.
        rows = self.mixed_rows[:, None]
        return torch.matmul(w2.weight * rows, hidden) + (w2.bias[:, None] * rows + x)


class CABranch(nn.Module):
    """Parameters of CA: the k=1 convolution as Linear(d, d) (``query_proj``), LN1', LN2' and the MLP'."""

    def __init__(self, d_model: int, mlp_ratio: int):
        super().__init__()
        self.query_proj = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Q = X + ReLU(Conv1d_{k=1}(X)), (N, L, d)."""
        return x + torch.relu(self.query_proj(x))


class DSTLayer(nn.Module):
    """One DST layer over L tokens: Y = α·CA(X) + (1 − α)·DSA(X), both branches sharing the attention ``attn``.

    x (N, L, d); token_mask (N, L) bool, True for real tokens, or None when every token is real → (N, L, d).
    Parameters: 13d² + 19d + 2L² + 2L (with mlp_ratio 2).
    """

    def __init__(self, num_tokens: int, config: DSTEConfig):
        super().__init__()
        d = config.d_model
        self.alpha = config.alpha
        self.attn = Attention(d, config.num_heads)
        self.dsa = DSABranch(num_tokens, d, config.mlp_ratio, config.gap)
        self.ca = CABranch(d, config.mlp_ratio)
        self.drop_path = DropPath(config.drop_path)

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, d = x.shape
        # The three inputs of the shared attention, stacked as one batch of 3N sequences: H and X (DSA's two
        # paths P1, P2) and CA's Q. They are normalised by LN1, LN1 and LN1': one normalisation, then each
        # group's affine in a single broadcast multiply-add.
        hxq = torch.cat([self.dsa.sparse_mix(x, token_mask), x, self.ca.query(x)])
        dsa_norm, ca_norm = self.dsa.norm1, self.ca.norm1
        weight = torch.stack([dsa_norm.weight, dsa_norm.weight, ca_norm.weight])[:, None, None]
        bias = torch.stack([dsa_norm.bias, dsa_norm.bias, ca_norm.bias])[:, None, None]
        normed = F.layer_norm(hxq, (d,), eps=dsa_norm.eps).view(3, n, length, d)
        attn_in = torch.addcmul(bias, normed, weight).view(3 * n, length, d)
        attn_mask = None if token_mask is None else token_mask.repeat(3, 1)
        a_hx, a_q = self.drop_path(self.attn(attn_in, attn_mask)).split([2 * n, n])

        p = hxq[: 2 * n] + a_hx  # [P1; P2] = [H; X] + A(LN1 [H; X])
        p = p + self.drop_path(self.dsa.mlp(self.dsa.norm2(p)))  # both DSA MLP calls in one batch
        p1, p2 = p.split(n)
        r = x + a_q  # CA's residual is X, not Q
        ca = self.drop_path(self.ca.mlp(self.ca.norm2(r)))  # no residual around CA's MLP (reference quirk)
        # α·CA + (1 − α)·(P1 + P2)/2, the halving folded into the scalar (halving is exact in floating point)
        return torch.add(self.alpha * ca, p1 + p2, alpha=(1 - self.alpha) / 2)


class DSTE(nn.Module):
    """Dual-stream DST encoder over one or more joint layouts, optionally with per-task dynamic routing.

    ``encoder(pose, layout="ntu25", task_id=0)`` with pose (N, T, M, V, C) returns a :class:`DSTEOutput`.
    """

    main_input_name = "pose"

    def __init__(self, config: DSTEConfig):
        super().__init__()
        self.config = config
        d, t, s_max = config.d_model, config.num_frames, config.max_spatial_tokens
        self.embeddings = nn.ModuleDict()
        for name in config.layouts:
            tokens = config.num_spatial_tokens(name)
            self.embeddings[name] = LayoutEmbedding(tokens, tokens * config.in_channels, t * config.in_channels, d)
        self.register_buffer("temporal_pe", sinusoid_table(t, d), persistent=False)

        def layer(num_tokens):
            if config.num_blocks == 1:
                return DSTLayer(num_tokens, config)
            return RoutedLayer([DSTLayer(num_tokens, config) for _ in range(config.num_blocks)])

        self.temporal_layers = nn.ModuleList(layer(t) for _ in range(config.temporal_layers))
        self.spatial_layers = nn.ModuleList(layer(s_max) for _ in range(config.spatial_layers))
        self.apply(self._init_weights)
        self.router = None
        if config.num_blocks > 1:
            names = [("temporal", i) for i in range(config.temporal_layers)]
            names += [("spatial", i) for i in range(config.spatial_layers)]
            self.router = TaskRouter(names, config.num_blocks, config.num_tasks, config.task_dim)

    @staticmethod
    def _init_weights(module: nn.Module):
        # As USDRL's pretraining wrapper: every Linear (attention out_proj and token mixing included) trunc-normal
        # std 0.02 within ±2, bias 0; LayerNorm 1/0. in_proj keeps MHA's default, the k=1 convolution keeps
        # Conv1d's default, which is nn.Linear's default init for the same fan-in.
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, CABranch):  # visited after its children
            module.query_proj.reset_parameters()

    @torch.no_grad()
    def reset_buffers(self):
        """Recompute the non-persistent buffers (temporal positions, DSA anchor rows) in place, for loaders that
        instantiate on the meta device and restore only the state dict (transformers' ``from_pretrained``)."""
        self.temporal_pe.copy_(sinusoid_table(*self.temporal_pe.shape))
        for module in self.modules():
            if isinstance(module, DSABranch):
                module.mixed_rows.copy_(DSABranch.mixed_rows_table(module.mixed_rows.shape[0], module.gap))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def layer_prefixes(self) -> list[str]:
        """State-dict prefixes of the DST layers, temporal first: ``temporal_layers.0``, …, ``spatial_layers.1``."""
        return [f"temporal_layers.{i}" for i in range(len(self.temporal_layers))] + [
            f"spatial_layers.{i}" for i in range(len(self.spatial_layers))
        ]

    def load_unrouted_state_dict(self, state_dict: dict):
        """Load weights of an encoder without routing (H = 1): with routing, every block of a layer gets a copy and
        the router keeps its initialisation (D7: pretrained DSTE weights seed all H blocks)."""
        if self.router is not None:
            state_dict = expand_to_blocks(state_dict, self.layer_prefixes(), self.config.num_blocks)
            state_dict.update({k: v for k, v in self.state_dict().items() if k.startswith("router.")})
        return self.load_state_dict(state_dict)

    def anneal_routing(self, step: int, total_steps: int, start: float = 1.0, end: float = 0.1) -> float | None:
        """Set the Gumbel temperature for ``step`` of ``total_steps`` (see routing.gumbel_temperature); returns it,
        or None without routing."""
        if self.router is None:
            return None
        self.router.temperature = gumbel_temperature(step, total_steps, start, end)
        return self.router.temperature

    def routes(self, task_names=None) -> dict:
        """Inference route per task: ``{task: {stream: [{"block", "probabilities"} per layer]}}`` (see TaskRouter)."""
        if self.router is not None:
            return self.router.routes(task_names)
        names = list(task_names) if task_names is not None else [str(m) for m in range(self.config.num_tasks)]
        unrouted = {"block": 0, "probabilities": [1.0]}
        return {
            name: {"temporal": [dict(unrouted) for _ in self.temporal_layers],
                   "spatial": [dict(unrouted) for _ in self.spatial_layers]}
            for name in names
        }

    def _fit_pose(self, pose: torch.Tensor, layout: str) -> torch.Tensor:
        """Check pose (N, T, M, V, C) against the config; pad persons to the layout's count, channels to in_channels."""
        cfg = self.config
        if layout not in self.embeddings:
            raise ConfigError(f"this encoder has no layout {layout!r}; its layouts: {', '.join(cfg.layouts)}")
        if pose.dim() != 5:
            raise ValueError(f"pose must be (N, T, M, V, C), got shape {tuple(pose.shape)}")
        n, t, m, v, c = pose.shape
        joints = get_layout(layout).num_joints
        if t != cfg.num_frames:
            raise ValueError(f"pose has {t} frames, the encoder takes exactly {cfg.num_frames} (resample first)")
        if v != joints:
            raise ValueError(f"pose has {v} joints but layout {layout!r} has {joints}")
        persons = cfg.persons(layout)
        if m > persons or c > cfg.in_channels:
            raise ValueError(
                f"pose has {m} persons and {c} channels; for layout {layout!r} the encoder takes at most {persons} "
                f"and {cfg.in_channels}"
            )
        pose = pose.to(self.temporal_pe.dtype)
        if m < persons or c < cfg.in_channels:
            pose = F.pad(pose, (0, cfg.in_channels - c, 0, 0, 0, persons - m))
        return pose

    def _choose_blocks(self, task_id) -> tuple[torch.Tensor, torch.Tensor | None]:
        num_layers = len(self.temporal_layers) + len(self.spatial_layers)
        if self.router is None:
            return torch.zeros(num_layers, dtype=torch.long), None
        if task_id is None:
            raise ValueError(f"this encoder routes between {self.config.num_blocks} blocks: pass task_id")
        return self.router.choose(task_id)

    def forward(self, pose: torch.Tensor, layout: str = "ntu25", task_id: int | None = None) -> DSTEOutput:
        """pose (N, T, M, V, C) of one ``layout``; ``task_id`` picks the route (ignored without routing)."""
        pose = self._fit_pose(pose, layout)
        n, t, m, v, c = pose.shape
        s, s_max = m * v, self.config.max_spatial_tokens
        embedding = self.embeddings[layout]
        blocks, gates = self._choose_blocks(task_id)
        chosen = blocks.tolist()  # one device sync, not one per layer

        def run(layer, index, x, token_mask):
            if self.router is None:
                return layer(x, token_mask)
            return layer(x, token_mask, block=chosen[index], gates=None if gates is None else gates[index])

        # temporal stream: one token per frame, (person, joint, channel) flattened
        x = embedding.temporal(pose.reshape(n, t, m * v * c))
        for i, layer in enumerate(self.temporal_layers):
            x = run(layer, i, x + self.temporal_pe, None)
        temporal = x

        # spatial stream: one token per (person, joint) trajectory, (frame, channel) flattened, padded to S_max
        padding = s_max - s
        x = F.pad(embedding.spatial(pose.permute(0, 2, 3, 1, 4).reshape(n, s, t * c)), (0, 0, 0, padding))
        spatial_pe = F.pad(embedding.spatial_pe, (0, 0, 0, padding))
        real = (torch.arange(s_max, device=x.device) < s).expand(n, s_max)
        token_mask = real if padding else None
        for j, layer in enumerate(self.spatial_layers):
            x = run(layer, len(self.temporal_layers) + j, x + spatial_pe, token_mask)
            if padding:
                x = x.masked_fill(~real[..., None], 0.0)
        spatial = x

        pooled_spatial = spatial.masked_fill(~real[..., None], float("-inf")).amax(1) if padding else spatial.amax(1)
        pooled = torch.cat([temporal.amax(1), pooled_spatial], dim=-1)
        return DSTEOutput(temporal, spatial, ~real, pooled, blocks)


__all__ = ["DSTE", "DSTEConfig", "DSTEOutput", "DSTLayer", "PRESETS", "sinusoid_table"]
