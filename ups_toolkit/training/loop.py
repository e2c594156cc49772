"""The multi-task training loop (docs/design.md D9), one readable loop in the style of Accelerate's examples.

- **Stages**: ``joint`` (every task, ``training.steps`` optimizer steps), then optionally ``finetune:<task>`` per task
  (``finetune.steps`` each, starting from the joint model, routes frozen at their argmax, fresh optimizer moments
  and schedule); every stage ends with an evaluation, a checkpoint and an export.
- **Cycle**: tasks round-robin, one task per optimizer step; ``tasks.X.weight`` = batches of X per cycle (integer
  repeats); ``tasks.X.loss_weight`` scales its loss; ``optim.grad_accum`` micro-batches of the same task per step.
- **Optimizer**: AdamW, no weight decay on biases, norms, positional / stream / task / block embeddings, token
  residuals and biases; gradient clipping; linear warmup over ``optim.warmup_ratio`` of the steps, then cosine to
  ``optim.min_lr_ratio`` of the peak.
- **Precision**: fp32 on the CPU, bf16 autocast on a GPU (``training.mixed_precision``); the loss is fp32.
- **Exact resume**: optimizer and RNG states (Accelerate ``save_state``), stage, step, cycle position, the
  scheduler's position and every task loader's (epoch, batches consumed) (``trainer_state.json``, no pickle);
  loaders restart mid-epoch with ``skip_first_batches``; examples draw from per-(seed, task, epoch, item)
  generators, so N steps straight and N/2 + kill + resume + N/2 give identical parameters on the CPU (one process
  or DDP). A resume under a config that alters the run is refused unless allowed (:mod:`.config_change`).
- **Outputs** in ``output_dir``: ``config.yaml``, ``checkpoints/`` (atomic, ``latest``, last k), ``model/`` (the joint
  model, ``save_pretrained`` + ``vocab.json``), ``best/`` (best evaluation by ``training.best_metric``),
  ``finetuned/<task>/``, ``metrics.jsonl``, ``final_metrics.json``, ``tensorboard/``, ``plots/`` (training curve,
  confusion matrices, routing maps), ``routing.json``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from ..atomic import atomic_write_text, replace_directory
from ..errors import ConfigError
from ..preprocessing import task_preprocessing, write_preprocessing
from .checkpoint import (claim_output_dir, read_trainer_state, resolve_checkpoint, restore_scheduler, save_checkpoint,
                         trainer_record)
from .config_change import check_config_change, save_run_config
from .config import ExperimentConfig, check_model_section

NO_DECAY_NAMES = ("spatial_pe", "positions", "stream_embedding", "residual", "block_embeddings", "task_embeddings",
                  "logit_scale")
RUN_OUTPUTS = ("checkpoints", "model", "best", "finetuned", "plots", "tensorboard", "metrics.jsonl",
               "final_metrics.json", "routing.json", "config.yaml", "config_changes.jsonl")


# ----------------------------------------------------------------------------------------------------------------------
# small pieces


class WarmupCosine:
    """lr multiplier at step s: (s + 1)/W for s < W (W = warmup steps), then cosine from 1 to ``min_ratio`` at
    ``total`` steps. Rebuilt from the config on resume (a checkpoint holds the scheduler's position only)."""

    def __init__(self, total: int, warmup_ratio: float, min_ratio: float):
        self.total = int(total)
        self.warmup = int(round(warmup_ratio * total))
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model, weight_decay: float, decoder_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on 1-D tensors (biases, norms) and embedding tables. With
    ``decoder_lr_scale`` != 1 the decoder's parameters (every one outside ``encoder.``) form their own groups, whose
    ``lr_scale`` multiplies the learning rate."""
    groups: dict[tuple[bool, bool], list] = {}
    split = decoder_lr_scale != 1.0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decays = not (p.ndim < 2 or any(name.endswith(n) or f".{n}." in name for n in NO_DECAY_NAMES))
        in_decoder = split and not name.startswith("encoder.")
        groups.setdefault((in_decoder, decays), []).append(p)
    out = []
    for in_decoder in (False, True) if split else (False,):
        for decays in (True, False):
            scale = decoder_lr_scale if in_decoder else 1.0
            out.append({"params": groups.get((in_decoder, decays), []), "weight_decay": weight_decay if decays else 0.0,
                        "lr_scale": scale})
    return out


class TrainerState:
    """Counters restored on resume (``trainer_state.json``)."""

    def __init__(self):
        self.stage = 0  # index into the stage list
        self.step = 0  # optimizer steps done in the current stage
        self.total_step = 0  # over all stages (logging, checkpoint names)
        self.cycle_pos = 0
        self.loaders: dict[str, list[int]] = {}  # task -> [epoch, batches consumed in that epoch]
        self.best: dict | None = None  # {"metric", "value", "step"}
        self.finished = False

    def state_dict(self) -> dict:
        return {"stage": self.stage, "step": self.step, "total_step": self.total_step, "cycle_pos": self.cycle_pos,
                "loaders": {k: list(v) for k, v in self.loaders.items()}, "best": self.best,
                "finished": self.finished}

    def load_state_dict(self, data: dict) -> None:
        self.stage, self.step, self.total_step = int(data["stage"]), int(data["step"]), int(data["total_step"])
        self.cycle_pos = int(data["cycle_pos"])
        self.loaders = {k: [int(v[0]), int(v[1])] for k, v in data["loaders"].items()}
        self.best, self.finished = data.get("best"), bool(data.get("finished", False))


def make_accelerator(config: ExperimentConfig):
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration

    training = config["training"]
    cpu = training["cpu"] or not torch.cuda.is_available()
    precision = training["mixed_precision"]
    if precision == "auto":
        precision = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    if cpu and precision != "no":
        raise ConfigError(f"{config.source}: key 'training.mixed_precision': {precision} needs a GPU; use auto or no")
    if config["logging"]["tensorboard"] and importlib.util.find_spec("tensorboard") is None:
        # accelerate would drop the tracker with a log line nobody sees; say it where the user looks
        print("warning: tensorboard is not installed, so this run logs to metrics.jsonl only (pip install "
              "tensorboard, or set logging.tensorboard: false to silence this)", file=sys.stderr, flush=True)
        config.data["logging"]["tensorboard"] = False
    log_with = ["tensorboard"] if config["logging"]["tensorboard"] else None
    return Accelerator(
        cpu=cpu, mixed_precision=precision, log_with=log_with, rng_types=[],
        project_config=ProjectConfiguration(project_dir=str(config.output_dir),
                                            logging_dir=str(config.output_dir / "tensorboard")),
        # a batch holds one task and one layout: other tasks' route embeddings and other layouts' input embeddings
        # get no gradient in that step
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def stages(config: ExperimentConfig) -> list[tuple[str, list[str], int]]:
    """[(stage name, tasks trained, steps)]: joint, then finetune:<task> per fine-tuned task."""
    trainable = [n for n, s in config["tasks"].items() if s["train"] is not None]
    out = [("joint", trainable, config["training"]["steps"])]
    ft = config["finetune"]
    if ft["steps"] > 0:
        for name in ft["tasks"] or trainable:
            if name in trainable:
                out.append((f"finetune:{name}", [name], ft["steps"]))
    return out


def task_cycle(config: ExperimentConfig, names: list[str]) -> list[str]:
    """One round-robin cycle: each task repeated ``weight`` times, in config order, interleaved (A B A B C ...)."""
    remaining = {n: config["tasks"][n]["weight"] for n in names}
    cycle = []
    while any(remaining.values()):
        for n in names:
            if remaining[n]:
                cycle.append(n)
                remaining[n] -= 1
    return cycle


class MetricsLog:
    """JSON-lines log (main process) + Accelerate trackers."""

    def __init__(self, accelerator, path: Path):
        self.accelerator, self.path = accelerator, path

    def write(self, record: dict, scalars: dict | None = None, step: int | None = None) -> None:
        if self.accelerator.is_main_process:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if scalars:
            self.accelerator.log(scalars, step=step)


# ----------------------------------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    def __init__(self, config: ExperimentConfig, *, quiet: bool = False):
        self.config, self.quiet = config, quiet

    def say(self, text: str) -> None:
        if not self.quiet and self.accelerator.is_main_process:
            print(text, flush=True)

    # ---- setup ---------------------------------------------------------------------------------------------------------
    def setup(self, resume: str | None, overwrite: bool, allow_config_change: tuple[str, ...] = ()) -> None:
        import torch
        from accelerate.utils import set_seed

        from .setup import build_model, build_tasks, build_vocabulary_and_table, prepare_synthetic

        config = self.config
        check_model_section(config)
        out = config.output_dir
        self.checkpoint = resolve_checkpoint(resume, out)
        self.saved = read_trainer_state(self.checkpoint) if self.checkpoint is not None else None
        # before anything is written: a refused change leaves the run folder as it was
        self.config_changes = check_config_change(self.saved.get("config"), config, allow_config_change,
                                                  self.checkpoint) if self.saved is not None else {}
        self.stages = stages(config)
        self.extend = self._extends_finished_run(self.saved) if self.saved is not None else False
        claim_output_dir(self.config.output_dir, RUN_OUTPUTS, resuming=self.checkpoint is not None, overwrite=overwrite)
        self.accelerator = accelerator = make_accelerator(config)
        expected = config["training"]["expect_processes"]
        if expected is not None and accelerator.num_processes != expected:
            raise ConfigError(f"{config.source}: key 'training.expect_processes': {expected} processes expected, "
                              f"{accelerator.num_processes} running ({accelerator.distributed_type}); on CPUs launch "
                              f"with `accelerate launch --multi_gpu --num_processes N` (--cpu runs one process)")
        save_run_config(accelerator, out, config, checkpoint=self.checkpoint, saved=self.saved,
                        changes=self.config_changes, quiet=self.quiet)
        set_seed(config["seed"])
        prepare_synthetic(config, accelerator)
        self.vocab, table, source = build_vocabulary_and_table(config, accelerator)
        self.states = build_tasks(config, self.vocab)
        self.by_name = {s.name: s for s in self.states}
        set_seed(config["seed"])  # the model's initial weights depend on the seed only
        model = build_model(config, self.states, self.vocab, table, source)
        if not self.stages[0][1]:
            raise ConfigError(f"{config.source}: key 'tasks': no task has a 'train' dataset")
        optim = config["optim"]
        groups = parameter_groups(model, optim["weight_decay"], optim["decoder_lr_scale"])
        for group in groups:
            group["lr"] = optim["lr"] * group["lr_scale"]
        optimizer = torch.optim.AdamW(groups, lr=optim["lr"], betas=tuple(optim["betas"]), eps=optim["eps"])
        self.schedule = WarmupCosine(config["training"]["steps"], optim["warmup_ratio"], optim["min_lr_ratio"])
        # stepped by us once per optimizer step (a prepared scheduler would step once per process)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        # not register_for_checkpointing: Accelerate would pickle both and unpickle them unsafely on resume
        self.state = TrainerState()
        self.train_loaders, self.eval_loaders = self._loaders()
        self.iterators: dict = {}
        self.log = MetricsLog(accelerator, out / "metrics.jsonl")
        if config["logging"]["tensorboard"]:
            accelerator.init_trackers("tensorboard", config=_hparams(config))
        n_params = sum(p.numel() for p in model.parameters())
        self.say(f"model: {n_params:,} parameters; vocabulary {len(self.vocab)} tokens; processes "
                 f"{accelerator.num_processes} ({accelerator.distributed_type}); device {accelerator.device}")

    def _loaders(self):
        import torch
        from torch.utils.data import DataLoader

        from .evaluation import make_eval_loader
        from .task_data import Collate, EpochSampler, TaskDataset

        config, accelerator = self.config, self.accelerator
        seed, workers = config["seed"], config["training"]["num_workers"]
        train, evaluation = {}, {}
        self.train_datasets, self.train_samplers = {}, {}
        for state in self.states:
            if state.train_examples is not None:
                codec = state.train_examples.codec
                dataset = TaskDataset(state.train_examples, seed, state.index)
                sampler = EpochSampler(len(dataset), seed, state.index, shuffle=True)
                loader = DataLoader(dataset, batch_size=state.settings["batch_size"], sampler=sampler,
                                    collate_fn=Collate(codec.length), num_workers=workers,
                                    generator=torch.Generator().manual_seed(seed))
                train[state.name] = accelerator.prepare(loader)
                self.train_datasets[state.name], self.train_samplers[state.name] = dataset, sampler
            if state.eval_examples is not None:
                size = state.settings["eval_batch_size"] or config["evaluation"]["batch_size"]
                evaluation[state.name] = accelerator.prepare(make_eval_loader(state, size, workers, seed))
        return train, evaluation

    # ---- data ----------------------------------------------------------------------------------------------------------
    def next_batch(self, name: str) -> dict:
        """The next training batch of a task; a finished epoch starts the next one (new order, new examples)."""
        from accelerate import skip_first_batches

        position = self.state.loaders.setdefault(name, [0, 0])
        while True:
            if name not in self.iterators:
                epoch, consumed = position
                loader = self.train_loaders[name]
                if consumed >= len(loader):
                    # the checkpoint was written at the end of an epoch: go on with the next one (accelerate < 1.3
                    # yields one None batch from a loader whose every batch is skipped)
                    position[0], position[1] = epoch + 1, 0
                    continue
                source = skip_first_batches(loader, consumed) if consumed else loader
                # our own sampler and dataset get the epoch directly: whether the loader that skip_first_batches
                # returns passes set_epoch on to them depends on the accelerate version and the process count
                source.set_epoch(epoch)
                self.train_samplers[name].set_epoch(epoch)
                self.train_datasets[name].set_epoch(epoch)
                self.iterators[name] = iter(source)
            try:
                batch = next(self.iterators[name])
            except StopIteration:
                del self.iterators[name]
                position[0], position[1] = position[0] + 1, 0
                continue
            position[1] += 1
            return batch

    # ---- one optimizer step --------------------------------------------------------------------------------------------
    def train_step(self, name: str, total_steps: int) -> tuple[float, float | None]:
        """One optimizer step on ``optim.grad_accum`` batches of task ``name``; returns (loss, gradient norm)."""
        accelerator, model = self.accelerator, self.model
        state = self.by_name[name]
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.set_routing_temperature(self.state.step, total_steps)
        accum = self.config["optim"]["grad_accum"]
        layout = state.layout(train=True)
        total = 0.0
        for micro in range(accum):
            batch = self.next_batch(name)
            sync = micro == accum - 1
            # DDP: gradients are all-reduced only on the last micro-batch
            with accelerator.no_sync(model) if not sync else nullcontext():
                out = model(pose=batch["pose"], layout=layout, task=name, labels=batch["labels"],
                            label_set=state.label_set, coordinates=batch.get("coords"))
                loss = out.loss  # cross-entropy + the kind's auxiliary term (config.auxiliary_weights)
                accelerator.backward(state.settings["loss_weight"] * loss / accum)
            total += float(loss.detach()) / accum
        grad_norm = None
        clip = self.config["optim"]["grad_clip"]
        if clip:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, grad_norm

    # ---- stages --------------------------------------------------------------------------------------------------------
    def enter_stage(self, index: int, fresh: bool) -> None:
        """Set the model and the schedule up for stage ``index``. ``fresh``: the stage starts now (not restored from
        a checkpoint): fine-tuning reloads the joint model and resets the optimizer moments and the schedule."""
        name, tasks, steps = self.stages[index]
        unwrapped = self.accelerator.unwrap_model(self.model)
        router = unwrapped.encoder.dste.router
        if router is not None:
            router.frozen = name != "joint"
        if name != "joint":
            # the stage's schedule and learning rates come from the config, also on resume (a checkpoint holds the
            # scheduler's position only)
            lr = self.config["finetune"]["lr"] or self.config["optim"]["lr"] / 10
            self.schedule.total = steps
            self.schedule.warmup = int(round(self.config["optim"]["warmup_ratio"] * steps))
            self.scheduler.base_lrs = [lr * group.get("lr_scale", 1.0) for group in self.optimizer.param_groups]
        if name == "joint" or not fresh:
            return
        from safetensors.torch import load_file

        joint = load_file(str(self.config.output_dir / "model" / "model.safetensors"))
        missing, unexpected = unwrapped.load_state_dict(joint, strict=False)
        if unexpected or [k for k in missing if "text_table" not in k]:
            raise ConfigError(f"{self.config.output_dir / 'model'}: does not fit the model being fine-tuned")
        self.optimizer.optimizer.state.clear()
        self.scheduler.last_epoch = -1
        self.scheduler.step()

    def run(self) -> dict:
        from tqdm.auto import tqdm

        accelerator, state = self.accelerator, self.state
        if self.checkpoint is not None:
            saved, extend = self.saved, self.extend
            if self._ended(saved) and not extend:
                self.say(f"{self.checkpoint} is the end of a finished run: nothing to resume")
                return self.finished_metrics()
            self.enter_stage(0 if extend else saved["stage"], fresh=False)
            accelerator.load_state(str(self.checkpoint))
            try:
                state.load_state_dict(saved)
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise ConfigError(f"{self.checkpoint / 'trainer_state.json'}: malformed trainer state "
                                  f"({e!r})") from None
            restore_scheduler(self.scheduler, saved, self.checkpoint)
            if extend:  # back into the joint stage, which now has more steps
                state.stage, state.step, state.finished = 0, state.total_step, False
            self.say(f"resumed from {self.checkpoint} (stage {self.stages[state.stage][0]}, step {state.step})")
        else:
            self.enter_stage(0, fresh=True)
        final = {}
        while state.stage < len(self.stages) and not state.finished:
            name, tasks, steps = self.stages[state.stage]
            cycle = task_cycle(self.config, tasks)
            bar = tqdm(total=steps, initial=state.step, desc=name, disable=self.quiet or not accelerator.is_main_process,
                       dynamic_ncols=True)
            self.model.train()
            sums, counts, started = {}, {}, time.perf_counter()
            training = self.config["training"]
            while state.step < steps:
                task = cycle[state.cycle_pos % len(cycle)]
                loss, grad_norm = self.train_step(task, steps)
                state.step += 1
                state.total_step += 1
                state.cycle_pos = (state.cycle_pos + 1) % len(cycle)
                sums[task] = sums.get(task, 0.0) + loss
                counts[task] = counts.get(task, 0) + 1
                bar.update(1)
                bar.set_postfix(task=task[:12], loss=f"{loss:.3f}")
                if state.step % training["log_every"] == 0 or state.step == steps:
                    self._log_train(name, sums, counts, grad_norm, time.perf_counter() - started)
                    sums, counts, started = {}, {}, time.perf_counter()
                last = state.step == steps
                if training["eval_every"] and state.step % training["eval_every"] == 0 and not last:
                    self.evaluate_and_log(name, tasks)
                    self.model.train()
                if training["checkpoint_every"] and state.step % training["checkpoint_every"] == 0 and not last:
                    self.save()
            bar.close()
            final.update(self.finish_stage(name, tasks))
        return final

    def _ended(self, saved: dict) -> bool:
        return saved["stage"] >= len(self.stages) or bool(saved.get("finished"))

    def _extends_finished_run(self, saved: dict) -> bool:
        """Whether resuming ``saved`` extends a finished run: under an allowed ``training.steps`` change, a run with
        only the joint stage (before and after) trains on to the larger step count. Any other allowed change to a
        finished run is an error: nothing would train under it, yet config.yaml would record it."""
        if not self.config_changes or not self._ended(saved):
            return False
        steps, done = self.config["training"]["steps"], int(saved["total_step"])
        if "training.steps" not in self.config_changes or len(self.stages) > 1 or saved["config"]["finetune"][
                "steps"] or steps <= done:
            raise ConfigError(f"{self.checkpoint}: the end of a finished run of {done} steps, which no config change "
                              f"applies to; only a run without fine-tuning can be extended, to more training.steps "
                              f"(now {steps}); start again with --overwrite")
        return True

    def finished_metrics(self) -> dict:
        """The final metrics of a finished run, from its log: the last evaluation of each stage, named as
        :meth:`finish_stage` names them (so resuming a finished run reports, and keeps, what the run produced)."""
        last = {}
        path = self.config.output_dir / "metrics.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            record = json.loads(line)
            if record.get("kind") == "eval":
                last[record["stage"]] = record["metrics"]
        final = {}
        for name, _, _ in self.stages:
            for task, metrics in last.get(name, {}).items():
                final[task if name == "joint" else f"{task} ({name})"] = metrics
        return final

    def finish_stage(self, name: str, tasks: list[str]) -> dict:
        """End of a stage: evaluate, export, checkpoint, move on to the next stage."""
        state, out = self.state, self.config.output_dir
        results = self.evaluate_and_log(name, tasks)
        unwrapped = self.accelerator.unwrap_model(self.model)
        target = out / "model" if name == "joint" else out / "finetuned" / name.split(":", 1)[1]
        self.export(unwrapped, target)
        state.stage += 1
        state.step = 0
        state.cycle_pos = 0
        state.finished = state.stage >= len(self.stages)
        if not state.finished:
            self.enter_stage(state.stage, fresh=True)
        self.save()
        return {f"{t}" if name == "joint" else f"{t} ({name})": m for t, m in results.items()}

    def save(self) -> None:
        keep = self.config["training"]["keep_checkpoints"]
        routes = self.accelerator.unwrap_model(self.model).routes()
        save_checkpoint(self.accelerator, self.config.output_dir / "checkpoints", self.state.total_step,
                        trainer_record(self.state.state_dict(), self.scheduler, self.config), keep,
                        {"routing.json": json.dumps(routes, indent=1)})

    def export(self, model, target: Path) -> None:
        """save_pretrained (+ vocab.json) into ``target``, atomically (main process)."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            staging = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(staging, ignore_errors=True)
            preprocessing = {state.name: task_preprocessing(state) for state in self.states}
            # id2label: the classes of the first recognition-type task (Hugging Face's field holds one label set)
            named = [p for p in preprocessing.values() if p["label_names"]]
            if named:
                model.config.id2label = dict(enumerate(named[0]["label_names"]))
                model.config.label2id = {name: i for i, name in model.config.id2label.items()}
            model.save_pretrained(staging)
            write_preprocessing(staging, preprocessing)
            replace_directory(staging, target)
        accelerator.wait_for_everyone()

    # ---- logging and evaluation ----------------------------------------------------------------------------------------
    def _log_train(self, stage: str, sums: dict, counts: dict, grad_norm, seconds: float) -> None:
        import torch

        accelerator = self.accelerator
        names = sorted(sums)
        local = torch.tensor([sums[n] / counts[n] for n in names], dtype=torch.float64, device=accelerator.device)
        mean = accelerator.reduce(local, reduction="mean") if accelerator.num_processes > 1 else local
        losses = {n: float(v) for n, v in zip(names, mean.cpu())}
        lr = self.scheduler.get_last_lr()[0]
        tau = self.accelerator.unwrap_model(self.model).set_routing_temperature(self.state.step, self.stages[
            self.state.stage][2])
        record = {"kind": "train", "stage": stage, "step": self.state.total_step, "loss": losses, "lr": lr,
                  "processes": accelerator.num_processes,
                  "grad_norm": grad_norm, "gumbel_temperature": tau,
                  "seconds_per_step": seconds / max(1, sum(counts.values()))}
        scalars = {f"loss/{n}": v for n, v in losses.items()}
        scalars.update({"lr": lr, "gumbel_temperature": tau})
        if grad_norm is not None:
            scalars["grad_norm"] = grad_norm
        self.log.write(record, scalars, self.state.total_step)

    def evaluate_and_log(self, stage: str, tasks: list[str]) -> dict:
        from .evaluation import evaluate_tasks, format_table

        accelerator, out = self.accelerator, self.config.output_dir
        loaders = {n: l for n, l in self.eval_loaders.items() if n in tasks}
        if not loaders:
            return {}
        results, extras = evaluate_tasks(accelerator, self.model, self.states, loaders, self.config)
        step = self.state.total_step
        self.log.write({"kind": "eval", "stage": stage, "step": step, "metrics": results},
                       {f"eval/{t}/{m}": v for t, ms in results.items() for m, v in ms.items()}, step)
        unwrapped = accelerator.unwrap_model(self.model)
        routes = unwrapped.routes()
        if accelerator.is_main_process:
            atomic_write_text(out / "routing.json", json.dumps({"step": step, "stage": stage, "routes": routes},
                                                               indent=1))
            if self.config["logging"]["plots"]:
                self._plots(results, extras, routes, step)
        self.say(format_table(results, f"evaluation at step {step} ({stage})"))
        if stage == "joint":
            self._track_best(results, unwrapped, step)
        return results

    def _plots(self, results, extras, routes, step) -> None:
        from ..visualize.training import plot_confusion_matrix, plot_routing_map

        plots = self.config.output_dir / "plots"
        for state in self.states:
            if "confusion" in extras.get(state.name, {}):
                plot_confusion_matrix(extras[state.name]["confusion"], state.eval_split.class_names,
                                      plots / f"confusion_{state.name}.png", f"{state.name}, step {step}")
        plot_routing_map(routes, plots / "routing" / f"step-{step:06d}.png", f"routing map at step {step}")
        shutil.copyfile(plots / "routing" / f"step-{step:06d}.png", plots / "routing_map.png")

    def _track_best(self, results: dict, unwrapped, step: int) -> None:
        from .evaluation import headline, higher_is_better

        key = self.config["training"]["best_metric"]
        if key is None:
            first = next((s for s in self.states if s.name in results), None)
            if first is None:
                return
            key = f"{first.name}/{headline(first)[0]}"
        task, metric = key.split("/", 1)
        if task not in results:
            return
        if metric not in results[task]:
            raise ConfigError(f"{self.config.source}: key 'training.best_metric': task {task!r} reports no "
                              f"{metric!r} (it reports {', '.join(results[task])})")
        value = results[task][metric]
        best = self.state.best
        better = best is None or (value > best["value"] if higher_is_better(metric) else value < best["value"])
        if better:
            self.state.best = {"metric": key, "value": value, "step": step}
            self.export(unwrapped, self.config.output_dir / "best")
            if self.accelerator.is_main_process:
                atomic_write_text(self.config.output_dir / "best" / "best.json", json.dumps(self.state.best))

    def close(self, final: dict) -> None:
        from ..visualize.training import plot_training_curves, read_metrics_log

        accelerator, out = self.accelerator, self.config.output_dir
        if accelerator.is_main_process:
            atomic_write_text(out / "final_metrics.json", json.dumps(final, indent=1))
            if self.config["logging"]["plots"]:
                plot_training_curves(read_metrics_log(out / "metrics.jsonl"), out / "plots" / "training_curve.png",
                                     f"{self.config.name}")
        accelerator.end_training()


def _hparams(config: ExperimentConfig) -> dict:
    """Flat scalar settings for the tensorboard tracker."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}/", v)
        elif isinstance(value, (int, float, str, bool)):
            out[prefix.rstrip("/")] = value

    for section in ("optim", "training"):
        walk(f"{section}/", config[section])
    out["seed"] = config["seed"]
    return out


def train(config: ExperimentConfig, *, resume: str | None = None, overwrite: bool = False, quiet: bool = False,
          allow_config_change: tuple[str, ...] = ()) -> dict:
    """Run (or resume) a training run; returns the final metrics {task: {metric: value}}. ``allow_config_change``:
    keys (or sections) whose change from the checkpoint's config a resume accepts (:mod:`.config_change`)."""
    from .evaluation import format_table

    trainer = Trainer(config, quiet=quiet)
    trainer.setup(resume, overwrite, allow_config_change)
    started = time.perf_counter()
    final = trainer.run()
    trainer.close(final)
    if trainer.accelerator.is_main_process:
        print(format_table(final, f"final metrics ({config.name}, {time.perf_counter() - started:.0f} s of training "
                                  f"and evaluation)"), flush=True)
    return final
