"""The UPS claim on real data: one model trained jointly on every benchmark task vs. one model per task, at the same
budget (the table UPS reports as UPS vs UPS_separate).

    python benchmarks/ups_joint_vs_separate.py            # the joint run: the sum of the separate budgets
    python benchmarks/ups_joint_vs_separate.py --quick    # smoke run

The separate models are the ones the single-task benchmarks train (``nwucla_recognition.py``,
``penn_recognition.py``, ``humaneva_lifting.py``, ``cmu_motion_prediction.py``, ``pkummd_detection.py``) with their
default budgets; their results are read from ``<workdir>/results/`` after the joint run, and a benchmark whose
result is missing is run then. The joint model
has the same architecture and optimiser (one difference since issue 14: the separate recognition models train their
decoder at ``realdata.RECOGNITION_OPTIM``'s learning-rate scale, the joint decoder, which also writes coordinates, at
1), and sees every task's data with the same per-task settings. Same budget:
each task gets exactly as many optimizer steps (each on one batch of that task alone) as its separate model had --
the round-robin weights are the separate step counts divided by their greatest common divisor, and the joint run
has their sum. Same learning-rate schedule shape (warm-up + cosine over the whole run). Final-step numbers for both.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from functools import reduce

import realdata

# benchmark module -> (tasks it trains, headline metric per task, higher is better)
BENCHMARKS = {
    "nwucla_recognition": {"action_recognition_3d": ("top1", True), "early_action_prediction": ("top1_mean", True)},
    "penn_recognition": {"action_recognition_2d": ("top1", True)},
    "humaneva_lifting": {"pose_estimation_2d3d": ("p_mpjpe_mm", False)},
    "cmu_motion_prediction": {"motion_prediction": ("mpjpe_mean_mm", False)},
    "pkummd_detection": {"temporal_action_detection": ("mAP_a@0.5", True)},
}


def separate_result(bench: realdata.Bench, name: str) -> dict:
    """The single-task benchmark's saved result, running it first when it is missing."""
    path = bench.work / "results" / f"{name}.json"
    if not path.exists():
        cmd = [sys.executable, f"benchmarks/{name}.py", "--workdir", str(bench.work), "--threads",
               str(bench.args.threads), "--seed", str(bench.args.seed), "--data-root", str(bench.data_root)]
        if bench.args.quick:
            cmd.append("--quick")
        bench.commands.append(cmd)
        subprocess.run(cmd, check=True, cwd=realdata.REPO, env=bench.env)
    return json.loads(path.read_text())


def main() -> int:
    parser = realdata.parser(__doc__)
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="a subset of the benchmarks")
    args = parser.parse_args()
    bench = realdata.Bench("ups_joint_vs_separate", args)
    names = args.only or list(BENCHMARKS)

    tasks, steps = {}, {}
    for name in names:
        module = importlib.import_module(name)
        settings = module.task_settings(module.prepare(bench))
        for task in BENCHMARKS[name]:
            tasks[task] = settings[task]
            steps[task] = module.QUICK_STEPS if args.quick else module.STEPS  # the separate run's default budget
    unit = reduce(math.gcd, steps.values())
    for task in tasks:
        tasks[task]["weight"] = steps[task] // unit
    total = sum(steps.values())
    config = bench.experiment("ups_joint", tasks, total)
    joint, seconds = bench.train("ups_joint", config)

    separate = {}
    for name in names:
        result = separate_result(bench, name)
        for task in BENCHMARKS[name]:
            separate[task] = result["tasks"][task]
            if separate[task]["steps"] != steps[task]:
                sys.exit(f"{name}: its saved result was trained for {separate[task]['steps']} steps of {task}, the "
                         f"joint run for {steps[task]}: rerun it with its default budget")
    rows = []
    for name in names:
        for task, (metric, higher) in BENCHMARKS[name].items():
            a, b = separate[task]["metrics"][metric], joint[task][metric]
            better = "joint" if (b > a) == higher and a != b else ("equal" if a == b else "separate")
            rows.append([task, metric + (" (higher is better)" if higher else " (lower is better)"), a, b, better])
    print(f"\nUPS joint vs separate, same per-task budget ({', '.join(f'{t} {s}' for t, s in steps.items())} steps; "
          f"joint {total} steps, {seconds:.0f} s of training; separate "
          f"{sum(s['train_seconds'] for s in separate.values()):.0f} s in all), final step, {args.threads} thread(s)")
    print(realdata.table(rows, ["task", "metric", "separate models", "one joint model", "better"]))
    bench.print_commands()
    out = bench.save({"steps": steps, "joint_steps": total, "joint_train_seconds": seconds,
                      "separate": {t: s["metrics"] for t, s in separate.items()}, "joint": joint})
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
