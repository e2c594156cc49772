"""Encoder training throughput, ours vs the reference USDRL DSTE, side by side in one run (issue 5 "Speed").

Usage::

    USDRL_REF=/somewhere/USDRL python benchmarks/dste_speed.py [--threads 2] [--repeats 7] [--runs paper:4 small:16]

Each run ``config:batch`` builds both encoders with the same weights (as ``dste_fidelity.py`` does), first checks in
eval mode that they agree (max |diff| is printed; the speed-up must come with the same arithmetic), then times one
training step = forward + backward of a loss on the pooled feature, in training mode (DropPath active in both). The
two models alternate step by step (ABBA order) on the same CPU threads, so load from other processes hits both
alike. Reported: median and minimum wall seconds per step, sequences per second, the median CPU seconds per step
(all threads), and the speed ratio ours/reference of each. Without ``USDRL_REF`` the script prints why and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under ``python -m benchmarks.dste_speed``
from dste_fidelity import CONFIGS, build_pair, eval_outputs, load_reference, make_inputs  # noqa: E402


def training_step(model, inputs, weights) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all threads) for one forward + backward.

    ``inputs`` is (jt, js) for the reference, (pose,) for ours. CPU time does not run while the process waits for a
    core, so it is the steadier figure on a machine shared with other jobs.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    if len(inputs) == 2:
        y_t, y_s = model(*inputs)
        pooled = torch.cat([y_t.amax(1), y_s.amax(1)], dim=-1)
    else:
        pooled = model(inputs[0], "ntu25").pooled
    (pooled * weights).sum().backward()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.zero_grad(set_to_none=True)
    return elapsed, cpu


def measure(reference, name: str, batch: int, repeats: int) -> float:
    ref, ours = build_pair(reference, name)
    jt, js, pose = make_inputs(batch)
    y_t, y_s, out = eval_outputs(ref, ours, jt, js, pose)
    difference = max((out.temporal - y_t).abs().max().item(), (out.spatial - y_s).abs().max().item())

    ref.train(), ours.train()
    weights = torch.randn(batch, out.pooled.shape[-1])
    runs = {"reference": (ref, (jt, js)), "ours": (ours, (pose,))}
    for model, inputs in runs.values():  # warm-up: allocator, oneDNN kernels
        training_step(model, inputs, weights)
    times = {key: [] for key in runs}
    cpu_times = {key: [] for key in runs}
    for i in range(repeats):
        order = list(runs) if i % 2 == 0 else list(runs)[::-1]
        for key in order:
            wall, cpu = training_step(*runs[key], weights)
            times[key].append(wall)
            cpu_times[key].append(cpu)

    print(f"{name} (d={CONFIGS[name]['d_model']}, heads={CONFIGS[name]['num_heads']}), batch {batch}, "
          f"{torch.get_num_threads()} threads, {repeats} steps each; eval max |ours - reference| = {difference:.1e}")
    for key, values in times.items():
        median, best = statistics.median(values), min(values)
        print(f"  {key:>9}: median {median:7.3f} s/step ({batch / median:6.2f} seq/s)   "
              f"min {best:7.3f} s/step ({batch / best:6.2f} seq/s)   "
              f"CPU median {statistics.median(cpu_times[key]):7.3f} s/step")
    ratio = statistics.median(times["reference"]) / statistics.median(times["ours"])
    ratio_min = min(times["reference"]) / min(times["ours"])
    ratio_cpu = statistics.median(cpu_times["reference"]) / statistics.median(cpu_times["ours"])
    print(f"  speed-up ours/reference: {ratio:.2f}x (wall medians), {ratio_min:.2f}x (wall minima), "
          f"{ratio_cpu:.2f}x (CPU-time medians)")
    return ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", nargs="+", default=["paper:4", "small:16"],
                        help="config:batch pairs; configs: " + ", ".join(CONFIGS))
    args = parser.parse_args(argv)
    reference = load_reference()
    if reference is None:
        return 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for run in args.runs:
        name, _, batch = run.partition(":")
        measure(reference, name, int(batch or 4), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
