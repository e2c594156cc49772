"""Action recognition (3D and 2D skeletons): the whole valid sequence resampled to T frames, one action token.

Target: [action, EOT]; prediction: the top-k of the first decoding step over the label set; metrics top-1, top-k
and mean-class accuracy (%), with the confusion matrix. ``input.train_crop`` < 1 trains on a random span of at least
that fraction of the frames (temporal crop augmentation); evaluation always takes the whole sequence.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..metrics import confusion_matrix, mean_class_accuracy, topk_accuracy
from ..skeleton.transforms import resize_frames
from .base import TaskKind, register_kind


def action_target(examples, sample) -> dict:
    """``target`` [action, EOT] of a labelled sample (nothing without a codec: inference)."""
    if examples.codec is None:
        return {}
    return {"target": examples.codec.encode(int(sample["label"]))}


def class_scores(model, state, batch: dict):
    """(N, classes) probabilities of the label set from ``model.predict`` (0 outside its top-k = every class)."""
    import torch

    codec = state.eval_examples.codec
    pred = model.predict(batch["pose"], state.layout(train=False), state.name, label_set=state.label_set,
                         k=codec.num_classes)
    scores = torch.zeros(len(batch["item"]), codec.num_classes, device=pred["topk_probs"].device)
    scores.scatter_(1, pred["topk_labels"], pred["topk_probs"].float())
    return scores


def ranked(names: list[str], labels, probs) -> list[dict]:
    return [{"label": names[int(l)], "index": int(l), "probability": round(float(p), 6)} for l, p in zip(labels, probs)]


def top_line(rows: list[dict], k: int = 3) -> str:
    return ", ".join(f"{r['label']} {100 * r['probability']:.1f}%" for r in rows[:k])


def classify(session, examples) -> dict[int, list[tuple]]:
    """Per sequence, [(ratio or None, top-k rows)] of every item of ``examples``, decoded in batches."""
    from ..inference.runner import batches

    recipe = session.recipe
    out = defaultdict(list)
    for items, batch in batches(session, examples):
        pred = session.model.predict(batch["pose"], session.layout, session.task, label_set=recipe.label_set,
                                     k=session.top_k)
        labels, probs = pred["topk_labels"].cpu().numpy(), pred["topk_probs"].float().cpu().numpy()
        for item, l, p in zip(items, labels, probs):
            ratio = item.get("ratio")
            out[int(item["sequence"])].append((None if ratio is None else round(float(ratio), 6),
                                               ranked(session.label_names, l, p)))
    return out


@register_kind
class Recognition(TaskKind):
    name = "recognition"
    sampling = "whole_sequence"
    grammar = "action"
    headline = ("top1", True)
    uses_labels = True
    metric_keys = {"top1_accuracy": "top1", "top5_accuracy": r"top\d+", "mean_class_accuracy": "mean_class"}

    def example(self, examples, item, sample, keypoint, rng):
        crop = float(examples.params.get("train_crop", 1.0))
        if examples.train and crop < 1.0:  # a span of U[crop, 1] of the n frames at a uniform start
            n = len(keypoint)
            length = max(1, min(n, int(np.ceil(n * rng.uniform(crop, 1.0)))))
            start = int(rng.integers(0, n - length + 1))
            keypoint = keypoint[start : start + length]
        pose = examples.transform(resize_frames(keypoint, examples.frames), sample, rng)
        return {"pose": pose, **action_target(examples, sample)}

    def predict_batch(self, model, state, batch, top_k):
        return {"item": batch["item"], "scores": class_scores(model, state, batch), "label": batch["label"]}

    def score(self, state, arrays, *, horizons_ms, detection_tiou, top_k):
        scores, labels = arrays["scores"], arrays["label"].astype(np.int64)
        k = min(top_k, scores.shape[1])
        acc = topk_accuracy(scores, labels, ks=(1, k))
        predictions = scores.argmax(axis=1)  # ties: argmax takes the lower index, as the ranking does
        metrics = {"top1": acc[1], f"top{k}": acc[k],
                   "mean_class": mean_class_accuracy(predictions, labels, scores.shape[1])}
        return metrics, {"confusion": confusion_matrix(predictions, labels, scores.shape[1])}

    def infer(self, session, samples, options):
        from ..inference.examples import InferenceExamples
        from ..inference.runner import Result, base_record, same_action

        rows = classify(session, InferenceExamples(session.recipe, samples, session.layout))
        results = []
        for i, sample in enumerate(samples):
            record = base_record(i, sample, session.layout)
            record["top_k"] = rows[i][0][1]
            record["prediction"] = record["top_k"][0]["label"]
            if "ground_truth" in record:
                record["correct"] = same_action(session.model.vocabulary, record["prediction"],
                                                record["ground_truth"])
            results.append(Result(i, sample, record))
        return results

    def summary(self, result):
        return [f"    {top_line(result.record['top_k'])}"]

    def figures(self, result, out, name, truth):
        from ..visualize.inference import plot_topk

        rec = result.record
        return [plot_topk([("", rec["top_k"])], out / f"{name}_topk.png", truth=truth,
                          title=f"{rec['sample_id']}: {self.spec.name.replace('_', ' ')}")]
