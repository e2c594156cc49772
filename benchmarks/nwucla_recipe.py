"""NW-UCLA cross-view at a CPU budget (issue 14): the recognition recipe, chosen on a validation split, then run on
the test view at two seeds against CTR-GCN's accuracy at the same training time on this CPU.

    python benchmarks/nwucla_recipe.py --val --recipes all --steps 3000     # the lever search (validation split)
    python benchmarks/nwucla_recipe.py --seed 0 --threads 2                 # the chosen recipe, test view v03
    python benchmarks/nwucla_recipe.py --quick                              # a smoke run (not a result)

The model is the UPS model of ``decoder_vs_head.py``'s "chosen" row (text-derived label tokens scored by the decoder
over the task grammar, the pooled feature at BOS, decoder learning rate x 0.1), ``realdata.BENCH_MODEL`` widths,
routing off (H = 1), trained by ``train.py``. A recipe is a set of changes on top of it (RECIPES below): input
streams as channels (joint / bone / motion, the streams the GCN anchors ensemble), a temporal crop, the width, the
schedule length.

``--val`` trains on 85 % of v01+v02 and evaluates on the other 15 % (stratified, numpy seed 0: the split of
``decoder_vs_head.py``); without it the run trains on all of v01+v02 and reports top-1 on v03 at the final step. Each
run prints its wall time (the whole ``train.py`` process: start-up, training and evaluation) and its training
seconds (the steps alone, batch loading included). CTR-GCN's reference on this machine (issue 14, its own config,
joint stream, 2 threads): 63.4 % after 4 min, 78.5 % at 17 min, 86.0 % at 34 min, 88.2 % at 53 min.
"""

from __future__ import annotations

import copy
import sys
import time

import decoder_vs_head
import nwucla_recognition
import realdata

STEPS, QUICK_STEPS = 12000, 40
TASK = "action_recognition_3d"
BASE_TRANSFORMS = nwucla_recognition.TRANSFORMS  # PreNormalize3D, rotation 0.3 and shear 0.2 at p 0.5
TEMPORAL_CROP = 0.5  # training draws a random span of 50-100 % of the valid frames (task input.train_crop)


JBM = ["joint", "bone", "joint_motion", "bone_motion"]
# Each recipe is one set of changes from "chosen" (decoder_vs_head.py's chosen defaults: joint stream, whole sequence):
# ``augment_p`` (the probability of the rotation and of the shear; 0.5 in BASE_TRANSFORMS), ``streams`` (input
# streams as channels, 3 each, computed after the augmentations), ``temporal_crop`` (training takes a random span of
# 50-100 % of the valid frames before resampling them to 64: the task's ``input.train_crop``), ``model`` (UPSConfig
# overrides).
RECIPES: dict[str, dict] = {
    "chosen (joint only)": {},
    "joint + bone": {"streams": ["joint", "bone"]},
    "joint + bone + motions": {"streams": JBM},
    "temporal crop": {"temporal_crop": True},
    "width 160": {"model": {"encoder": {"d_model": 160, "num_heads": 4}}},
    "rotation and shear always": {"augment_p": 1.0},
    "drop-path 0.3": {"model": {"encoder": {"drop_path": 0.3}}},
}


def combine(name: str) -> dict:
    """The changes of ``name``: one recipe, or several joined by ' & ' (later ones win on the same key)."""
    change: dict = {}
    for part in name.split(" & "):
        change = decoder_vs_head.merge(change, RECIPES[part.strip()])
    return change


def recipe_settings(data, eval_split: str, change: dict) -> tuple[dict, dict]:
    """(task settings, model overrides) of one recipe."""
    settings = nwucla_recognition.task_settings(data)[TASK]
    settings["eval"] = {"path": str(data), "split": eval_split}
    train, evaluate = copy.deepcopy(BASE_TRANSFORMS), [{"type": "PreNormalize3D"}]
    model = copy.deepcopy(change.get("model", {}))
    if "augment_p" in change:  # the rotation and shear of BASE_TRANSFORMS applied with this probability
        train = [{**t, "p": change["augment_p"]} if t["type"] == "RandomApply" else t for t in train]
    if change.get("temporal_crop"):
        settings["overrides"] = {"input": {"train_crop": TEMPORAL_CROP}}
    if change.get("streams"):
        step = {"type": "Streams", "streams": list(change["streams"])}
        train.append(step)
        evaluate.append(step)
        model = decoder_vs_head.merge(model, {"encoder": {"in_channels": 3 * len(change["streams"])}})
    settings["transforms"], settings["eval_transforms"] = train, evaluate
    return settings, model


def main() -> int:
    p = realdata.parser(__doc__)
    p.add_argument("--val", action="store_true", help="train on 85 %% of v01+v02, evaluate on the other 15 %%")
    p.add_argument("--recipes", default="chosen (joint only)",
                   help="comma-separated recipes, each one name or names joined by ' & ' (e.g. 'joint + bone & "
                        f"temporal crop'), or all: {', '.join(RECIPES)}")
    args = p.parse_args()
    names = list(RECIPES) if args.recipes == "all" else [s.strip() for s in args.recipes.split(",") if s.strip()]
    for name in names:
        for part in name.split(" & "):
            if part.strip() not in RECIPES:
                p.error(f"unknown recipe {part.strip()!r}; known: {', '.join(RECIPES)}")
    bench = realdata.Bench("nwucla_recipe", args)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    data = nwucla_recognition.prepare(bench)
    eval_split = "test"
    if args.val:
        data = decoder_vs_head.carve_validation(data, bench.work / "data" / f"{data.name}_val")
        eval_split = "val"
    base = realdata.QUICK_MODEL if args.quick else realdata.BENCH_MODEL
    chosen = decoder_vs_head.merge(decoder_vs_head.BASELINE,
                                   decoder_vs_head.CHANGES["chosen: BOS pooled + decoder lr x0.1"])
    rows = []
    for name in names:
        change = combine(name)
        settings, model_change = recipe_settings(data, eval_split, change)
        model = decoder_vs_head.merge(decoder_vs_head.merge(base, chosen["model"]), model_change)
        run = f"recipe_{eval_split}_{steps}_s{args.seed}_{decoder_vs_head.slug(name)}"
        config = bench.experiment(run, {TASK: settings}, steps, model=model, optim=chosen["optim"])
        started = time.perf_counter()
        final, seconds = bench.train(run, config)
        wall = time.perf_counter() - started
        metrics = final[TASK]
        rows.append({"recipe": name, "top1": metrics["top1"], "mean_class": metrics["mean_class"],
                     "train_seconds": seconds, "wall_seconds": wall, "change": change})
        print(f"{name}: top-1 {metrics['top1']:.2f} %, {seconds:.0f} s training, {wall:.0f} s wall "
              f"(0 s wall means the run was already finished and reused)", flush=True)
    split = "validation split (15 % of v01+v02, stratified, seed 0)" if args.val else "test view v03"
    print(f"\nNW-UCLA cross-view, {split}: {steps} steps of batch 16, seed {args.seed}, {args.threads} thread(s), "
          f"final step")
    print(realdata.table([[r["recipe"], r["top1"], r["mean_class"], f"{r['train_seconds']:.0f}",
                           f"{r['wall_seconds'] / 60:.1f}"] for r in rows],
                         ["recipe", "top-1 %", "mean-class %", "train s", "wall min"]))
    bench.print_commands()
    out = bench.save({"steps": steps, "validation": args.val, "rows": rows})
    print(f"\nresults: {out}  (wall {bench.elapsed():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
