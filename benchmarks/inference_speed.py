"""Inference speed of ``infer.py`` on the CPU: sequences/s for action recognition, poses/s for 2D->3D lifting.

Usage::

    python benchmarks/inference_speed.py [--model runs/demo/model] [--threads 2] [--repeats 3]

Without ``--model`` the model is a demo-size UPS model (the ``model`` section of ``configs/demo.yaml``: tiny DSTE
with 2 routed blocks, 2-layer decoder of width 64) with random weights over the shipped vocabulary and a random
384-wide text table (values do not change the timing); with ``--model`` a saved model and its run's config.

Timed is what the command line does after reading the input (:mod:`ups_toolkit.inference.runner`): building the
encoder inputs with the training code (transforms, resampling to 64 frames, one 64-frame window per frame for
lifting), then batched, cached, grammar-constrained greedy decoding (``model.predict``), then the results.

- recognition: 64 synthetic NTU-25 sequences (40-120 frames, 2 person slots), ``action_recognition_3d``, top-5, at
  several batch sizes;
- lifting: synthetic H36M-17 2D sequences, every frame lifted (``pose_estimation_2d3d``, 52 tokens per pose), with
  the task's flip test-time augmentation (two decodes per pose, as evaluation) and without it.

Reported: median and best wall seconds over the repeats and the throughput of the median. Other processes on the
machine slow every number down; compare runs made under the same load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups_toolkit.data.synthetic import generate_samples  # noqa: E402
from ups_toolkit.inference.examples import adapt_to_model  # noqa: E402
from ups_toolkit.inference.recipe import TaskRecipe, find_run_config, read_model_info, task_recipe  # noqa: E402
from ups_toolkit.inference.runner import Session, label_names, run_task  # noqa: E402
from ups_toolkit.skeleton.transforms import deterministic_part  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = {"action_recognition_3d": "ntu25", "pose_estimation_2d3d": "h36m17"}
D_TEXT = 384


def demo_model():
    """A demo-size model with random weights (configs/demo.yaml's model section) and recipes like the demo run's."""
    from ups_toolkit.models import UPSConfig, UPSForSeq2Seq
    from ups_toolkit.tokenization import build_vocabulary

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    model_section = dict(demo["model"])
    encoder = dict(model_section.pop("encoder"), layouts=["ntu25", "h36m17"], layout_persons={"h36m17": 1},
                   max_persons=2)
    vocab = build_vocabulary()
    torch.manual_seed(0)
    table = torch.randn(len(vocab), D_TEXT)
    table = table / table.norm(dim=1, keepdim=True)
    table[vocab.pad_id] = 0
    config = UPSConfig(encoder=encoder, tasks=list(TASKS), **model_section)
    model = UPSForSeq2Seq(config, vocabulary=vocab, text_embeddings=table).eval()
    recipes = {}
    for task, layout in TASKS.items():
        transforms = deterministic_part(demo["tasks"][task].get("transforms") or [])
        spec = model.task_spec(task)
        label_set = "synthetic" if spec.output.label_sets else None
        channels = (3,) if task == "action_recognition_3d" else (2,)
        recipes[task] = TaskRecipe(task, task, spec, transforms, label_set, [layout], channels, "configs/demo.yaml")
    return model, recipes, model.encoder.dste.config.persons


def saved_model(path: str):
    from ups_toolkit.inference.cli import load_model

    info = read_model_info(path)
    run_config = find_run_config(info.path)
    recipes = {task: task_recipe(task, info, run_config) for task in TASKS if task in info.tasks}
    model, _ = load_model(info.path, "cpu")
    return model, recipes, info.persons


def timed_runs(fn, repeats: int) -> list[float]:
    fn()  # warm-up: allocator, grammar tables, kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def report(name: str, count: int, unit: str, times: list[float]) -> None:
    median = statistics.median(times)
    print(f"{name:44s} {count:5d} {unit:9s} median {median:7.3f} s  best {min(times):7.3f} s  "
          f"-> {count / median:8.1f} {unit}/s (best {count / min(times):.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a saved model folder (default: a demo-size model with random weights)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequences", type=int, default=64, help="recognition: number of sequences")
    parser.add_argument("--lift-sequences", type=int, default=4, help="lifting: number of 2D sequences")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, recipes, persons = saved_model(args.model) if args.model else demo_model()
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {args.threads} threads; model {args.model or 'demo-size, random weights'} "
          f"({params:,} parameters, decoder d_model {model.config.d_model}, {model.config.decoder_layers} layers)")

    if "action_recognition_3d" in recipes:
        recipe = recipes["action_recognition_3d"]
        per_class = -(-args.sequences // 10)
        samples = list(generate_samples("ntu25_3d", per_class, seed=0))[: args.sequences]
        samples, layout = adapt_to_model(samples, recipe, persons)
        names = label_names(model, recipe.label_set)
        for batch in (1, 16, 64):
            session = Session(model, recipe, layout, batch_size=batch, label_names=names)
            times = timed_runs(lambda: run_task(session, samples), args.repeats)
            report(f"recognition, batch {batch}", len(samples), "sequences", times)
        pose = torch.zeros(64, 64, persons(layout), 25, 3)
        times = timed_runs(lambda: model.predict(pose, layout, recipe.task, label_set=recipe.label_set), args.repeats)
        report("  model.predict alone, batch 64", 64, "sequences", times)

    if "pose_estimation_2d3d" in recipes:
        recipe = recipes["pose_estimation_2d3d"]
        samples = list(generate_samples("h36m17_2d", 1, seed=0))[: args.lift_sequences]
        frames = sum(len(s["keypoint"]) for s in samples)
        samples, layout = adapt_to_model(samples, recipe, persons)
        flip = bool(recipe.spec.options.get("flip_test"))
        for use_flip in sorted({flip, False}, reverse=True):
            spec = recipe.spec if use_flip == flip else recipe.spec.with_overrides({"options": {"flip_test": False}})
            variant = TaskRecipe(**{**recipe.__dict__, "spec": spec})
            for batch in (64, 128):
                session = Session(model, variant, layout, batch_size=batch)
                times = timed_runs(lambda: run_task(session, samples), args.repeats)
                report(f"lifting every frame, {'flip TTA' if use_flip else 'no flip'}, batch {batch}", frames,
                       "poses", times)


if __name__ == "__main__":
    main()
