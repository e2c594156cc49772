"""``python infer.py``: run one task of a trained UPS model on your own data and show the result.

    python infer.py --task action_recognition_3d --model runs/demo/model --input clip.npy --layout ntu25
    python infer.py --task early_action_prediction --model DIR --input clip.npz --layout ntu25 --observe 0.4
    python infer.py --task pose_estimation_2d3d --model DIR --input PREPARED_2D --split test --img-shape 1080 1920
    python infer.py --task motion_prediction --model DIR --input walk.json --layout h36m17
    python infer.py --task temporal_action_detection --model DIR --input long.npy --layout ntu25
    python infer.py --task retrieval --model DIR --input query.npy --layout ntu25 --gallery PREPARED
    python infer.py --task action_recognition_3d --model DIR --input S001C001P001R001A001.skeleton --format ntu-skeleton

Inputs are plain keypoint arrays (.npy / .npz / .json, T x V x C or T x M x V x C, joints in the order of
``--layout``; files or folders), a prepared dataset (``--split``), or any converter format (``--format NAME`` plus
that converter's options, see ``python -m ups_toolkit.data convert NAME --help``). Joints are mapped when the model
expects another layout. ``--out DIR`` writes results.json (and coordinates.npz); ``--visualize`` adds pictures.
Bad input or a model that cannot serve the task prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, DataFormatError, UPSError
from ..kinds import find_kind, kind_class


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(__doc__.split("\n")[2:]).strip("\n"))
    parser.add_argument("--task", required=True, help="task name (a file in tasks/, e.g. action_recognition_3d)")
    parser.add_argument("--model", required=True, help="a saved model folder (train.py's <output_dir>/model)")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="keypoint files or folders, a prepared dataset, or converter inputs (with --format)")
    data = parser.add_argument_group("input")
    data.add_argument("--format", help="read the input with this converter (python -m ups_toolkit.data formats)")
    data.add_argument("--layout", help="joint order of plain arrays (e.g. ntu25, coco17, h36m17)")
    data.add_argument("--split", help="split of a prepared dataset (needed when it has several)")
    data.add_argument("--index", type=int, nargs="+", metavar="I", help="only these samples (0-based, in input order)")
    data.add_argument("--limit", type=int, metavar="N", help="only the first N samples")
    data.add_argument("--img-shape", type=int, nargs=2, metavar=("H", "W"),
                      help="image size of 2D pixel keypoints (for tasks normalising by the image)")
    data.add_argument("--fps", type=float, help="frame rate of the input (default: from the data, else 30)")
    model = parser.add_argument_group("model and task")
    model.add_argument("--config", help="the run's config.yaml (default: the one train.py saved beside --model)")
    model.add_argument("--label-set", help="label set of action outputs (default: the one the task was trained on)")
    model.add_argument("--top-k", type=int, default=5, help="labels / neighbours listed (default 5)")
    model.add_argument("--observe", type=float, nargs="+", metavar="R",
                       help="early prediction: observation ratios in (0, 1] (default: the task's ratios)")
    model.add_argument("--start", type=int, metavar="FRAME",
                       help="motion prediction: first observed frame (default: observe the last frames)")
    model.add_argument("--min-score", type=float, default=0.0, help="detection: drop segments scoring below this")
    model.add_argument("--gallery", help="retrieval: a prepared dataset to search")
    model.add_argument("--gallery-split", help="retrieval: split of the gallery (default: train, else the only one)")
    run = parser.add_argument_group("output and speed")
    run.add_argument("--out", help="folder for results.json, coordinates.npz and pictures")
    run.add_argument("--visualize", action="store_true", help="write pictures into --out")
    run.add_argument("--max-figures", type=int, default=8, help="pictures for at most this many inputs (default 8)")
    run.add_argument("--batch-size", type=int, default=128, help="sequences or windows decoded together (default 128)")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    run.add_argument("--threads", type=int, help="CPU threads of torch (default: torch's; 1 is faster on a CPU "
                                                 "that other jobs keep busy)")
    run.add_argument("--quiet", action="store_true", help="no summary on the terminal")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """Our options, then (with --format) the converter's own options from what is left."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.converter_options = None
    if args.format is None:
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args
    try:
        from ..data.converters import converter_class

        cls = converter_class(args.format)
    except ConfigError as e:
        parser.error(str(e))
    sub = argparse.ArgumentParser(prog=f"{Path(sys.argv[0]).name} --format {args.format}", allow_abbrev=False)
    cls.add_arguments(sub)
    if args.layout is not None and "--layout" in sub._option_string_actions:
        rest = rest + ["--layout", args.layout]  # the converter's own --layout (arrays)
    args.converter_options = sub.parse_args(rest)
    return args


# the options only some kinds take: option -> (flag, the kinds it is for, in words)
KIND_OPTIONS = {"observe": ("--observe", "early prediction (observed-prefix tasks)"),
                "start": ("--start", "motion prediction"),
                "gallery": ("--gallery", "retrieval")}


