"""MG-FD loss (docs/design.md D10): values against a plain-loop re-derivation of the formulas, gradients, precision and
the errors for batches the loss cannot judge."""

import math

import numpy as np
import pytest
import torch

from ups_toolkit.pretraining.losses import MGFDLoss, sim_loss, vac_loss, xc_loss

# ----------------------------------------------------------- the formulas of docs/design.md D10, written out with loops
# (plain Python over nested lists; nothing shared with the implementation)


def ref_mse(a, b):
    rows, cols = len(a), len(a[0])
    return sum((a[i][j] - b[i][j]) ** 2 for i in range(rows) for j in range(cols)) / (rows * cols)


def ref_sim(z):
    rows, cols = len(z[0]), len(z[0][0])
    centroid = [[(z[0][i][j] + z[1][i][j] + z[2][i][j]) / 3 for j in range(cols)] for i in range(rows)]
    return sum(ref_mse(z[k], z[3]) for k in range(3)) + sum(ref_mse(z[k], centroid) for k in range(3))


def ref_column_mean(z, j):
    return sum(row[j] for row in z) / len(z)


def ref_vac(z):
    rows, cols = len(z), len(z[0])
    means = [ref_column_mean(z, j) for j in range(cols)]
    cov = [[sum((z[b][i] - means[i]) * (z[b][j] - means[j]) for b in range(rows)) / (rows - 1)
            for j in range(cols)] for i in range(cols)]
    hinge = sum(max(0.0, 1.0 - math.sqrt(cov[j][j] + 1e-4)) for j in range(cols)) / cols
    off = sum(cov[i][j] ** 2 for i in range(cols) for j in range(cols) if i != j)
    return 5.0 * hinge + off / cols


def ref_standardise(z):
    rows, cols = len(z), len(z[0])
    out = [[0.0] * cols for _ in range(rows)]
    for j in range(cols):
        mean = ref_column_mean(z, j)
        std = math.sqrt(sum((z[b][j] - mean) ** 2 for b in range(rows)) / (rows - 1))
        for b in range(rows):
            out[b][j] = (z[b][j] - mean) / std
    return out


def ref_xc(a, b):
    rows, cols = len(a), len(a[0])
    a_hat, b_hat = ref_standardise(a), ref_standardise(b)
    c = [[sum(a_hat[n][i] * b_hat[n][j] for n in range(rows)) / rows for j in range(cols)] for i in range(cols)]
    return (sum((c[j][j] - 1.0) ** 2 for j in range(cols))
            + 0.005 * sum(c[i][j] ** 2 for i in range(cols) for j in range(cols) if i != j))


def ref_mgfd(z, xc_weight=1e-3):
    """z: {"t"|"s"|"i": [4 views as nested lists]} -> (L, S, V, X)."""
    per = {}
    for g, views in z.items():
        per[g] = (ref_sim(views), sum(ref_vac(v) for v in views),
                  sum(ref_xc(views[k], views[l]) for k in range(4) for l in range(k + 1, 4)))
    s, v, x = (per["i"][n] + 0.5 * (per["t"][n] + per["s"][n]) for n in range(3))
    return 5 * s + v + xc_weight * x, s, v, x


def fixed_views(seed, batch=5, dims=(3, 4, 6)):
    """Small fixed projections {g: [4 × (B, D_g)]} as float64 tensors; views are correlated like augmentations."""
    rng = np.random.default_rng(seed)
    out = {}
    for g, d in zip("tsi", dims):
        base = rng.normal(size=(batch, d))
        out[g] = [torch.tensor(base + 0.5 * rng.normal(size=(batch, d)) + 0.3 * k) for k in range(4)]
    return out


def as_lists(z):
    return {g: [v.tolist() for v in views] for g, views in z.items()}


# ---------------------------------------------------------------- values


def test_hand_computed_values():
    two = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    small = torch.tensor([[0.0], [0.2]], dtype=torch.float64)
    # standardised [0, 2] is ±1/√2 (unbiased std √2); C = (1/2 + 1/2) / B = 0.5, so xc = (0.5 − 1)² = 0.25
    assert xc_loss(two, two).item() == pytest.approx(0.25, abs=1e-12)
    # Var = 2 > 1: no hinge; one dimension: no covariance term
    assert vac_loss(two).item() == 0.0
    # Var = 0.02: 5 · (1 − √0.0201)
    assert vac_loss(small).item() == pytest.approx(5 * (1 - math.sqrt(0.0201)), abs=1e-12)
    # identical views: no invariance loss
    assert sim_loss([two] * 4).item() == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_sim_vac_xc_match_the_loop_derivation(seed):
    z = fixed_views(seed)["i"]
    lists = [v.tolist() for v in z]
    assert sim_loss(z).item() == pytest.approx(ref_sim(lists), rel=1e-12)
    for k in range(4):
        assert vac_loss(z[k]).item() == pytest.approx(ref_vac(lists[k]), rel=1e-12)
    for k, l in [(0, 1), (1, 3), (2, 3)]:
        assert xc_loss(z[k], z[l]).item() == pytest.approx(ref_xc(lists[k], lists[l]), rel=1e-12)


