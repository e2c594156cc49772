"""``python -m ups_toolkit.data``: convert external formats, make the synthetic demo data, inspect, export.

    python -m ups_toolkit.data formats
    python -m ups_toolkit.data convert FORMAT SRC OUT [--split PROTOCOL] [--to-layout NAME] [--skip-bad] [--overwrite]
    python -m ups_toolkit.data synth OUT [--num-per-class N] [--seed S] [--overwrite]
    python -m ups_toolkit.data info PATH
    python -m ups_toolkit.data export-parquet PATH OUT

Errors in the input print one line naming the file (and line or sample) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UPSError


def build_parser() -> argparse.ArgumentParser:
    from .converters import available_formats, converter_class

    parser = argparse.ArgumentParser(prog="python -m ups_toolkit.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("formats", help="list the input formats and their split protocols")

    convert = commands.add_parser("convert", help="convert an external dataset into a prepared dataset")
    formats = convert.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name in available_formats():
        cls = converter_class(name)
        sub = formats.add_parser(name, help=cls.description, description=cls.description)
        sub.add_argument("src", help="input file or folder")
        sub.add_argument("out", help="output folder (written atomically)")
        if cls.protocols:
            sub.add_argument("--split", choices=sorted(cls.protocols), help="split protocol (default: one split 'all')")
        sub.add_argument("--to-layout", help="map joints to this layout while converting (e.g. h36m17)")
        sub.add_argument("--skip-bad", action="store_true", help="list bad items and go on instead of failing")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        cls.add_arguments(sub)

    synth = commands.add_parser("synth", help="write the deterministic synthetic demo dataset")
    synth.add_argument("out")
    synth.add_argument("--num-per-class", type=int, default=24)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true")

    info = commands.add_parser("info", help="summarise a prepared dataset")
    info.add_argument("path")

    render = commands.add_parser("render", help="draw one sample as a strip of skeleton frames (PNG)")
    render.add_argument("path", help="prepared dataset folder")
    render.add_argument("out", help="PNG file to write")
    render.add_argument("--split", help="split name (default: the first)")
    render.add_argument("--index", type=int, default=0, help="sample index in the split")
    render.add_argument("--frames", type=int, default=6, help="number of frames drawn")

    export = commands.add_parser("export-parquet", help="write each split as <OUT>/<split>.parquet")
    export.add_argument("path")
    export.add_argument("out")
    return parser


def run_convert(args) -> int:
    from .converters import converter_class
    from .prepared import write_prepared

    cls = converter_class(args.format)
    options = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in {"src", "out", "command", "format", "overwrite", "quiet"}})
    converter = cls(args.src, options)
    spec = converter.output_spec()
    out = write_prepared(
        converter.samples(progress=not args.quiet),
        args.out,
        spec=spec,
        fingerprint=converter.fingerprint(),
        info={
            "converter": cls.name,
            "converter_version": cls.version,
            "source": str(converter.src),
            "options": {k: v for k, v in vars(options).items()},
            "bad_items": converter.bad_items,
            "warnings": list(getattr(converter, "warnings", [])),
        },
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    for bad in converter.bad_items:
        print(f"skipped: {bad}", file=sys.stderr)
    print_info(out)
    return 0


def print_info(path) -> None:
    from .prepared import load_prepared, prepared_info

    dataset = load_prepared(path)
    meta = prepared_info(path)
    print(f"{path}: layout {meta.get('layout', '?')}, {len(meta.get('class_names', []))} classes")
    for name, part in dataset.items():
        lengths = [len(k) for k in part["keypoint"]] if len(part) <= 5000 else None
        extra = f", frames {min(lengths)}-{max(lengths)}" if lengths else ""
        print(f"  {name}: {len(part)} samples{extra}")
    if meta.get("bad_items"):
        print(f"  skipped bad items: {len(meta['bad_items'])}")


def render_sample(args) -> None:
    from ..errors import ConfigError
    from ..visualize.skeleton import render_sequence
    from .prepared import load_prepared

    dataset = load_prepared(args.path)
    split = args.split or next(iter(dataset))
    part = load_prepared(args.path, split)
    if not 0 <= args.index < len(part):
        raise ConfigError(f"{args.path}: split {split!r} has {len(part)} samples, no index {args.index}")
    sample = part[args.index]
    names = part.features["label"].names
    label = int(sample["label"])
    title = f"{sample['sample_id']}  [{names[label] if label >= 0 else 'unlabeled'}]  {sample['layout']}"
    out = render_sequence(
        sample["keypoint"], str(sample["layout"]), args.out, num_frames=args.frames, title=title,
        score=sample.get("keypoint_score"),
    )
    print(out)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "formats":
            from .converters import available_formats, converter_class

            for name in available_formats():
                cls = converter_class(name)
                protocols = f" [splits: {', '.join(cls.protocols)}]" if cls.protocols else ""
                print(f"{name:16s} {cls.description}{protocols}")
        elif args.command == "convert":
            return run_convert(args)
        elif args.command == "synth":
            from .synthetic import KINDS, write_synthetic

            out = write_synthetic(args.out, num_per_class=args.num_per_class, seed=args.seed, overwrite=args.overwrite)
            for kind in KINDS:  # one prepared dataset per kind
                print_info(out / kind)
        elif args.command == "info":
            print_info(args.path)
        elif args.command == "render":
            render_sample(args)
        elif args.command == "export-parquet":
            from .prepared import export_parquet

            for path in export_parquet(args.path, args.out):
                print(path)
    except UPSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    return 0


def console_main() -> None:
    """Entry point of the ``ups-data`` console script."""
    sys.exit(main())
