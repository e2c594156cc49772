"""Temporal action detection: windows of W raw frames every H frames, each decoded as up to N segments
(start bin, end bin, action), merged back into sequence frames (touching same-class joined, per-class NMS).

Metrics: the PKU-MMD scorer's mAP over actions (``mAP_a@θ``) and over videos (``mAP_v@θ``) per tIoU θ, the VOC-style
``mAP_voc@0.5``, and the number of proposals.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..metrics import detection_map_pku, detection_map_voc
from ..skeleton.transforms import resize_frames
from .segments import merge_window_segments, segments_array, window_starts, window_targets
from .base import TaskKind, register_kind


def segment_dicts(segments) -> list[dict]:
    if segments is None:
        return []
    return [{k: int(np.asarray(v)) for k, v in dict(s).items()} for s in segments]


def video_segments(split) -> list[list[dict]]:
    """Ground-truth segments of every sequence of a split, [{label, start, end}] (sequence frames)."""
    return [segment_dicts(s) for s in split.dataset["segments"]]


@register_kind
class Detection(TaskKind):
    name = "detection"
    sampling = "sliding_window"
    grammar = "segments"
    headline = ("mAP_a@0.5", True)
    uses_labels = True
    metric_keys = {"map_pku_official": r"mAP_[av]@.*", "map_voc": r"mAP_voc@.*"}
    diagnostics = ("proposals",)
    required_columns = {"segments": "untrimmed data with ground truth"}

    def merge(self, windows, num_frames: int):
        """[(label, start, end, score)] in sequence frames from [(window start, segments)] of one sequence."""
        options = self.spec.options
        return merge_window_segments(windows, merge=bool(options.get("merge_touching", True)),
                                     nms_tiou=options.get("nms_tiou", 0.5), num_frames=num_frames)

    def items(self, examples):
        n_seq = len(examples.split)
        if examples.train:
            return [(i,) for i in range(n_seq)]
        window, hop = int(examples.params["window"]), int(examples.params["hop"])
        return examples.capped([(i, s) for i in range(n_seq)
                                for s in window_starts(examples.split.num_frames(i), window, hop)])

    def example(self, examples, item, sample, keypoint, rng):
        window, n = int(examples.params["window"]), len(keypoint)
        start = int(rng.integers(max(n - window, 0) + 1)) if examples.train else int(item[1])
        raw = np.zeros((window,) + keypoint.shape[1:], np.float32)
        part = keypoint[start : start + window]
        raw[: len(part)] = part
        pose = examples.transform(resize_frames(raw, examples.frames), sample, rng)
        out = {"pose": pose, "window_start": start}
        if examples.codec is not None:
            rows = window_targets(segment_dicts(sample.get("segments")), start, window,
                                  float(self.spec.options.get("min_inside_fraction", 0.5)))
            out["target"] = examples.codec.encode(rows)
        return out

    def evaluation_truth(self, split):
        return video_segments(split)

    def auxiliary_loss(self, model, logits, labels, coordinates, layout, weight):
        if not weight:
            return None
        return weight * model.time_expectation_l1(logits, labels, self.spec.name)

    def predict_batch(self, model, state, batch, top_k):
        import torch

        pred = model.predict(batch["pose"], state.layout(train=False), state.name, label_set=state.label_set)
        rows = [segments_array(s, self.spec.output.max_segments) for s in pred["segments"]]
        return {"item": batch["item"], "sequence": batch["sequence"], "window_start": batch["window_start"],
                "segments": torch.as_tensor(np.stack(rows), dtype=torch.float64, device=batch["pose"].device)}

    def score(self, state, arrays, *, horizons_ms, detection_tiou, top_k):
        windows = defaultdict(list)
        for seq, start, rows in zip(arrays["sequence"], arrays["window_start"], arrays["segments"]):
            windows[int(seq)].append((int(start), [tuple(r) for r in rows if r[0] >= 0]))
        proposals, truths = [], []
        for seq, segments in enumerate(state.eval_truth):
            for seg in segments:  # [s, e) stored, the PKU scorer reads inclusive label-file frames (s, e - 1)
                truths.append((seq, seg["label"], seg["start"], seg["end"] - 1))
            merged = self.merge(windows.get(seq, []), state.eval_split.num_frames(seq))
            proposals += [(seq, label, s, e - 1, score) for label, s, e, score in merged]
        metrics = {}
        for theta in detection_tiou:
            result = detection_map_pku(proposals, truths, threshold=theta)
            metrics[f"mAP_a@{theta:g}"] = result["mAP_a"]
            metrics[f"mAP_v@{theta:g}"] = result["mAP_v"]
        metrics["mAP_voc@0.5"] = detection_map_voc(proposals, truths, threshold=0.5)["mAP"]
        metrics["proposals"] = float(len(proposals))
        return metrics, {}

    def infer(self, session, samples, options):
        from ..inference.examples import InferenceExamples
        from ..inference.runner import Result, base_record, batches

        recipe, min_score = session.recipe, float(options.get("min_score") or 0.0)
        examples = InferenceExamples(recipe, samples, session.layout)
        windows = defaultdict(list)
        for items, batch in batches(session, examples):
            pred = session.model.predict(batch["pose"], session.layout, session.task, label_set=recipe.label_set)
            for item, segments in zip(items, pred["segments"]):
                windows[int(item["sequence"])].append((int(item["window_start"]), segments))
        results = []
        for i, sample in enumerate(samples):
            merged = self.merge(windows[i], len(sample["keypoint"]))
            segments = [{"label": session.label_names[label], "index": int(label), "start": int(s), "end": int(e),
                         "score": round(float(score), 6)} for label, s, e, score in merged if score >= min_score]
            record = base_record(i, sample, session.layout)
            record.update(windows=len(windows[i]), window=int(examples.params["window"]),
                          hop=int(examples.params["hop"]), segments=segments,
                          frames_convention="[start, end) 0-based frames")
            names = sample.get("class_names")
            if sample.get("segments") is not None and names:
                record["ground_truth_segments"] = [{"label": str(names[g["label"]]), "start": int(g["start"]),
                                                    "end": int(g["end"])} for g in sample["segments"]]
            results.append(Result(i, sample, record))
        return results

    def summary(self, result):
        from ..inference.report import RESULTS_FILE

        rec = result.record
        segs = rec["segments"]
        lines = [f"    {len(segs)} segment{'s' if len(segs) != 1 else ''} from {rec['windows']} window"
                 f"{'s' if rec['windows'] != 1 else ''}:"]
        for s in sorted(segs, key=lambda s: s["start"])[:12]:
            lines.append(f"      {s['start']:>6}-{s['end']:<6} {s['label']} ({s['score']:.2f})")
        if len(segs) > 12:
            lines.append(f"      ... {len(segs) - 12} more in {RESULTS_FILE}")
        if "ground_truth_segments" in rec:
            truth = ", ".join(f"{g['label']} {g['start']}-{g['end']}" for g in rec["ground_truth_segments"][:6])
            lines.append(f"    ground truth: {truth}")
        return lines

    def frame_captions(self, record: dict, num_frames: int) -> list[str]:
        """The predicted segment(s) under way at every frame (captions of the animated input)."""
        captions = [""] * num_frames
        for seg in sorted(record["segments"], key=lambda s: -s["score"]):
            for f in range(max(0, seg["start"]), min(num_frames, seg["end"])):
                if not captions[f]:
                    captions[f] = seg["label"]
        return captions

    def figures(self, result, out, name, truth):
        from ..visualize.inference import plot_detection_timeline

        rec = result.record
        return [plot_detection_timeline(rec["segments"], rec["frames"], out / f"{name}_timeline.png",
                                        truth=rec.get("ground_truth_segments"),
                                        fps=float(result.sample.get("fps", 30.0)),
                                        title=f"{rec['sample_id']}: temporal action detection")]
