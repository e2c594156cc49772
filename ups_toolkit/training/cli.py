"""Command lines of training and evaluation.

The console scripts ``ups-train`` and ``ups-evaluate`` (any folder, after ``pip install``), ``python -m
ups_toolkit.train`` / ``python -m ups_toolkit.evaluate`` and the checkout's ``train.py`` all run :func:`train_main` /
:func:`evaluate_main`.

    ups-train --config demo [--key value ...] [--resume_from_checkpoint auto|PATH] [--overwrite]   # = python train.py
    ups-train --config demo --resume_from_checkpoint auto --training.steps 2000 --allow_config_change training.steps
    accelerate launch --multi_gpu --num_processes 2 -m ups_toolkit.train --config X.yaml   # several processes
    python train.py --config configs/X.yaml --eval-only [--model DIR]                     # score a saved model
    python train.py --config configs/pretrain_demo.yaml [--stage pretrain]                # USDRL pretraining
    python -m ups_toolkit.evaluate --model DIR --config configs/X.yaml [--out metrics.json]

Any ``--section.key value`` pair overrides the config (``--optim.lr 3e-4``, ``--training.steps 20``,
``--tasks.action_recognition_3d.batch_size 8``). A bad config or bad data stops before anything heavy runs, with
one line naming the key, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, UPSError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML (a path, or a name in configs/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no printed config")


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     description="Train one UPS model on several tasks (Accelerate: CPU, one GPU, "
                                                 "several GPUs or nodes), or score a saved one with --eval-only.",
                                     epilog="Other --section.key value pairs override the config.")
    _common(parser)
    parser.add_argument("--resume_from_checkpoint", metavar="auto|PATH",
                        help="auto: the run's latest checkpoint (the newest complete one, with a warning, when "
                             "latest is missing or damaged; start fresh when there is none); or a checkpoint or "
                             "run folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in an output_dir that holds a run (finished or not), replacing its outputs")
    parser.add_argument("--allow_config_change", metavar="KEY[,KEY...]",
                        help="resume although these keys (or sections, e.g. optim) differ from the checkpoint's "
                             "config: a deliberate continuation (more training.steps, a fine-tuning optim.lr), "
                             "recorded in output_dir/config_changes.jsonl; without it a resume that changes the run "
                             "is refused")
    parser.add_argument("--eval-only", action="store_true", help="score a saved model instead of training")
    parser.add_argument("--model", help="with --eval-only: the saved model (default: <output_dir>/model)")
    parser.add_argument("--stage", choices=("supervised", "pretrain"),
                        help="pretrain: USDRL self-supervised pretraining of the encoder (default: the config's "
                             "`stage` key, else supervised)")
    return parser


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     description="Score a saved UPS model on the evaluation data of a config.",
                                     epilog="Other --section.key value pairs override the config.")
    _common(parser)
    parser.add_argument("--model", required=True, help="a folder written by save_pretrained (train.py's model/)")
    parser.add_argument("--out", help="write the metrics as JSON here")
    return parser


def _run(fn) -> int:
    try:
        fn()
    except UPSError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def train_main(argv=None) -> int:
    args, rest = train_parser().parse_known_args(argv)

    def go():
        from ..pretraining.config import is_pretrain_config, load_pretrain_config
        from .config import load_config, parse_overrides
        from .config_change import parse_allowed

        overrides = parse_overrides(rest) + ([("stage", args.stage)] if args.stage else [])
        allow = parse_allowed(args.allow_config_change)
        if allow and not args.resume_from_checkpoint:
            raise ConfigError("--allow_config_change is for a resume (--resume_from_checkpoint auto|PATH)")
        if is_pretrain_config(args.config, overrides):
            if args.eval_only or args.model:
                raise ConfigError("--eval-only / --model score UPS models; evaluate a pretrained encoder with "
                                  "python -m ups_toolkit.pretraining.evaluate linear|knn|semi")
            from ..pretraining.trainer import pretrain

            config = load_pretrain_config(args.config, overrides)
            pretrain(config, resume=args.resume_from_checkpoint, overwrite=args.overwrite, quiet=args.quiet,
                     allow_config_change=allow)
            return
        config = load_config(args.config, overrides)
        if args.eval_only:
            model = Path(args.model) if args.model else config.output_dir / "model"
            evaluate_saved_model(config, model, quiet=args.quiet, out=config.output_dir / "eval_metrics.json")
            return
        if args.model:
            raise ConfigError("--model is only for --eval-only")
        from .loop import train

        train(config, resume=args.resume_from_checkpoint, overwrite=args.overwrite, quiet=args.quiet,
              allow_config_change=allow)

    return _run(go)


def train_console() -> None:
    """Entry point of the ``ups-train`` console script."""
    sys.exit(train_main())


def evaluate_console() -> None:
    """Entry point of the ``ups-evaluate`` console script."""
    sys.exit(evaluate_main())


def evaluate_main(argv=None) -> int:
    args, rest = evaluate_parser().parse_known_args(argv)

    def go():
        from .config import load_config

        config = load_config(args.config, rest)
        evaluate_saved_model(config, Path(args.model), quiet=args.quiet, out=Path(args.out) if args.out else None)

    return _run(go)


def evaluate_saved_model(config, model_dir: Path, *, quiet: bool = False, out: Path | None = None) -> dict:
    """Evaluate a saved model on the config's evaluation data (one process or ``accelerate launch``)."""
    from ..atomic import atomic_write_text
    from .config import check_model_section
    from .evaluation import evaluate_tasks, format_table, make_eval_loader
    from .loop import make_accelerator
    from .setup import build_tasks, prepare_synthetic

    check_model_section(config)
    if not Path(model_dir).is_dir():
        raise ConfigError(f"--model {model_dir}: no such folder (a model saved by train.py, e.g. "
                          f"{config.output_dir / 'model'})")
    from ..models.modeling_ups import UPSForSeq2Seq

    model = UPSForSeq2Seq.from_pretrained(str(model_dir))
    wanted = [n for n, s in config["tasks"].items() if s["eval"] is not None]
    missing = [n for n in wanted if n not in model.config.tasks]
    if missing:
        raise ConfigError(f"{config.source}: key 'tasks.{missing[0]}': the model in {model_dir} was not trained for "
                          f"this task (its tasks: {', '.join(model.config.tasks)})")
    config.data["tasks"] = {n: s for n, s in config["tasks"].items() if n in wanted}
    config.data["logging"]["tensorboard"] = False
    accelerator = make_accelerator(config)
    prepare_synthetic(config, accelerator)
    states = build_tasks(config, model.vocabulary, train=False, evaluate=True,
                         model_specs={n: model.task_spec(n) for n in wanted})
    model.to(accelerator.device).eval()
    loaders = {}
    for state in states:
        size = state.settings["eval_batch_size"] or config["evaluation"]["batch_size"]
        loaders[state.name] = accelerator.prepare(make_eval_loader(state, size, config["training"]["num_workers"],
                                                                   config["seed"]))
    results, _ = evaluate_tasks(accelerator, model, states, loaders, config)
    if accelerator.is_main_process:
        print(format_table(results, f"evaluation of {model_dir} on {config.source}"), flush=True)
        if out is not None:
            atomic_write_text(out, json.dumps(results, indent=1))
    accelerator.end_training()
    return results
