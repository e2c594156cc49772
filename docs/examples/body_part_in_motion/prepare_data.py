"""Build the body_part_in_motion dataset from the synthetic demo data: no toolkit code, only its public API.

    python prepare_data.py data/synthetic/ntu25_3d data/body_parts

Every synthetic action whose motion is dominated by ONE body part becomes a sample of that part; the actions that
move two or more parts about equally (raise both arms, clap, squat, jump, walk in place, turn around) are left out,
since no single label would be true of them. The mapping was chosen by measuring, per action, each part's path length
relative to the pelvis (mean over 4 samples per action, metres; about 0.9 m is sensor jitter alone):

    action            left arm  right arm  left leg  right leg  head  torso   ->  label
    wave right hand       0.93       2.77      0.99       0.94  0.94   0.95   ->  right arm
    wave left hand        2.71       0.96      0.95       0.97  0.93   0.96   ->  left arm
    kick right leg        1.02       1.02      0.91       2.80  0.94   0.93   ->  right leg
    bow                   1.30       1.31      0.89       0.88  1.78   1.23   ->  head (carried farthest by the bend)

So the data holds 4 of the 6 body-part classes (chance = 25 %); "left leg" and "torso" keep their tokens but get no
samples. Splits are the synthetic ones (a seeded quarter of every action is test).
"""

import argparse
import hashlib
from collections import Counter
from pathlib import Path

from ups_toolkit.data.converters.base import DatasetSpec
from ups_toolkit.data.prepared import load_prepared, prepared_info, write_prepared
from ups_toolkit.resources import load_label_set

HERE = Path(__file__).resolve().parent
#: synthetic class name (tokenizers/labels/synthetic.yaml) -> body part (tokenizers/labels/body_parts.yaml here)
BODY_PART_OF_ACTION = {
    "wave right hand": "right arm",
    "wave left hand": "left arm",
    "kick right leg": "right leg",
    "bow": "head",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", help="a synthetic prepared dataset (python -m ups_toolkit.data synth OUT; OUT/ntu25_3d)")
    parser.add_argument("out", help="output folder for the body_part_in_motion dataset")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    body_parts = load_label_set("body_parts", roots=[HERE])
    info = prepared_info(args.src)
    actions = info["class_names"]
    new_label = {actions.index(action): body_parts.index(part) for action, part in BODY_PART_OF_ACTION.items()}

    def samples():
        for split, dataset in load_prepared(args.src).items():
            for row in dataset:
                if int(row["label"]) in new_label:
                    yield {**row, "label": new_label[int(row["label"])], "_split": split}

    spec = DatasetSpec(layout=info["layout"], num_persons=info["num_persons"], channels=info["channels"],
                       class_names=list(body_parts), fps=info["fps"])
    mapping = ";".join(f"{a}={p}" for a, p in BODY_PART_OF_ACTION.items())
    fingerprint = hashlib.sha256(f"body_part_in_motion:1:{info['fingerprint']}:{mapping}".encode()).hexdigest()
    out = write_prepared(samples(), args.out, spec=spec, fingerprint=fingerprint, overwrite=args.overwrite,
                         info={"source": str(args.src), "mapping": BODY_PART_OF_ACTION}, progress=False)
    for split, dataset in load_prepared(out).items():
        counts = Counter(body_parts[int(label)] for label in dataset["label"])
        print(f"{out} {split}: {len(dataset)} samples " + ", ".join(f"{k} {counts[k]}" for k in body_parts if counts[k]))


if __name__ == "__main__":
    main()
