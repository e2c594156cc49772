"""Conversion and read speed on the real data of ../shared/data (issue 3, issue 9).

Measures, in one run on this machine:
  * raw NTU .skeleton parsing (files/s and frames/s; the 5 real files, repeated),
  * NW-UCLA JSON reading (files/s over all 1,484 files),
  * a whole CLI-equivalent conversion of NW-UCLA (parse + validate + Arrow write, files/s),
  * random-access read rate of the prepared dataset, numpy format vs torch format (samples/s, ratio).

    python benchmarks/conversion_speed.py [--data ../shared/data] [--repeat 40]
"""

from __future__ import annotations

import argparse
import argparse as _argparse
import random
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=40, help="passes over the 5 NTU files")
    args = parser.parse_args()
    if not (args.data / "NTU_RGBD_samples").is_dir():
        raise SystemExit(f"real data not found under {args.data}")

    from ups_toolkit.data.converters.ntu_skeleton import read_skeleton_file
    from ups_toolkit.data.converters.nw_ucla import NWUCLAConverter, read_sequence
    from ups_toolkit.data.prepared import load_prepared, write_prepared

    rows = []
    ntu_files = sorted((args.data / "NTU_RGBD_samples" / "skeletons").glob("*.skeleton"))
    frames, seconds = timed(lambda: sum(read_skeleton_file(f)[0] for _ in range(args.repeat) for f in ntu_files))
    n = len(ntu_files) * args.repeat
    rows.append(("NTU .skeleton parse", n, seconds, f"{n / seconds:,.0f} files/s, {frames / seconds:,.0f} frames/s"))

    ucla_files = sorted((args.data / "NW-UCLA" / "all_sqe").glob("*.json"))
    _, seconds = timed(lambda: [read_sequence(f) for f in ucla_files])
    rows.append(("NW-UCLA JSON read", len(ucla_files), seconds, f"{len(ucla_files) / seconds:,.0f} files/s"))

    with tempfile.TemporaryDirectory() as tmp:
        options = _argparse.Namespace(split="xview", to_layout=None, skip_bad=False, val_label=None)
        converter = NWUCLAConverter(args.data / "NW-UCLA", options)
        out = Path(tmp) / "ucla"
        _, seconds = timed(lambda: write_prepared(
            converter.samples(progress=False), out, spec=converter.output_spec(),
            fingerprint=converter.fingerprint(), progress=False))
        rows.append(("NW-UCLA full conversion", len(ucla_files), seconds, f"{len(ucla_files) / seconds:,.0f} files/s"))

        train = load_prepared(out, "train")
        order = list(range(len(train)))
        random.Random(0).shuffle(order)
        _, numpy_seconds = timed(lambda: [train[i]["keypoint"] for i in order])
        torch_view = train.with_format("torch")
        _, torch_seconds = timed(lambda: [torch_view[i]["keypoint"] for i in order])
        rows.append(("prepared read, numpy format", len(order), numpy_seconds, f"{len(order) / numpy_seconds:,.0f} samples/s"))
        rows.append(("prepared read, torch format", len(order), torch_seconds,
                     f"{len(order) / torch_seconds:,.0f} samples/s (numpy is {torch_seconds / numpy_seconds:.1f}x faster)"))

    print(f"{'what':32s} {'items':>7s} {'seconds':>8s}  rate")
    for name, count, seconds, rate in rows:
        print(f"{name:32s} {count:7d} {seconds:8.2f}  {rate}")


if __name__ == "__main__":
    main()
