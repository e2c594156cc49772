"""Self-supervised evaluations of an encoder, one command each (docs/design.md §12.6):

    python -m ups_toolkit.pretraining.evaluate linear --encoder runs/X/encoder.safetensors --data PREPARED \\
        [--train-split train] [--test-split test] [--lr 0.03] [--epochs 160] [--report-best] [--standardize]
    python -m ups_toolkit.pretraining.evaluate knn    --encoder ... --data PREPARED
    python -m ups_toolkit.pretraining.evaluate semi   --encoder ... --data PREPARED --fraction 0.01 [--seed 0]

Common options: ``--transforms YAML`` (deterministic transforms before the resize to the encoder's T, e.g.
``'[{type: PreNormalize3D}]'``), ``--random-init`` (the baseline: the same architecture as ``--encoder``, freshly
initialised with ``--seed``), ``--out FILE`` (the result as JSON).

- ``linear``: frozen encoder (eval mode), features extracted once, Linear(2d, K) trained by SGD (momentum 0.9, wd 0,
  batch 512, lr × 0.1 at ``--milestones``). The headline is the **final** epoch's top-1; ``--report-best`` adds the
  best of the tests every 5 epochs, labelled "best epoch" (the reference's figure). Feature standardisation:
  **none by default** (the reference feeds raw pooled features); ``--standardize`` z-scores every dimension with the
  training split's mean and std (applied to both splits), which makes one lr work across encoders whose feature
  scales differ (pretrained vs random); results state which was used.
- ``knn``: cosine 1-NN of L2-normalised pooled features, the training split as gallery.
- ``semi``: a random ``--fraction`` of the training split (``--seed``, not class-balanced), fine-tuned with
  everything unfrozen (encoder in train mode + a linear head on the pooled feature, SGD momentum 0.9, the same lr
  for all), then top-1 on the whole test split; final epoch, best epoch only with ``--report-best``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError, UPSError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ups_toolkit.pretraining.evaluate", allow_abbrev=False,
                                     description="Linear probe, kNN-1 or semi-supervised fine-tuning of an encoder.")
    parser.add_argument("protocol", choices=("linear", "knn", "semi"))
    parser.add_argument("--encoder", required=True, help="an encoder.safetensors of a pretraining run")
    parser.add_argument("--random-init", action="store_true",
                        help="baseline: the same architecture, randomly initialised (--seed), not the weights")
    parser.add_argument("--data", required=True, help="prepared dataset with labels")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--transforms", default="[]", help="YAML list of deterministic transforms before the resize")
    parser.add_argument("--batch-size", type=int, default=None, help="linear 512, semi 32, feature extraction 64")
    parser.add_argument("--lr", type=float, default=None, help="linear 0.03 (NTU-60 xview), semi 0.01")
    parser.add_argument("--epochs", type=int, default=None, help="linear 160, semi 30")
    parser.add_argument("--milestones", default=None, help="comma-separated epochs (linear default 120,140)")
    parser.add_argument("--report-best", action="store_true", help="also the best tested epoch, labelled as such")
    parser.add_argument("--standardize", action="store_true", help="linear: z-score features (train statistics)")
    parser.add_argument("--fraction", type=float, default=0.1, help="semi: fraction of training labels (0.01, 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument("--quiet", action="store_true")
    return parser


def load_eval_encoder(path, random_init: bool = False, seed: int = 0):
    """The encoder of an export; with ``random_init`` a fresh DSTE of the same config (seeded)."""
    import torch

    from ..models.dste import DSTE
    from .model import load_encoder, read_encoder_file

    if not random_init:
        return load_encoder(path)
    _, config, _ = read_encoder_file(path)
    torch.manual_seed(seed)
    return DSTE(config)


def _transforms(text: str, num_frames: int) -> list[dict]:
    import yaml

    try:
        pre = yaml.safe_load(text) or []
    except yaml.YAMLError as e:
        raise ConfigError(f"--transforms: not YAML ({e})") from None
    if not isinstance(pre, list) or not all(isinstance(t, dict) for t in pre):
        raise ConfigError(f"--transforms: expected a list of transform configs, got {text!r}")
    return pre + [{"type": "Resize", "size": num_frames}]


def _splits(args):
    from ..data.prepared import load_prepared

    return load_prepared(args.data, args.train_split), load_prepared(args.data, args.test_split)


def _num_classes(train, test) -> int:
    names = getattr(train.features.get("label"), "names", None)
    return len(names) if names else int(max(np.max(train["label"]), np.max(test["label"]))) + 1


def run_linear(args, encoder, pipeline) -> dict:
    from .evaluation import extract_features, linear_probe

    train, test = _splits(args)
    fx, fy = extract_features(encoder, train, transforms=pipeline)
    tx, ty = extract_features(encoder, test, transforms=pipeline)
    if args.standardize:
        mean, std = fx.mean(0), fx.std(0) + 1e-6
        fx, tx = (fx - mean) / std, (tx - mean) / std
    milestones = [int(m) for m in args.milestones.split(",")] if args.milestones else [120, 140]
    result = linear_probe(fx, fy, tx, ty, num_classes=_num_classes(train, test), lr=args.lr or 0.03,
                          epochs=args.epochs or 160, milestones=milestones, batch_size=args.batch_size or 512,
                          report_best=args.report_best, seed=args.seed)
    out = {"protocol": "linear", "top1": result.top1, "epochs": result.epochs, "standardize": args.standardize,
           "summary": result.summary()}
    if args.report_best:
        out.update(best_epoch_top1=result.best_top1, best_epoch=result.best_epoch)
    return out


def run_knn(args, encoder, pipeline) -> dict:
    from .evaluation import extract_features, knn1_accuracy

    train, test = _splits(args)
    fx, fy = extract_features(encoder, train, transforms=pipeline)
    tx, ty = extract_features(encoder, test, transforms=pipeline)
    top1 = float(knn1_accuracy(fx, fy, tx, ty))
    return {"protocol": "knn", "top1": top1, "summary": f"kNN-1 top-1 {top1:.2f} %"}


def run_semi(args, encoder, pipeline) -> dict:
    """Fine-tune everything on a label fraction; top-1 on the test split after the final epoch."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from ..metrics import topk_accuracy
    from ..skeleton.transforms import build_transforms
    from .evaluation import semi_supervised_subset

    train, test = _splits(args)
    k = _num_classes(train, test)
    subset = semi_supervised_subset(len(train), args.fraction, args.seed)
    build = build_transforms(pipeline)
    layout = str(train[0]["layout"])
    persons = encoder.config.persons(layout)

    def tensors(split, indices):
        poses, labels = [], []
        for i in indices:
            sample = split[int(i)]
            kp = np.asarray(build(sample)["keypoint"], np.float32)
            pose = np.zeros((kp.shape[0], persons) + kp.shape[2:], np.float32)
            pose[:, : kp.shape[1]] = kp[:, :persons]
            poses.append(pose)
            labels.append(int(sample["label"]))
        return torch.from_numpy(np.stack(poses)), torch.tensor(labels)

    train_x, train_y = tensors(train, subset)
    test_x, test_y = tensors(test, range(len(test)))
    torch.manual_seed(args.seed)
    head = nn.Linear(2 * encoder.config.d_model, k)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    params = list(encoder.parameters()) + list(head.parameters())
    epochs, batch = args.epochs or 30, args.batch_size or 32
    optimizer = torch.optim.SGD(params, lr=args.lr or 0.01, momentum=0.9)
    milestones = [int(m) for m in args.milestones.split(",")] if args.milestones else []
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    generator = torch.Generator().manual_seed(args.seed)

    def test_top1() -> float:
        encoder.eval()
        scores = []
        with torch.no_grad():
            for start in range(0, len(test_x), 64):
                scores.append(head(encoder(test_x[start : start + 64], layout=layout).pooled))
        encoder.train()
        return topk_accuracy(torch.cat(scores).numpy(), test_y.numpy(), ks=(1,))[1]

    history = []
    encoder.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(head(encoder(train_x[idx], layout=layout).pooled), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        if args.report_best and (epoch % 5 == 0 or epoch == epochs):
            history.append((epoch, test_top1()))
    final = history[-1][1] if history else test_top1()
    out = {"protocol": "semi", "fraction": args.fraction, "labelled": int(len(subset)), "seed": args.seed,
           "top1": final, "epochs": epochs,
           "summary": f"semi-supervised ({args.fraction:g} of labels, {len(subset)} samples, seed {args.seed}) "
                      f"top-1 {final:.2f} % (final epoch {epochs})"}
    if args.report_best:
        best_epoch, best = max(history, key=lambda item: (item[1], -item[0]))
        out.update(best_epoch_top1=best, best_epoch=best_epoch)
        out["summary"] += f"; best epoch {best_epoch}: {best:.2f} % (best-epoch figure)"
    return out


PROTOCOLS = {"linear": run_linear, "knn": run_knn, "semi": run_semi}


def evaluate(args) -> dict:
    encoder = load_eval_encoder(args.encoder, args.random_init, args.seed)
    pipeline = _transforms(args.transforms, encoder.config.num_frames)
    result = PROTOCOLS[args.protocol](args, encoder, pipeline)
    result.update(encoder=str(args.encoder), random_init=args.random_init, data=str(args.data),
                  train_split=args.train_split, test_split=args.test_split)
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0.0 < args.fraction <= 1.0:
            raise ConfigError(f"--fraction must be in (0, 1], got {args.fraction}")
        result = evaluate(args)
    except UPSError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    label = "random-init " if args.random_init else ""
    print(f"{label}{result['summary']}", flush=True)
    if args.out:
        from ..atomic import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