def _check_options(args, kind, task: str) -> None:
    """Refuse what no run of this task kind reads (``kind.inference_options``) before any model is loaded."""
    if args.visualize and not args.out:
        raise ConfigError("--visualize writes pictures into --out DIR: give --out")
    if args.top_k < 1 or args.batch_size < 1 or args.max_figures < 0 or (args.threads is not None and args.threads < 1):
        raise ConfigError("--top-k, --batch-size and --threads must be at least 1, --max-figures at least 0")
    for option, (flag, meant_for) in KIND_OPTIONS.items():
        if getattr(args, option) is not None and option not in kind.inference_options:
            raise ConfigError(f"{flag} is for {meant_for}, not {task!r}")
    if args.observe is not None:
        bad = [r for r in args.observe if not 0 < r <= 1]
        if bad:
            raise ConfigError(f"--observe {bad[0]}: an observation ratio lies in (0, 1]")
    if "gallery" in kind.inference_options and not args.gallery:
        raise ConfigError(f"task {task!r} searches a gallery: give --gallery PREPARED_DIR")


def load_model(path: Path, device: str, threads: int | None = None):
    """UPSForSeq2Seq.from_pretrained in eval mode on ``device``; a folder it cannot load is a ConfigError."""
    import torch
    from transformers.utils import logging as hf_logging

    if threads:
        torch.set_num_threads(threads)

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from ..models.modeling_ups import UPSForSeq2Seq

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = UPSForSeq2Seq.from_pretrained(str(path))
    except UPSError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: cannot load the model ({type(e).__name__}: {first})") from None
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"--device {device}: {str(e).splitlines()[0]}") from None
    return model.eval(), device


def run(args) -> int:
    from .recipe import check_task, find_run_config, read_model_info, task_recipe

    # cheap checks first: no torch until the task, the model folder and the options are known to be usable
    info = read_model_info(args.model)
    model_task = check_task(args.task, info)
    if model_task == args.task:
        raw = info.task_specs.get(model_task) or {}
        kind = find_kind(raw.get("input", {}).get("sampling", ""), raw.get("output", {}).get("grammar", ""),
                         raw.get("kind"), f"{info.path / 'config.json'} task_specs[{model_task!r}]")
    else:  # an encoder-only task served by the route of a model task
        from ..tokenization.specs import load_task

        kind = kind_class(load_task(args.task))
    _check_options(args, kind, args.task)
    recipe = task_recipe(args.task, info, find_run_config(info.path, args.config), args.label_set,
                         explicit_config=args.config is not None)

    from .inputs import read_inputs

    samples = read_inputs(args.input, fmt=args.format, converter_options=args.converter_options, layout=args.layout,
                          split=args.split, img_shape=args.img_shape, fps=args.fps, indices=args.index,
                          limit=args.limit)
    from .examples import adapt_to_model

    samples, layout = adapt_to_model(samples, recipe, info.persons)
    gallery = None
    if args.gallery:
        gallery = read_inputs([args.gallery], split=args.gallery_split or _default_gallery_split(args.gallery))
        gallery, _ = adapt_to_model(gallery, recipe, info.persons)

    model, device = load_model(info.path, args.device, args.threads)
    from .runner import Session, label_names, run_task

    session = Session(model, recipe, layout, device=device, top_k=args.top_k, batch_size=args.batch_size,
                      label_names=recipe.label_names or label_names(model, recipe.label_set))
    results = run_task(session, samples, observe=args.observe, start=args.start, min_score=args.min_score,
                       gallery=gallery)

    header = {"task": args.task, "model": str(info.path), "model_task": model_task, "run_config": recipe.source,
              "label_set": recipe.label_set, "model_layout": layout, "transforms": recipe.transforms,
              "notes": recipe.notes}
    if gallery is not None:
        header["gallery"] = {"path": args.gallery, "size": len(gallery)}
    written = []
    if args.out:
        from .report import write_outputs

        written += write_outputs(Path(args.out), header, results)
        if args.visualize:
            from .figures import make_figures

            written += make_figures(args.task, results, Path(args.out), kind(recipe.spec), routes=model.routes(),
                                    max_inputs=args.max_figures)
    if not args.quiet:
        from .report import summary_lines

        print("\n".join(summary_lines(header, results, kind(recipe.spec))))
        if written:
            print(f"wrote {len(written)} file{'s' if len(written) != 1 else ''} to {args.out}: "
                  f"{', '.join(p.name for p in written[:6])}{' ...' if len(written) > 6 else ''}")
    return 0


def _default_gallery_split(path: str) -> str | None:
    from ..data.prepared import load_prepared
    from .inputs import is_prepared_dataset

    if not is_prepared_dataset(Path(path)):
        raise ConfigError(f"--gallery {path}: not a prepared dataset (convert it with python -m ups_toolkit.data "
                          f"convert)")
    splits = list(load_prepared(path))
    return "train" if "train" in splits and len(splits) > 1 else None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except DataFormatError as e:
        hint = "; give the image size with --img-shape H W" if "img_shape" in str(e) and not args.img_shape else ""
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2
    except UPSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    sys.exit(main())
