"""MG-FD: USDRL's multi-grained feature-decorrelation loss on projected views (docs/design.md D10).

Notation: views k = 0..3 of a batch, z_k (B, D) their projections at one granularity (t = temporal, s = spatial,
i = instance); MSE = mean over the B·D entries.

- sim(z) = Σ_{k=0..2} MSE(z_k, z_3) + Σ_{k=0..2} MSE(z_k, c), c = (z_0 + z_1 + z_2)/3, not detached
  (VICReg invariance towards the anchor view 3 and towards the centroid of the other three).
- vac(z) = 5·mean_j ReLU(1 − √(Var_b z_{:,j} + 1e-4)) + (1/D)·Σ_{i≠j} Cov(z)_{ij}², Cov = z̄ᵀz̄/(B − 1)
  (VICReg variance + covariance; Var is the diagonal of the same unbiased Cov).
- xc(a, b) = Σ_j (C_jj − 1)² + 0.005·Σ_{i≠j} C_ij², C = âᵀb̂/B, â = (a − mean)/std with the unbiased std
  (Barlow Twins cross-correlation).
- Per granularity g: S_g = sim(z_g), V_g = Σ_k vac(z_{g,k}), X_g = Σ_{k<l} xc(z_{g,k}, z_{g,l}) (6 pairs);
  S = S_i + 0.5·(S_t + S_s), likewise V and X; L = 5·S + V + 1e-3·X (AAAI code). ``xc_weight=0`` is the TPAMI
  (FoundSkelModel) loss L = 5·S + V; X is then not computed at all.

The loss is computed in fp32 (fp64 inputs stay fp64), with autocast off, whatever precision the model runs in.
A batch the loss cannot judge raises instead of returning NaN: B < 2 (variance and covariance divide by B − 1), a
view whose B projections are identical (zero variance in every dimension), a dimension with zero variance where the
cross-correlation must divide by its std, and any non-finite result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

GRANULARITIES = ("t", "s", "i")  # temporal, spatial, instance
NUM_VIEWS = 4  # views 0..2 are pulled towards view 3 (the anchor) and towards their centroid


def _off_diagonal_square_sum(m: torch.Tensor) -> torch.Tensor:
    """Σ_{i≠j} m_ij² of a square matrix (masked, not total minus diagonal: no cancellation in fp32)."""
    eye = torch.eye(m.shape[0], dtype=torch.bool, device=m.device)
    return m.square().masked_fill(eye, 0.0).sum()


def sim_loss(z: Sequence[torch.Tensor]) -> torch.Tensor:
    """VICReg invariance over four views, each (B, D): Σ_{k<3} MSE(z_k, z_3) + Σ_{k<3} MSE(z_k, c). Scalar."""
    anchor = z[3]
    # not detached, as in the reference; its gradient path is zero anyway: Σ_{k<3} (z_k − c) = 0 for the mean c
    centroid = (z[0] + z[1] + z[2]) / 3
    return sum(F.mse_loss(z[k], anchor) + F.mse_loss(z[k], centroid) for k in range(3))


def vac_loss(z: torch.Tensor, variance_weight: float = 5.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance + covariance of one view z (B, D), B ≥ 2. Scalar.

    variance_weight·mean_j ReLU(1 − √(Var z_j + eps)) + (1/D)·Σ_{i≠j} Cov_ij², Cov = z̄ᵀz̄/(B − 1).
    """
    b, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (b - 1)  # (D, D)
    std = torch.sqrt(torch.diagonal(cov) + eps)
    return variance_weight * F.relu(1.0 - std).mean() + _off_diagonal_square_sum(cov) / d


def _standardise(z: torch.Tensor) -> torch.Tensor:
    """(z − mean)/std per column with the unbiased std (B − 1), z (B, D)."""
    return (z - z.mean(dim=0)) / z.std(dim=0)


def xc_loss(a: torch.Tensor, b: torch.Tensor, off_diagonal_weight: float = 0.005) -> torch.Tensor:
    """Barlow Twins cross-correlation of two views a, b (B, D). Scalar.

    Σ_j (C_jj − 1)² + off_diagonal_weight·Σ_{i≠j} C_ij², C = âᵀb̂/B (the standardisation uses B − 1, C uses B,
    as in the reference, so C_jj is (B − 1)/B at best, not 1).
    """
    c = _standardise(a).T @ _standardise(b) / a.shape[0]  # (D, D)
    return (torch.diagonal(c) - 1.0).square().sum() + off_diagonal_weight * _off_diagonal_square_sum(c)


@dataclass
class MGFDOutput:
    """The MG-FD loss and its parts, all 0-d tensors in the loss dtype (fp32, or fp64 for fp64 inputs).

    loss: the weighted total. sim, vac, xc: S, V, X combined over granularities (xc None when ``xc_weight`` is 0:
    not computed). parts: per granularity ``sim_t, sim_s, sim_i, vac_t, …, xc_i`` (xc_* only when computed).
    """

    loss: torch.Tensor
    sim: torch.Tensor
    vac: torch.Tensor
    xc: torch.Tensor | None
    parts: dict[str, torch.Tensor] = field(default_factory=dict)

    def log_dict(self) -> dict[str, float]:
        """Every value as a Python float, for a logger: ``loss, sim, vac, xc`` and the parts (one device sync)."""
        named = {"loss": self.loss, "sim": self.sim, "vac": self.vac, **({"xc": self.xc} if self.xc is not None else {})}
        named.update(self.parts)
        values = torch.stack([v.detach().float() for v in named.values()]).tolist()
        return dict(zip(named, values))