@pytest.mark.parametrize("xc_weight", [1e-3, 0.0])
def test_combined_loss_matches_the_loop_derivation(xc_weight):
    z = fixed_views(2)
    out = MGFDLoss(xc_weight=xc_weight)(z)
    total, s, v, x = ref_mgfd(as_lists(z), xc_weight)
    assert out.loss.item() == pytest.approx(total, rel=1e-12)
    assert (out.sim.item(), out.vac.item()) == (pytest.approx(s, rel=1e-12), pytest.approx(v, rel=1e-12))
    if xc_weight:
        assert out.xc.item() == pytest.approx(x, rel=1e-12)
        assert set(out.parts) == {f"{n}_{g}" for n in ("sim", "vac", "xc") for g in "tsi"}
    else:  # TPAMI: L = 5S + V, the cross-correlation is not computed at all
        assert out.xc is None and not any(k.startswith("xc") for k in out.parts)
    # granularity weights: S = S_i + 0.5 (S_t + S_s)
    assert out.sim.item() == pytest.approx(
        out.parts["sim_i"].item() + 0.5 * (out.parts["sim_t"].item() + out.parts["sim_s"].item()), rel=1e-12)
    logged = out.log_dict()
    assert logged["loss"] == pytest.approx(total, rel=1e-6) and all(isinstance(v, float) for v in logged.values())


def test_weights_are_configurable():
    z = fixed_views(3)
    base = MGFDLoss()(z)
    doubled = MGFDLoss(sim_weight=10.0, granularity_weights={"t": 1.0, "s": 0.5, "i": 1.0})(z)
    # the granularity change adds 0.5·(10·S_t + V_t + 1e-3·X_t) on top of the doubled sim weight
    expected = base.loss + 5 * base.sim + 0.5 * (10 * base.parts["sim_t"] + base.parts["vac_t"]
                                                  + 1e-3 * base.parts["xc_t"])
    assert doubled.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    with pytest.raises(ValueError, match="unknown granularities"):
        MGFDLoss(granularity_weights={"x": 1.0})


# ---------------------------------------------------------------- gradients and precision


def test_gradients_flow_and_match_finite_differences():
    z = fixed_views(4, batch=4, dims=(2, 2, 3))
    leaves = [v.clone().requires_grad_() for g in "tsi" for v in z[g]]

    def loss(*flat):
        return MGFDLoss()({g: list(flat[4 * n: 4 * n + 4]) for n, g in enumerate("tsi")}).loss

    # the centroid is not detached and every term is differentiable: autograd equals the numerical gradient
    assert torch.autograd.gradcheck(loss, leaves, eps=1e-6, atol=1e-5)
    loss(*leaves).backward()
    assert all(leaf.grad is not None and leaf.grad.abs().sum() > 0 for leaf in leaves)


def test_loss_is_fp32_for_low_precision_inputs():
    z = fixed_views(5)
    low = {g: [v.to(torch.bfloat16) for v in views] for g, views in z.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = MGFDLoss()(low)
    assert out.loss.dtype == torch.float32 and all(p.dtype == torch.float32 for p in out.parts.values())
    expected = MGFDLoss()({g: [v.float() for v in views] for g, views in low.items()})
    assert out.loss.item() == pytest.approx(expected.loss.item(), rel=1e-6)


# ---------------------------------------------------------------- batches the loss cannot judge: errors, never NaN


def test_batch_of_one_is_an_error():
    z = {g: [v[:1] for v in views] for g, views in fixed_views(6).items()}
    with pytest.raises(ValueError, match=r"at least 2 samples .*B = 1"):
        MGFDLoss()(z)
    with pytest.raises(ValueError, match=r"at least 2 samples"):
        MGFDLoss(xc_weight=0.0)(z)


@pytest.mark.parametrize("xc_weight", [1e-3, 0.0])
def test_identical_samples_are_an_error(xc_weight):
    z = fixed_views(7)
    z["s"][2] = z["s"][2][:1].expand(5, -1).clone()  # view 2: five identical projections
    with pytest.raises(ValueError, match=r"projections of view 2 at granularity 's' are identical"):
        MGFDLoss(xc_weight=xc_weight)(z)


def test_a_constant_dimension_is_an_error_only_where_xc_must_divide_by_its_std():
    z = fixed_views(8)
    z["i"][1] = z["i"][1].clone()
    z["i"][1][:, 2] = 0.7
    with pytest.raises(ValueError, match=r"1 of 6 dimensions of view 1 at granularity 'i' have zero variance"):
        MGFDLoss()(z)
    out = MGFDLoss(xc_weight=0.0)(z)  # variance and covariance are defined for a constant dimension
    assert torch.isfinite(out.loss)


def test_non_finite_inputs_are_an_error():
    z = fixed_views(9)
    z["t"][0] = z["t"][0].clone()
    z["t"][0][1, 1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"not finite .*sim_t=nan"):
        MGFDLoss()(z)
    z["t"][0][1, 1] = float("inf")
    with pytest.raises((FloatingPointError, ValueError)):
        MGFDLoss()(z)


def test_wrong_view_count_or_shapes_are_errors():
    z = fixed_views(10)
    with pytest.raises(ValueError, match="4 views"):
        MGFDLoss()({**z, "t": z["t"][:3]})
    with pytest.raises(ValueError, match=r"must all be \(B, D\)"):
        MGFDLoss()({**z, "t": [z["t"][0], z["t"][1], z["t"][2], z["t"][3][:, :2]]})
    with pytest.raises(ValueError, match="no projections for granularity 'i'"):
        MGFDLoss()({"t": z["t"], "s": z["s"]})
