"""The pretraining stage (``train.py --stage pretrain``, docs/design.md D10): USDRL on unlabelled skeletons through the
supervised loop's machinery (:mod:`ups_toolkit.training`).

Shared with supervised training: the Accelerator (CPU, one GPU, DDP; :func:`~ups_toolkit.training.loop.
make_accelerator`), atomic ``save_state`` checkpoints with a ``latest`` pointer and exact resume
(:mod:`~ups_toolkit.training.checkpoint`), the JSON-lines log + tensorboard (:class:`~ups_toolkit.training.loop.
MetricsLog`), the training-curve PNG, the synthetic demo data. Specific to pretraining:

- data: a prepared split (labels ignored) → deterministic ``data.transforms`` → four views per sample
  (:class:`~ups_toolkit.pretraining.views.PretrainingViewDataset`, views drawn from (seed, epoch, index, view), so a
  resumed run redraws the same ones); epochs of a seeded permutation, the last incomplete batch dropped (B ≥ 2 on
  every process; the all-gather needs equal B);
- model: :class:`~ups_toolkit.pretraining.model.USDRLPretrainingModel` (DSTE + projectors + MG-FD, all-gather of the
  projections under DDP); the loss is fp32 whatever ``mixed_precision`` says;
- optimizer: Adam with L2 weight decay (the reference's, not AdamW), lr × gamma at each epoch of
  ``optim.lr_milestones`` (stepped per optimizer step from the epoch it falls in; no warmup);
- outputs in ``output_dir``: ``config.yaml``, ``checkpoints/``, ``metrics.jsonl``, ``tensorboard/``,
  ``plots/training_curve.png``, ``final_metrics.json`` and the export ``encoder.safetensors``
  (:func:`~ups_toolkit.pretraining.model.save_encoder`), which ``model.encoder_init`` of a UPS config and the
  evaluation commands (``python -m ups_toolkit.pretraining.evaluate``) read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import ConfigError
from ..training.checkpoint import (claim_output_dir, read_trainer_state, resolve_checkpoint, restore_scheduler,
                                   save_checkpoint, trainer_record)
from ..training.config_change import check_config_change, save_run_config
from ..training.config import ExperimentConfig

ENCODER_FILE = "encoder.safetensors"
RUN_OUTPUTS = ("checkpoints", ENCODER_FILE, "plots", "tensorboard", "metrics.jsonl", "final_metrics.json",
               "config.yaml", "config_changes.jsonl")


class StepDecay:
    """lr multiplier at optimizer step s: gamma ** (number of milestones ≤ epoch), epoch = s // steps_per_epoch.
    Rebuilt from the config on resume (a checkpoint holds the scheduler's position only)."""

    def __init__(self, steps_per_epoch: int, milestones, gamma: float):
        self.steps_per_epoch, self.milestones, self.gamma = int(steps_per_epoch), list(milestones), float(gamma)

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.gamma ** sum(1 for m in self.milestones if epoch >= m)


class PretrainState:
    """Counters restored on resume: optimizer steps done, the loader's (epoch, batches consumed), finished."""

    def __init__(self):
        self.step = 0
        self.epoch = 0
        self.consumed = 0
        self.finished = False

    def state_dict(self) -> dict:
        return {"stage": "pretrain", "step": self.step, "total_step": self.step, "epoch": self.epoch,
                "consumed": self.consumed, "finished": self.finished}

    def load_state_dict(self, data: dict) -> None:
        self.step, self.epoch, self.consumed = int(data["step"]), int(data["epoch"]), int(data["consumed"])
        self.finished = bool(data.get("finished", False))


def data_shape(samples) -> tuple[str, int, int]:
    """(layout, persons M, joints V) of a prepared split (from its features, else its first sample)."""
    feature = samples.features.get("keypoint") if hasattr(samples, "features") else None
    shape = getattr(feature, "shape", None)
    first = samples[0]
    if shape is None or shape[1] is None:
        shape = (None,) + tuple(first["keypoint"].shape[1:])
    return str(first["layout"]), int(shape[1]), int(shape[2])


class PretrainTrainer:
    def __init__(self, config: ExperimentConfig, *, quiet: bool = False):
        self.config, self.quiet = config, quiet

    def say(self, text: str) -> None:
        if not self.quiet and self.accelerator.is_main_process:
            print(text, flush=True)

    # ---- setup ---------------------------------------------------------------------------------------------------
    def setup(self, resume: str | None, overwrite: bool, allow_config_change: tuple[str, ...] = ()) -> None:
        import torch
        from accelerate.utils import set_seed
        from torch.utils.data import DataLoader

        from ..data.prepared import load_prepared
        from ..models.dste import DSTE
        from ..training.loop import MetricsLog, make_accelerator
        from ..training.setup import prepare_synthetic
        from ..training.task_data import EpochSampler
        from .config import check_encoder_section
        from .losses import MGFDLoss
        from .model import USDRLPretrainingModel
        from .views import PretrainingViewDataset, ViewGenerator, usdrl_view_transforms

        config, out = self.config, self.config.output_dir
        training = config["training"]
        self.checkpoint = resolve_checkpoint(resume, out)
        self.saved = read_trainer_state(self.checkpoint) if self.checkpoint is not None else None
        # before anything is written: a refused change leaves the run folder as it was
        self.config_changes = check_config_change(self.saved.get("config"), config, allow_config_change,
                                                  self.checkpoint) if self.saved is not None else {}
        claim_output_dir(self.config.output_dir, RUN_OUTPUTS, resuming=self.checkpoint is not None, overwrite=overwrite)
        self.accelerator = accelerator = make_accelerator(config)
        expected = training["expect_processes"]
        if expected is not None and accelerator.num_processes != expected:
            raise ConfigError(f"{config.source}: key 'training.expect_processes': {expected} processes expected, "
                              f"{accelerator.num_processes} running ({accelerator.distributed_type}); on CPUs launch "
                              f"with `accelerate launch --multi_gpu --num_processes N` (--cpu runs one process)")
        prepare_synthetic(config, accelerator)

        data = config["data"]
        samples = load_prepared(data["path"], data["split"])
        if len(samples) == 0:
            raise ConfigError(f"{config.source}: key 'data.split': {data['path']} split {data['split']!r} is empty")
        self.layout, persons, joints = data_shape(samples)
        encoder_config = check_encoder_section(config, self.layout, persons, joints)
        batch = training["batch_size"]
        if len(samples) < batch * accelerator.num_processes:
            raise ConfigError(f"{config.source}: key 'training.batch_size': {data['path']} split {data['split']!r} "
                              f"holds {len(samples)} samples, fewer than one batch of {batch} per process × "
                              f"{accelerator.num_processes} processes (incomplete batches are dropped)")

        set_seed(config["seed"])  # the initial weights depend on the seed only
        encoder = DSTE(encoder_config)
        lw = config["loss"]
        model = USDRLPretrainingModel(
            encoder, modalities=config["views"]["modalities"], projector_hidden=config["model"]["projector_hidden"],
            projector_out=config["model"]["projector_out"], instance_out=config["model"]["instance_out"],
            loss=MGFDLoss(sim_weight=lw["sim_weight"], vac_weight=lw["vac_weight"], xc_weight=lw["xc_weight"],
                          granularity_weights=lw["granularity_weights"]),
        )
        optim = config["optim"]
        optimizer = torch.optim.Adam(model.parameters(), lr=optim["lr"], betas=tuple(optim["betas"]),
                                     eps=optim["eps"], weight_decay=optim["weight_decay"])

        view_transforms = config["views"]["transforms"]
        if view_transforms is None:
            view_transforms = usdrl_view_transforms(encoder_config.num_frames)
        generator = ViewGenerator(transforms=list(data["transforms"]) + list(view_transforms),
                                  modalities=config["views"]["modalities"], num_frames=encoder_config.num_frames,
                                  seed=config["seed"], bone_variant=config["views"]["bone_variant"])
        self.dataset = PretrainingViewDataset(samples, generator)
        self.sampler = EpochSampler(len(self.dataset), config["seed"], 0, shuffle=True)
        loader = DataLoader(self.dataset, batch_size=batch, drop_last=True, sampler=self.sampler,
                            collate_fn=PretrainingViewDataset.collate, num_workers=training["num_workers"],
                            generator=torch.Generator().manual_seed(config["seed"]))
        self.model, self.optimizer, self.loader = accelerator.prepare(model, optimizer, loader)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"{config.source}: key 'training.batch_size': no complete batch per process")
        self.total_steps = training["epochs"] * self.steps_per_epoch
        if training["max_steps"] is not None:
            self.total_steps = min(self.total_steps, training["max_steps"])
        # stepped by us once per optimizer step (a prepared scheduler would step once per process)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, StepDecay(self.steps_per_epoch, optim["lr_milestones"], optim["gamma"]))
        # not register_for_checkpointing: Accelerate would pickle both and unpickle them unsafely on resume
        self.state = PretrainState()
        self.iterator = None
        self.extend = self._extends_finished_run()
        # the config is written once every check has passed (the step count needs the loader's length)
        save_run_config(accelerator, out, config, checkpoint=self.checkpoint, saved=self.saved,
                        changes=self.config_changes, quiet=self.quiet)
        self.log = MetricsLog(accelerator, out / "metrics.jsonl")
        if config["logging"]["tensorboard"]:
            accelerator.init_trackers("tensorboard", config={"lr": optim["lr"], "batch_size": batch,
                                                             "seed": config["seed"]})
        self.say(f"USDRL pretraining: encoder {encoder.num_parameters():,} parameters, whole model "
                 f"{model.num_parameters():,}; {len(samples)} samples of layout {self.layout}; "
                 f"{self.steps_per_epoch} steps per epoch, {self.total_steps} steps; processes "
                 f"{accelerator.num_processes} ({accelerator.distributed_type}); device {accelerator.device}")

    def _extends_finished_run(self) -> bool:
        """Whether the resume extends a finished run: only under an allowed change that gives it more steps
        (``training.epochs`` / ``max_steps``); any other change to a finished run is an error (nothing would train
        under it, yet config.yaml would record it)."""
        saved = self.saved
        if saved is None or not saved.get("finished") or not self.config_changes:
            return False
        if self.total_steps <= saved["step"]:
            raise ConfigError(f"{self.checkpoint}: the end of a finished run of {saved['step']} steps, which no config "
                              f"change applies to; only more steps extend it (now {self.total_steps}); start again "
                              f"with --overwrite")
        return True

    # ---- loop ----------------------------------------------------------------------------------------------------
    def next_batch(self) -> dict:
        """The next batch; a finished epoch starts the next one (new order, new views)."""
        from accelerate import skip_first_batches

        state = self.state
        while True:
            if self.iterator is None:
                if state.consumed >= len(self.loader):  # saved at the end of an epoch (see Trainer.next_batch)
                    state.epoch, state.consumed = state.epoch + 1, 0
                    continue
                source = skip_first_batches(self.loader, state.consumed) if state.consumed else self.loader
                # the sampler and the dataset get the epoch directly (see training.loop.Trainer.next_batch)
                source.set_epoch(state.epoch)
                self.sampler.set_epoch(state.epoch)
                self.dataset.set_epoch(state.epoch)
                self.iterator = iter(source)
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.iterator = None
                state.epoch, state.consumed = state.epoch + 1, 0
                continue
            state.consumed += 1
            return batch

    def train_step(self) -> tuple[float, dict, float | None]:
        accelerator = self.accelerator
        batch = self.next_batch()
        with accelerator.autocast():
            out = self.model(batch["views"], layout=self.layout)
        accelerator.backward(out.loss)
        grad_norm = None
        clip = self.config["optim"]["grad_clip"]
        if clip:
            grad_norm = float(accelerator.clip_grad_norm_(self.model.parameters(), clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(out.loss.detach()), out.log_dict(), grad_norm

    def run(self) -> dict:
        from tqdm.auto import tqdm

        accelerator, state, training = self.accelerator, self.state, self.config["training"]
        if self.checkpoint is not None:
            saved = self.saved
            if saved.get("finished") and not self.extend:
                self.say(f"{self.checkpoint} is the end of a finished run: nothing to resume")
                return {}
            accelerator.load_state(str(self.checkpoint))
            try:
                state.load_state_dict(saved)
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"{self.checkpoint / 'trainer_state.json'}: malformed trainer state "
                                  f"({e!r})") from None
            restore_scheduler(self.scheduler, saved, self.checkpoint)
            state.finished = False
            self.say(f"resumed from {self.checkpoint} (step {state.step}, epoch {state.epoch})")
        bar = tqdm(total=self.total_steps, initial=state.step, desc="pretrain", dynamic_ncols=True,
                   disable=self.quiet or not accelerator.is_main_process)
        self.model.train()
        losses, parts, started, last = [], {}, time.perf_counter(), {}
        while state.step < self.total_steps:
            loss, logged, grad_norm = self.train_step()
            state.step += 1
            losses.append(loss)
            for k, v in logged.items():
                parts[k] = parts.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(epoch=state.epoch, loss=f"{loss:.3f}")
            if state.step % training["log_every"] == 0 or state.step == self.total_steps:
                # the loss is computed on the all-gathered projections: the same value on every process
                last = {"mgfd": sum(losses) / len(losses)}
                record = {"kind": "train", "stage": "pretrain", "step": state.step, "epoch": state.epoch,
                          "loss": last, "parts": {k: v / len(losses) for k, v in parts.items()},
                          "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                          "processes": accelerator.num_processes,
                          "seconds_per_step": (time.perf_counter() - started) / len(losses)}
                self.log.write(record, {"loss/mgfd": last["mgfd"], "lr": record["lr"]}, state.step)
                losses, parts, started = [], {}, time.perf_counter()
            if training["checkpoint_every"] and state.step % training["checkpoint_every"] == 0 \
                    and state.step != self.total_steps:
                self.save()
        bar.close()
        self.export()
        state.finished = True
        self.save()
        return {"pretrain": {"loss": last.get("mgfd", float("nan")), "steps": state.step, "epochs_started":
                             state.epoch + (1 if state.consumed else 0)}}

    def save(self) -> None:
        save_checkpoint(self.accelerator, self.config.output_dir / "checkpoints", self.state.step,
                        trainer_record(self.state.state_dict(), self.scheduler, self.config),
                        self.config["training"]["keep_checkpoints"])

    def export(self) -> Path:
        """The encoder alone as ``encoder.safetensors`` (main process, atomic)."""
        from .model import save_encoder

        path = self.config.output_dir / ENCODER_FILE
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            unwrapped = self.accelerator.unwrap_model(self.model)
            save_encoder(unwrapped, path)
        self.accelerator.wait_for_everyone()
        return path

    def close(self, final: dict) -> None:
        from ..visualize.training import plot_training_curves, read_metrics_log

        out = self.config.output_dir
        if self.accelerator.is_main_process:
            if final:
                atomic_write_text(out / "final_metrics.json", json.dumps(final, indent=1))
            if self.config["logging"]["plots"]:
                plot_training_curves(read_metrics_log(out / "metrics.jsonl"), out / "plots" / "training_curve.png",
                                     f"{self.config.name} (MG-FD loss)")
        self.accelerator.end_training()


def pretrain(config: ExperimentConfig, *, resume: str | None = None, overwrite: bool = False,
             quiet: bool = False, allow_config_change: tuple[str, ...] = ()) -> dict:
    """Run (or resume) a pretraining run; returns ``{"pretrain": {"loss", "steps", ...}}`` (empty when the
    checkpoint resumed from already ended the run). The encoder is at ``output_dir/encoder.safetensors``."""
    trainer = PretrainTrainer(config, quiet=quiet)
    trainer.setup(resume, overwrite, allow_config_change)
    started = time.perf_counter()
    final = trainer.run()
    trainer.close(final)
    if trainer.accelerator.is_main_process and final:
        print(f"pretraining done: {final['pretrain']['steps']} steps, last MG-FD loss {final['pretrain']['loss']:.4f}"
              f", {time.perf_counter() - started:.0f} s; encoder: {config.output_dir / ENCODER_FILE}", flush=True)
    return final


__all__ = ["ENCODER_FILE", "PretrainTrainer", "StepDecay", "pretrain"]
