"""Decoder vs linear head on the same encoder (issue 14): does the unified decoder cost accuracy or speed?

    python benchmarks/decoder_vs_head.py                        # NW-UCLA + Penn Action, test splits, 1,500 steps
    python benchmarks/decoder_vs_head.py --val --steps 600 --levers all   # the lever search on validation splits
    python benchmarks/decoder_vs_head.py --profile              # one UPS step vs one linear-head step (seconds)
    python benchmarks/decoder_vs_head.py --quick                # a smoke run (minutes; not a result)

Per dataset (NW-UCLA cross-view, 3D; Penn Action official split, 2D) and at equal steps, batch 16 and seed:

(a) **linear head**: the same DSTE (the benchmark width, ``realdata.BENCH_MODEL["encoder"]``, routing blocks
    ``--blocks``) with one ``nn.Linear`` on the max-pooled feature g, cross-entropy. Built here on the toolkit's public
    pieces: the experiment config of (b), its task data (``build_tasks``: the same transforms, 64 frames, the same
    per-sample generators and epoch order), ``parameter_groups`` / ``WarmupCosine`` (AdamW 1e-3, wd 0.05, warm-up 5 %
    then cosine to 1 %), gradient clipping 1.0 — the training loop's recipe with the decoder swapped for the head.
    The reference, not a model of the toolkit.
(b) **UPS**: the model (text-derived label tokens, decoder scoring) trained by ``train.py`` through ``realdata.py``'s
    harness, with a lever's overrides.

Both report top-1 at the final step (no model selection) and training steps/s measured in this run the same way:
wall time of the training steps including batch loading, evaluation and start-up excluded (train.py's
``seconds_per_step``). The machine is shared: absolute times move with the load, the ratio of two runs made side by
side is the figure to compare.

``--val``: levers are chosen without the test data. The training split is cut into a fixed 85 % (training) and a
15 % validation split, stratified by class, drawn with numpy seed 0 whatever ``--seed`` is (NW-UCLA: 867 / 153 of
the v01+v02 sequences; Penn Action: 1,070 / 188 of the official training clips). Evaluation is then on the
validation split; the test split (NW-UCLA v03, Penn Action test) is not read.

``--levers a,b`` (or ``all``): one UPS run per lever (CHANGES below, each one change from BASELINE, the model as
issue 14 found it), beside one linear-head run. The default pair is the baseline and the chosen recipe.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

import nwucla_recognition
import penn_recognition
import realdata

STEPS, QUICK_STEPS = 1500, 40
VAL_FRACTION, VAL_SEED = 0.15, 0

# The ablation: each lever is one change from BASELINE, the UPS model as it was when issue 14 was filed (no pooled
# feature in the decoder, decoder learning rate = optim.lr); "chosen" is what the ablation kept (now the defaults:
# UPSConfig.pooled_feature "bos", and decoder_lr_scale 0.1 in the recognition benchmarks' RECOGNITION_OPTIM).
BASELINE = {"model": {"pooled_feature": "none"}, "optim": {"decoder_lr_scale": 1.0}}
CHANGES: dict[str, dict] = {
    "baseline (before issue 14)": {},
    "pooled feature as a memory token": {"model": {"pooled_feature": "memory"}},
    "pooled feature added to BOS": {"model": {"pooled_feature": "bos"}},
    "dot logits": {"model": {"logits": "dot"}},
    "cosine logits scale 30": {"model": {"logit_scale_init": 30.0}},
    "whole-vocabulary loss": {"model": {"loss_over": "vocabulary"}},
    "decoder dropout 0": {"model": {"dropout": 0.0}},
    "encoder drop-path 0": {"model": {"encoder": {"drop_path": 0.0}}},
    "decoder lr x3": {"optim": {"decoder_lr_scale": 3.0}},
    "decoder lr x0.3": {"optim": {"decoder_lr_scale": 0.3}},
    "decoder lr x0.1": {"optim": {"decoder_lr_scale": 0.1}},
    "label smoothing 0.1": {"model": {"label_smoothing": 0.1}},
    "frozen text table (no residual)": {"model": {"vocab_residual": False}},
    "routing H = 2": {"model": {"encoder": {"num_blocks": 2}}},
    # the two levers that helped alone, together
    "BOS pooled + decoder lr x0.3": {"model": {"pooled_feature": "bos"}, "optim": {"decoder_lr_scale": 0.3}},
    "chosen: BOS pooled + decoder lr x0.1": {"model": {"pooled_feature": "bos"}, "optim": realdata.RECOGNITION_OPTIM},
}


DATASETS = {
    "nwucla": dict(title="NW-UCLA cross-view (3D)", task="action_recognition_3d", module=nwucla_recognition),
    "penn": dict(title="Penn Action official split (2D)", task="action_recognition_2d", module=penn_recognition),
}


def merge(base: dict, change: dict) -> dict:
    """``base`` with ``change`` applied key by key (nested mappings merged)."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


