"""Dynamic routing (docs/design.md D7): every encoder layer holds H parallel blocks, a task picks one block per layer.

A layer l owns H candidate blocks with learned embeddings B_{l,h} ∈ R^q; a task m owns an embedding τ_m ∈ R^q. The
score of block h for task m is s_{l,h} = B_{l,h}·τ_m.

- Training: one gate per (task, layer) per batch (batches are single-task). The forward pass uses the one-hot vector
  of argmax((s + Gumbel noise)/τ_g); the backward pass uses the gradient of softmax((s + noise)/τ_g)
  (straight-through Gumbel-softmax). All H blocks run and the layer returns Σ_h g_h·Block_h(x), so the gradient
  reaching every score is exact for the sampled noise.
- Inference (``eval()``, or a frozen route during per-task fine-tuning): argmax s per task, no noise, and only that
  block runs.
- The Gumbel temperature anneals as τ_g(step) = max(τ_min, τ_0·(τ_min/τ_0)^{step/S}) (:func:`gumbel_temperature`).
- H = 1 is no routing: the encoder then builds plain layers and no router at all.

UPS (CVPR 2023) chooses among GCN / MHSA blocks this way; it released no code, the blocks here are DST layers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn as nn


def gumbel_temperature(step: int, total_steps: int, start: float = 1.0, end: float = 0.1) -> float:
    """Annealed Gumbel temperature τ_g(step) = max(end, start·(end/start)^{step/total_steps}).

    Exponential decay from ``start`` at step 0 to ``end`` at ``total_steps`` (the joint-training steps), then flat.
    """
    if start <= 0 or end <= 0:
        raise ValueError(f"Gumbel temperatures must be positive, got start={start}, end={end}")
    if total_steps <= 0:
        return end
    return max(end, start * (end / start) ** (step / total_steps))


def straight_through_gumbel(scores: torch.Tensor, temperature: float, generator=None) -> torch.Tensor:
    """Sample one-hot gates over the last axis with the straight-through Gumbel-softmax estimator.

    scores: (..., H) unnormalised block scores. Returns (..., H): forward values are exactly 0 or 1 (one-hot of
    argmax((scores + g)/temperature), g ~ Gumbel(0, 1)); the gradient is that of softmax((scores + g)/temperature).
    """
    uniform = torch.rand(scores.shape, generator=generator, dtype=scores.dtype, device=scores.device)
    # -log(-log U), with U kept away from 0 so the noise stays finite
    noise = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(scores.dtype).tiny)))
    soft = torch.softmax((scores + noise) / temperature, dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    # ``soft - soft.detach()`` is exactly 0 in the forward pass, so the gates are exact 0/1 values.
    return hard + (soft - soft.detach())


class TaskRouter(nn.Module):
    """Block embeddings B (num_layers, H, q) and task embeddings τ (num_tasks, q); picks a block per layer.

    ``layer_names`` name the routed layers in order, e.g. ``[("temporal", 0), ("temporal", 1), ("spatial", 0),
    ("spatial", 1)]``; they only label :meth:`routes`. ``temperature`` is set by the training loop (see
    :func:`gumbel_temperature`); ``frozen = True`` makes training use the argmax route, as in per-task fine-tuning.
    """

    def __init__(self, layer_names: Sequence[tuple[str, int]], num_blocks: int, num_tasks: int, dim: int = 256):
        super().__init__()
        if num_blocks < 1 or num_tasks < 1:
            raise ValueError(f"a router needs at least one block and one task, got {num_blocks} and {num_tasks}")
        self.layer_names = [tuple(name) for name in layer_names]
        self.num_blocks, self.num_tasks = num_blocks, num_tasks
        self.block_embeddings = nn.Parameter(torch.randn(len(self.layer_names), num_blocks, dim) * 0.02)
        self.task_embeddings = nn.Parameter(torch.randn(num_tasks, dim) * 0.02)
        self.temperature = 1.0
        self.frozen = False

    def scores(self, task_id: int) -> torch.Tensor:
        """(num_layers, H) scores s_{l,h} = B_{l,h}·τ_task."""
        if not 0 <= int(task_id) < self.num_tasks:
            raise ValueError(f"task_id {int(task_id)} is outside 0..{self.num_tasks - 1}")
        return self.block_embeddings @ self.task_embeddings[int(task_id)]

    def choose(self, task_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blocks for one batch of task ``task_id``.

        Returns (blocks (num_layers,) long, gates (num_layers, H) or None). Gates are given only when all blocks
        must run: in training with a route that is not frozen.
        """
        scores = self.scores(task_id)
        if self.training and not self.frozen:
            gates = straight_through_gumbel(scores, self.temperature)
            return gates.detach().argmax(-1), gates
        return scores.detach().argmax(-1), None

    @torch.no_grad()
    def routes(self, task_names: Sequence[str] | None = None) -> dict:
        """The inference route of every task, for ``routing.json`` and the routing-map picture.

        Returns ``{task: {stream: [{"block": int, "probabilities": [float] * H}, ...one per layer]}}`` where the
        probabilities are softmax(s / temperature) at the current temperature and ``block`` their argmax.
        """
        names = list(task_names) if task_names is not None else [str(m) for m in range(self.num_tasks)]
        if len(names) != self.num_tasks:
            raise ValueError(f"got {len(names)} task names for {self.num_tasks} tasks")
        out = {}
        for task_id, name in enumerate(names):
            probabilities = torch.softmax(self.scores(task_id) / self.temperature, dim=-1)
            per_stream: dict[str, list] = {}
            for (stream, _), p in zip(self.layer_names, probabilities):
                per_stream.setdefault(stream, []).append(
                    {"block": int(p.argmax()), "probabilities": [float(v) for v in p]}
                )
            out[name] = per_stream
        return out


class RoutedLayer(nn.Module):
    """H parallel blocks of one encoder layer; runs the chosen block, or all of them mixed by one-hot gates.

    Every block maps (N, L, d) → (N, L, d) and takes the same extra arguments (here a token mask).
    """

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, *args, block: int, gates: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, L, d); ``block`` the chosen index; ``gates`` (H,) straight-through gates, or None to run one block."""
        if gates is None:
            return self.blocks[int(block)](x, *args)
        return sum(g * b(x, *args) for g, b in zip(gates, self.blocks))


def expand_to_blocks(state_dict: dict, layer_prefixes: Sequence[str], num_blocks: int) -> dict:
    """Copy an unrouted state dict into every block of a routed encoder.

    A key ``<prefix>.<rest>`` with ``<prefix>`` in ``layer_prefixes`` (e.g. ``temporal_layers.0``) becomes
    ``<prefix>.blocks.<h>.<rest>`` for h = 0..num_blocks-1 (cloned, so the blocks train apart); other keys are kept.
    """
    pattern = re.compile(r"^(" + "|".join(re.escape(p) for p in layer_prefixes) + r")\.(.+)$")
    out = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        if match is None:
            out[key] = value
            continue
        for h in range(num_blocks):
            out[f"{match.group(1)}.blocks.{h}.{match.group(2)}"] = value.clone()
    return out


__all__ = [
    "RoutedLayer",
    "TaskRouter",
    "expand_to_blocks",
    "gumbel_temperature",
    "straight_through_gumbel",
]
