"""Does our DSTE reproduce the reference USDRL encoder? (docs/design.md D6, issue 5 "Fidelity")

Usage::

    git clone https://github.com/wengwanjiang/USDRL /somewhere/USDRL      # outside this repository
    USDRL_REF=/somewhere/USDRL python benchmarks/dste_fidelity.py [--configs paper small] [--batch 4]

``USDRL_REF`` is the reference checkout (the folder holding ``model/DSTE.py``) or the file itself; without it the
script prints why and exits 0. Nothing of the reference is copied here: it is imported from that location.

For each configuration the script builds the reference ``DSTE`` (random weights, every parameter perturbed so that no
bias or LayerNorm term hides behind its default), saves its state dict the way released checkpoints store it
(``module.backbone.`` keys plus the ``Downstream`` classifier ``fc``), loads that into our encoder through
:func:`ups_toolkit.models.usdrl_weights.load_usdrl_weights`, and compares

- eval mode: dense temporal tokens, dense spatial tokens and the pooled feature (pass: max |diff| ≤ 1e-5);
- training arithmetic with DropPath off: the gradient of every parameter for the same loss, mapped through the same
  key table (pass: max |diff| ≤ 1e-4 · max |grad|).

The inputs follow the reference feeder: data (N, C, T, V, M) with the second person absent (0) in half the batch;
the reference gets ``jt = data.permute(0, 2, 4, 3, 1)`` flattened per frame and ``js = data.permute(0, 4, 3, 2, 1)``
flattened per (person, joint), ours the time-first pose ``data.permute(0, 2, 4, 3, 1)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups_toolkit.models.dste import DSTE, DSTEConfig, DropPath  # noqa: E402
from ups_toolkit.models.usdrl_weights import load_usdrl_weights, map_usdrl_state_dict  # noqa: E402

# The reference hard-wires T = 64 frames and 50 spatial tokens (NTU-25 × 2 persons, 3 channels): only the width
# and the heads vary.
CONFIGS = {"paper": dict(d_model=1024, num_heads=1), "small": dict(d_model=256, num_heads=4)}
T, V, M, C = 64, 25, 2, 3
OUTPUT_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4


def load_reference():
    """The reference ``model/DSTE.py`` as a module, or None (with a message) when USDRL_REF is not set or wrong."""
    location = os.environ.get("USDRL_REF")
    if not location:
        print("skipped: set USDRL_REF to a local copy of github.com/wengwanjiang/USDRL (the folder with model/DSTE.py)")
        return None
    path = Path(location)
    path = path if path.suffix == ".py" else path / "model" / "DSTE.py"
    if not path.is_file():
        print(f"skipped: USDRL_REF={location} has no model/DSTE.py")
        return None
    spec = importlib.util.spec_from_file_location("usdrl_reference_dste", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_pair(reference, name: str, seed: int = 0):
    """(reference DSTE, our DSTE with the same weights loaded through the released-checkpoint key mapping)."""
    cfg = CONFIGS[name]
    torch.manual_seed(seed)
    ref = reference.DSTE(M * V * C, T * C, cfg["d_model"], cfg["num_heads"], 2, 0.5, 4)
    with torch.no_grad():
        for p in ref.parameters():  # shared attention parameters are yielded once, so both copies stay equal
            p.add_(0.02 * torch.randn_like(p))
    checkpoint = {f"module.backbone.{k}": v.clone() for k, v in ref.state_dict().items()}
    checkpoint["module.fc.weight"] = torch.zeros(60, 2 * cfg["d_model"])
    checkpoint["module.fc.bias"] = torch.zeros(60)
    ours = DSTE(DSTEConfig(**cfg))
    report = load_usdrl_weights(ours, checkpoint)
    assert report.head_keys == ["fc.bias", "fc.weight"] and report.kept_initialised == [], report
    return ref, ours


def make_inputs(batch: int, seed: int = 1):
    """Reference inputs (jt (N, T, M·V·C), js (N, M·V, T·C)) and our pose (N, T, M, V, C) from one (N, C, T, V, M)."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(batch, C, T, V, M, generator=g)
    data[::2, ..., 1] = 0  # second person absent in every other sample, as in single-actor NTU clips
    jt = data.permute(0, 2, 4, 3, 1).reshape(batch, T, M * V * C)
    js = data.permute(0, 4, 3, 2, 1).reshape(batch, M * V, T * C)
    pose = data.permute(0, 2, 4, 3, 1).contiguous()
    return jt, js, pose


def disable_drop_path(ref, ours):
    for module in ref.modules():
        if type(module).__name__ == "DropPath":
            module.drop_prob = 0.0
    for module in ours.modules():
        if isinstance(module, DropPath):
            module.p = 0.0


def eval_outputs(ref, ours, jt, js, pose):
    """Both encoders in eval mode on the same inputs: the reference's (temporal, spatial) and our DSTEOutput."""
    ref.eval(), ours.eval()
    with torch.no_grad():
        y_t, y_s = ref(jt, js)
        return y_t, y_s, ours(pose, "ntu25")


def compare(reference, name: str, batch: int) -> bool:
    ref, ours = build_pair(reference, name)
    jt, js, pose = make_inputs(batch)
    y_t, y_s, out = eval_outputs(ref, ours, jt, js, pose)
    pooled = torch.cat([y_t.amax(1), y_s.amax(1)], dim=-1)
    diffs = {
        "temporal": (out.temporal - y_t).abs().max().item(),
        "spatial": (out.spatial - y_s).abs().max().item(),
        "pooled": (out.pooled - pooled).abs().max().item(),
    }
    scale = max(y_t.abs().max().item(), y_s.abs().max().item())

    disable_drop_path(ref, ours)
    ref.train(), ours.train()
    weights = torch.randn(batch, pooled.shape[-1], generator=torch.Generator().manual_seed(2))
    y_t, y_s = ref(jt, js)
    (torch.cat([y_t.amax(1), y_s.amax(1)], -1) * weights).sum().backward()
    (ours(pose, "ntu25").pooled * weights).sum().backward()
    ref_grads = {k: (v.grad if v.grad is not None else torch.zeros_like(v))
                 for k, v in ref.state_dict(keep_vars=True).items() if v.requires_grad}
    mapped, _ = map_usdrl_state_dict(ref_grads)
    worst_key, worst = "", 0.0
    for key, param in ours.named_parameters():
        relative = (param.grad - mapped[key]).abs().max().item() / max(mapped[key].abs().max().item(), 1e-12)
        if relative > worst:
            worst_key, worst = key, relative
    ok = max(diffs.values()) <= OUTPUT_TOLERANCE and worst <= GRADIENT_TOLERANCE
    params = ours.num_parameters()
    print(f"{name:>6}  d={CONFIGS[name]['d_model']:<5} params={params:,}  batch={batch}  output scale {scale:.2f}")
    print("        eval max |ours - reference|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
          + f"  (tolerance {OUTPUT_TOLERANCE:.0e})")
    print(f"        train gradients, max relative diff: {worst:.2e} at {worst_key}  (tolerance {GRADIENT_TOLERANCE:.0e})")
    print(f"        {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    reference = load_reference()
    if reference is None:
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [compare(reference, name, args.batch) for name in args.configs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