# ----------------------------------------------------------------------------------------------------------------------
# the validation split


def carve_validation(data: Path, out: Path, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> Path:
    """A prepared dataset at ``out`` with splits ``train`` (the rest) and ``val`` (``fraction`` of every class of
    ``data``'s train split, drawn with ``seed``); written once."""
    if (out / "dataset_dict.json").exists():
        return out
    from datasets import DatasetDict, load_from_disk

    from ups_toolkit.atomic import atomic_directory

    train = load_from_disk(str(data))["train"]
    labels = np.asarray(train["label"])
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        val.extend(rng.choice(rows, size=max(1, int(round(fraction * len(rows)))), replace=False).tolist())
    val = np.sort(np.array(val))
    rest = np.setdiff1d(np.arange(len(labels)), val)
    info = json.loads((data / "ups_info.json").read_text()) if (data / "ups_info.json").exists() else {}
    info["splits"] = {"train": int(len(rest)), "val": int(len(val))}
    info["options"] = {**info.get("options", {}), "validation": f"{fraction:.0%} of train per class, numpy seed {seed}"}
    with atomic_directory(out) as staged:
        DatasetDict({"train": train.select(rest), "val": train.select(val)}).save_to_disk(str(staged))
        (Path(staged) / "ups_info.json").write_text(json.dumps(info, indent=1))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# (a) the linear-head reference


def linear_head(encoder_config, num_classes: int, layout: str):
    """DSTE + Linear(2·d → classes) on the pooled feature g: ``model(pose)`` → (N, classes) logits."""
    import torch.nn as nn

    from ups_toolkit.models import DSTE

    class LinearHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = DSTE(encoder_config)
            self.head = nn.Linear(2 * encoder_config.d_model, num_classes)

        def forward(self, pose):
            task_id = 0 if self.encoder.router is not None else None
            return self.head(self.encoder(pose, layout=layout, task_id=task_id).pooled)

    return LinearHead()


def train_linear_head(config_path: Path, threads: int) -> dict:
    """Train the DSTE of the experiment at ``config_path`` with a linear head on g (its task data, optimizer
    recipe, steps and seed); returns {top1, mean_class, train_seconds, steps}. Cached next to the config."""
    cached = config_path.with_suffix(".head.json")
    text = config_path.read_text()
    if cached.exists():
        result = json.loads(cached.read_text())
        if result.get("config") == text:
            return result
    import torch
    import torch.nn.functional as F
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from ups_toolkit.metrics.classification import mean_class_accuracy, topk_accuracy
    from ups_toolkit.training.config import load_config
    from ups_toolkit.training.evaluation import make_eval_loader
    from ups_toolkit.training.loop import WarmupCosine, parameter_groups
    from ups_toolkit.training.setup import build_model_config, build_tasks, build_vocabulary_and_table
    from ups_toolkit.training.task_data import Collate, EpochSampler, TaskDataset

    torch.set_num_threads(threads)
    config = load_config(str(config_path))
    set_seed(config["seed"])
    vocab, _, source = build_vocabulary_and_table(config)
    (state,) = build_tasks(config, vocab)
    encoder_config = build_model_config(config, [state], source).encoder_config()
    set_seed(config["seed"])
    num_classes = state.train_examples.codec.num_classes

    model = linear_head(encoder_config, num_classes, state.layout(train=True))
    optim, training = config["optim"], config["training"]
    optimizer = torch.optim.AdamW(parameter_groups(model, optim["weight_decay"]), lr=optim["lr"],
                                  betas=tuple(optim["betas"]), eps=optim["eps"])
    steps = training["steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(steps, optim["warmup_ratio"],
                                                                          optim["min_lr_ratio"]))
    seed = config["seed"]
    dataset = TaskDataset(state.train_examples, seed, state.index)
    sampler = EpochSampler(len(dataset), seed, state.index, shuffle=True)
    loader = DataLoader(dataset, batch_size=state.settings["batch_size"], sampler=sampler,
                        collate_fn=Collate(state.train_examples.codec.length),
                        generator=torch.Generator().manual_seed(seed))
    model.train()
    epoch, step, started = 0, 0, time.perf_counter()
    while step < steps:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        for batch in loader:
            if model.encoder.router is not None:
                model.encoder.anneal_routing(step, steps)
            loss = F.cross_entropy(model(batch["pose"]), batch["label"].long())
            loss.backward()
            if optim["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim["grad_clip"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == steps:
                break
        epoch += 1
    seconds = time.perf_counter() - started
    model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for batch in make_eval_loader(state, config["evaluation"]["batch_size"], 0, seed):
            scores.append(model(batch["pose"]).softmax(-1).numpy())
            labels.append(batch["label"].numpy())
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    result = {"top1": topk_accuracy(scores, labels, ks=(1,))[1],
              "mean_class": mean_class_accuracy(scores.argmax(1), labels, num_classes),
              "train_seconds": seconds, "steps": steps, "config": text}
    cached.write_text(json.dumps(result, indent=1))
    return result


# ----------------------------------------------------------------------------------------------------------------------
# the step-time profile


def profile_steps(config_path: Path, threads: int, steps: int = 20, rounds: int = 3) -> dict:
    """Time one UPS training step (``Trainer.train_step``: forward, loss, backward, clipping, AdamW) against one
    linear-head step on the same encoder config and the same prefetched batches (batch loading excluded from both),
    alternating ``rounds`` blocks of ``steps`` so that a change in the machine's load hits both; then a
    torch.profiler breakdown of the UPS step. Returns milliseconds per step."""
    import statistics

    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile, record_function

    from ups_toolkit.training.config import load_config
    from ups_toolkit.training.loop import Trainer, parameter_groups

    torch.set_num_threads(threads)
    trainer = Trainer(load_config(str(config_path)), quiet=True)
    trainer.setup(None, overwrite=True)
    (state,) = trainer.states
    task, total = state.name, trainer.config["training"]["steps"]
    batches = [trainer.next_batch(task) for _ in range(steps)]
    feed = iter(batches * (2 * rounds + 4))
    trainer.next_batch = lambda name: next(feed)
    ups = trainer.accelerator.unwrap_model(trainer.model)
    encoder_config = ups.encoder.dste.config
    head = linear_head(encoder_config, state.train_examples.codec.num_classes, state.layout(train=True))
    optim = trainer.config["optim"]
    optimizer = torch.optim.AdamW(parameter_groups(head, optim["weight_decay"]), lr=optim["lr"])

    def head_step(batch):
        with record_function("head: forward + loss"):
            loss = F.cross_entropy(head(batch["pose"]), batch["label"].long())
        with record_function("backward"):
            loss.backward()
        with record_function("clip + AdamW"):
            torch.nn.utils.clip_grad_norm_(head.parameters(), optim["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def block(fn) -> float:
        started = time.perf_counter()
        for batch in batches:
            fn(batch)
        return 1000 * (time.perf_counter() - started) / len(batches)

    trainer.model.train()
    head.train()
    ups_step = lambda batch: trainer.train_step(task, total)  # noqa: E731  (reads the prefetched batches)
    block(ups_step), block(head_step)  # warm-up
    times = {"ups": [], "head": []}
    for _ in range(rounds):
        times["ups"].append(block(ups_step))
        times["head"].append(block(head_step))
    result = {name: statistics.median(values) for name, values in times.items()}

    def labelled(owner, name, label):  # wrap a method in a profiler range
        method = getattr(owner, name)

        def wrapper(*args, **kwargs):
            with record_function(label):
                return method(*args, **kwargs)
        setattr(owner, name, wrapper)

    labelled(ups.encoder, "forward", "UPS: encoder forward")
    labelled(ups.decoder, "forward", "UPS: decoder forward")
    labelled(ups.decoder, "logits", "UPS: vocabulary logits")
    labelled(ups, "loss", "UPS: grammar loss")
    labelled(trainer.accelerator, "backward", "backward")
    labelled(trainer.optimizer, "step", "clip + AdamW")
    labelled(trainer.accelerator, "clip_grad_norm_", "clip + AdamW")
    breakdown = {}
    for name, fn in (("ups", ups_step), ("head", head_step)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[:10]:
                fn(batch)
        breakdown[name] = {e.key: e.cpu_time_total / 1000 / 10 for e in prof.key_averages()
                           if e.key.startswith(("UPS:", "head:", "backward", "clip"))}
    result["breakdown"] = breakdown
    result["blocks"] = encoder_config.num_blocks
    return result


# ----------------------------------------------------------------------------------------------------------------------
# one dataset


def run_dataset(bench: realdata.Bench, key: str, steps: int, levers: list[str], args) -> list[dict]:
    spec = DATASETS[key]
    module, task = spec["module"], spec["task"]
    data = module.prepare(bench)
    eval_split = "test"
    if args.val:
        data = carve_validation(data, bench.work / "data" / f"{data.name}_val")
        eval_split = "val"
    settings = module.task_settings(data)[task]
    settings["eval"] = {"path": str(data), "split": eval_split}
    model = merge(realdata.QUICK_MODEL if args.quick else realdata.BENCH_MODEL,
                  {"encoder": {"num_blocks": args.blocks}})
    tag = f"{key}_{eval_split}_{steps}_h{args.blocks}_s{args.seed}"
    rows = []

    head_config = bench.experiment(f"dvh_{tag}_head", {task: settings}, steps, model=model)
    head_path = bench.work / f"dvh_{tag}_head.yaml"
    import yaml

    head_path.write_text(yaml.safe_dump(head_config, sort_keys=False))
    if args.profile:
        profile_config = merge(head_config, {"output_dir": str(bench.work / f"dvh_{tag}_profile")})
        profile_path = bench.work / f"dvh_{tag}_profile.yaml"
        profile_path.write_text(yaml.safe_dump(profile_config, sort_keys=False))
        result = profile_steps(profile_path, args.threads)
        print(f"\n{spec['title']}: one training step, batch 16, {args.threads} thread(s), routing blocks H = "
              f"{result['blocks']}, batch loading excluded, median of 3 alternating blocks of 20 steps")
        print(realdata.table([["UPS (train.py's train_step)", result["ups"], result["ups"] / result["head"]],
                              ["linear head on g", result["head"], 1.0]], ["step", "ms", "x head"]))
        names = sorted({k for part in result["breakdown"].values() for k in part})
        print("\ntorch.profiler, ms per step (10 steps; ranges nest: backward holds every backward op)")
        print(realdata.table([[n, result["breakdown"]["ups"].get(n, ""), result["breakdown"]["head"].get(n, "")]
                              for n in names], ["range", "UPS", "linear head"]))
        return [{"dataset": key, "profile": result}]
    head = train_linear_head(head_path, args.threads)
    rows.append({"dataset": key, "model": "linear head on g (reference)", "top1": head["top1"],
                 "mean_class": head["mean_class"], "train_seconds": head["train_seconds"],
                 "steps_per_s": steps / head["train_seconds"]})
    for lever in levers:
        change = merge(BASELINE, CHANGES[lever])
        run = f"dvh_{tag}_{slug(lever)}"
        config = bench.experiment(run, {task: settings}, steps, model=merge(model, change.get("model", {})),
                                  optim=change.get("optim"))
        final, seconds = bench.train(run, config)
        metrics = final[task]
        rows.append({"dataset": key, "model": f"UPS: {lever}", "top1": metrics["top1"],
                     "mean_class": metrics["mean_class"], "train_seconds": seconds, "steps_per_s": steps / seconds,
                     "change": change})
    return rows


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def main() -> int:
    p = realdata.parser(__doc__)
    p.add_argument("--val", action="store_true",
                   help="train on 85 %% of the training split, evaluate on the other 15 %% (stratified, fixed seed)")
    p.add_argument("--datasets", default="nwucla,penn", help="comma-separated: nwucla, penn")
    p.add_argument("--levers", default="baseline (before issue 14),chosen: BOS pooled + decoder lr x0.1",
                   help=f"comma-separated UPS variants, or all: {', '.join(CHANGES)}")
    p.add_argument("--profile", action="store_true",
                   help="only time one UPS training step against one linear-head step (and a torch.profiler "
                        "breakdown), no training runs")
    p.add_argument("--blocks", type=int, default=1,
                   help="routing blocks H of the encoder, in both models (1 = no routing, as the head reference)")
    args = p.parse_args()
    levers = list(CHANGES) if args.levers == "all" else [s.strip() for s in args.levers.split(",") if s.strip()]
    unknown = [lever for lever in levers if lever not in CHANGES]
    if unknown:
        p.error(f"unknown lever {unknown[0]!r}; known: {', '.join(CHANGES)}")
    keys = [k.strip() for k in args.datasets.split(",") if k.strip()]
    if any(k not in DATASETS for k in keys):
        p.error(f"--datasets takes {', '.join(DATASETS)}")
    bench = realdata.Bench("decoder_vs_head", args)
    bench.commands.append([sys.executable, "benchmarks/decoder_vs_head.py", *sys.argv[1:]])  # the head runs in here
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    rows = []
    for key in keys:
        rows += run_dataset(bench, key, steps, levers, args)
    split = "validation split (15 % of train, stratified, seed 0)" if args.val else "test split"
    for key in [] if args.profile else keys:
        mine = [r for r in rows if r["dataset"] == key]
        head = mine[0]
        print(f"\n{DATASETS[key]['title']}, {split}: {steps} steps of batch 16, seed {args.seed}, routing blocks "
              f"H = {args.blocks}, {args.threads} thread(s), final step")
        print(realdata.table([[r["model"], r["top1"], r["top1"] - head["top1"], r["mean_class"],
                               r["steps_per_s"], head["steps_per_s"] / r["steps_per_s"], f"{r['train_seconds']:.0f}"]
                              for r in mine],
                             ["model", "top-1 %", "vs head", "mean-class %", "steps/s", "step time / head",
                              "train s"]))
    bench.print_commands()
    out = bench.save({"steps": steps, "validation": args.val, "blocks": args.blocks, "rows": rows})
    print(f"\nresults: {out}  (wall {bench.elapsed():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
