"""Early action prediction: the action from the first r of a sequence (an observed prefix), for each ratio r.

Training draws r from the task's ``options.obs_ratios`` (``train_obs_ratio: random``) or uses a fixed one;
evaluation scores every (sequence, ratio) pair: ``top1@r`` per ratio and their mean ``top1_mean`` (%).
"""

from __future__ import annotations

import numpy as np

from ..metrics import topk_accuracy
from ..metrics.classification import observed_frame_count
from ..skeleton.transforms import resize_frames
from .base import register_kind
from .recognition import Recognition, action_target, classify, class_scores, top_line


@register_kind
class EarlyPrediction(Recognition):
    name = "early_prediction"
    sampling = "observed_prefix"
    grammar = "action"
    headline = ("top1_mean", True)
    metric_keys = {"top1_accuracy_per_ratio": r"top1@.*", "top1_accuracy_mean_over_ratios": "top1_mean"}
    inference_options = ("observe",)

    def ratios(self, examples) -> list[float]:
        return list(examples.settings.get("eval_obs_ratios") or self.spec.options["obs_ratios"])

    def items(self, examples):
        n_seq = len(examples.split)
        if examples.train:
            return [(i,) for i in range(n_seq)]
        return examples.capped([(i, float(r)) for r in self.ratios(examples) for i in range(n_seq)])

    def example(self, examples, item, sample, keypoint, rng):
        if examples.train:
            ratio = examples.settings["train_obs_ratio"]
            if ratio == "random":
                ratio = float(rng.choice(self.spec.options["obs_ratios"]))
        else:
            ratio = item[1]
        n_obs = observed_frame_count(len(keypoint), ratio, self.spec.options.get("obs_rounding", "ceil"))
        pose = examples.transform(resize_frames(keypoint[:n_obs], examples.frames), sample, rng)
        return {"pose": pose, "ratio": np.float32(ratio), **action_target(examples, sample)}

    def predict_batch(self, model, state, batch, top_k):
        return {"item": batch["item"], "scores": class_scores(model, state, batch), "label": batch["label"],
                "ratio": batch["ratio"]}

    def score(self, state, arrays, *, horizons_ms, detection_tiou, top_k):
        labels = arrays["label"].astype(np.int64)
        ratios = arrays["ratio"].astype(np.float64).round(6)
        metrics = {}
        for r in np.unique(ratios):
            rows = ratios == r
            metrics[f"top1@{r:g}"] = topk_accuracy(arrays["scores"][rows], labels[rows], ks=(1,))[1]
        metrics["top1_mean"] = float(np.mean(list(metrics.values())))
        return metrics, {}

    def infer(self, session, samples, options):
        from ..inference.examples import InferenceExamples
        from ..inference.runner import Result, base_record, same_action

        ratios = list(options.get("observe") or self.spec.options.get("obs_ratios") or [1.0])
        rows = classify(session, InferenceExamples(session.recipe, samples, session.layout, obs_ratios=ratios))
        rounding = self.spec.options.get("obs_rounding", "ceil")
        vocab = session.model.vocabulary
        results = []
        for i, sample in enumerate(samples):
            record = base_record(i, sample, session.layout)
            truth = record.get("ground_truth")
            record["observed"] = [{"ratio": float(r), "observed_frames": observed_frame_count(record["frames"],
                                                                                               float(r), rounding),
                                   "top_k": top, "prediction": top[0]["label"]}
                                  for r, top in sorted(rows[i], key=lambda row: float(row[0]))]
            for row in record["observed"]:
                if truth is not None:
                    row["correct"] = same_action(vocab, row["prediction"], truth)
            record["prediction"] = record["observed"][-1]["prediction"]
            if truth is not None:
                record["correct"] = same_action(vocab, record["prediction"], truth)
            results.append(Result(i, sample, record))
        return results

    def summary(self, result):
        return [f"    observed {100 * row['ratio']:.0f}% ({row['observed_frames']} frames): {top_line(row['top_k'])}"
                for row in result.record["observed"]]

    def figures(self, result, out, name, truth):
        from ..visualize.inference import plot_topk

        rec = result.record
        panels = [(f"observed {100 * r['ratio']:.0f}% ({r['observed_frames']} of {rec['frames']} frames)",
                   r["top_k"]) for r in rec["observed"]]
        return [plot_topk(panels, out / f"{name}_topk.png", truth=truth,
                          title=f"{rec['sample_id']}: early action prediction")]