@dataclass
class MGFDLoss:
    """MG-FD with its weights; call it on ``{"t": [z_0..z_3], "s": [...], "i": [...]}``, each z_k (B, D_g).

    Defaults are the AAAI code: L = 5·S + V + 1e-3·X with granularity weights t 0.5, s 0.5, i 1.
    ``xc_weight=0`` gives the TPAMI loss. ``check=False`` skips the degenerate-batch and finiteness checks (they
    cost one device synchronisation per call).

    Example::

        criterion = MGFDLoss()
        out = criterion({"t": zt, "s": zs, "i": zi})   # lists of 4 tensors (B, D)
        out.loss.backward()
    """

    sim_weight: float = 5.0
    vac_weight: float = 1.0
    xc_weight: float = 1e-3
    granularity_weights: Mapping[str, float] = field(default_factory=lambda: {"t": 0.5, "s": 0.5, "i": 1.0})
    variance_weight: float = 5.0  # inside vac
    variance_eps: float = 1e-4
    off_diagonal_weight: float = 0.005  # inside xc
    check: bool = True

    def __post_init__(self):
        self.granularity_weights = dict(self.granularity_weights)
        unknown = set(self.granularity_weights) - set(GRANULARITIES)
        if unknown:
            raise ValueError(f"granularity_weights: unknown granularities {sorted(unknown)}; use {GRANULARITIES}")
        weights = [self.sim_weight, self.vac_weight, self.xc_weight, *self.granularity_weights.values()]
        if any(w < 0 for w in weights):
            raise ValueError(f"MG-FD weights must be >= 0, got {self}")

    def __call__(self, projections: Mapping[str, Sequence[torch.Tensor]]) -> MGFDOutput:
        z = self._prepare(projections)
        with torch.autocast(device_type=next(iter(z.values()))[0].device.type, enabled=False):
            return self._compute(z)

    def _prepare(self, projections) -> dict[str, list[torch.Tensor]]:
        """Check shapes and B ≥ 2; promote to at least fp32."""
        z = {}
        for g in self.granularity_weights:
            if g not in projections:
                raise ValueError(f"MG-FD: no projections for granularity {g!r}; got {sorted(projections)}")
            views = list(projections[g])
            if len(views) != NUM_VIEWS:
                raise ValueError(f"MG-FD needs {NUM_VIEWS} views per granularity, got {len(views)} for {g!r}")
            shapes = {tuple(v.shape) for v in views}
            if len(shapes) != 1 or len(views[0].shape) != 2:
                raise ValueError(f"MG-FD: the views of granularity {g!r} must all be (B, D), got {sorted(shapes)}")
            batch = views[0].shape[0]
            if batch < 2:
                raise ValueError(
                    f"MG-FD needs a batch of at least 2 samples (variance and covariance divide by B - 1); got "
                    f"B = {batch} (granularity {g!r}). Use a larger batch, or drop_last=True so that no final "
                    f"batch of 1 remains"
                )
            dtype = torch.promote_types(views[0].dtype, torch.float32)
            z[g] = [v.to(dtype) for v in views]
        return z

    def _compute(self, z: dict[str, list[torch.Tensor]]) -> MGFDOutput:
        parts, checks = {}, []
        for g, views in z.items():
            parts[f"sim_{g}"] = sim_loss(views)
            parts[f"vac_{g}"] = sum(vac_loss(v, self.variance_weight, self.variance_eps) for v in views)
            for k, v in enumerate(views):
                # a view whose B projections are all equal: every term of the loss is then meaningless
                spread = (v - v[:1]).abs().amax()
                checks.append((spread == 0, lambda g=g, k=k, v=v: (
                    f"degenerate batch: the {v.shape[0]} projections of view {k} at granularity {g!r} are identical "
                    f"(zero variance in all {v.shape[1]} dimensions); are all samples of the batch the same, or has "
                    f"the encoder collapsed?"
                )))
            if self.xc_weight:
                parts[f"xc_{g}"] = sum(xc_loss(views[k], views[l], self.off_diagonal_weight)
                                       for k, l in combinations(range(NUM_VIEWS), 2))
                for k, v in enumerate(views):
                    constant = (v.std(dim=0) == 0).sum()
                    checks.append((constant > 0, lambda g=g, k=k, v=v, constant=constant: (
                        f"degenerate batch: {int(constant)} of {v.shape[1]} dimensions of view {k} at granularity "
                        f"{g!r} have zero variance over the batch of {v.shape[0]}, so the cross-correlation term "
                        f"cannot standardise them"
                    )))

        def combine(name):
            return sum(w * parts[f"{name}_{g}"] for g, w in self.granularity_weights.items())

        sim, vac = combine("sim"), combine("vac")
        xc = combine("xc") if self.xc_weight else None
        loss = self.sim_weight * sim + self.vac_weight * vac + (self.xc_weight * xc if xc is not None else 0.0)
        out = MGFDOutput(loss=loss, sim=sim, vac=vac, xc=xc, parts=parts)
        if self.check:
            self._raise_if_bad(out, checks)
        return out

    @staticmethod
    def _raise_if_bad(out: MGFDOutput, checks) -> None:
        """One synchronisation for all checks: degenerate views first, then a non-finite loss."""
        flags = torch.stack([flag for flag, _ in checks] + [~torch.isfinite(out.loss.detach())]).tolist()
        for (_, message), bad in zip(checks, flags):
            if bad:
                raise ValueError(message())
        if flags[-1]:
            values = ", ".join(f"{k}={v:.4g}" for k, v in out.log_dict().items())
            raise FloatingPointError(
                f"MG-FD loss is not finite ({values}); look for NaN/inf in the inputs or the weights, or lower the "
                f"learning rate"
            )


__all__ = ["GRANULARITIES", "MGFDLoss", "MGFDOutput", "NUM_VIEWS", "sim_loss", "vac_loss", "xc_loss"]
