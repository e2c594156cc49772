"""Action retrieval, encoder only: the pooled encoder feature g of the whole sequence (with the routing of the task
named by ``options.route_task``), L2-normalised; the nearest gallery sequences by cosine similarity.

No decoder, hence no target, no training and no decoder-side evaluation; ``infer.py --task retrieval --gallery``
searches a gallery, and the pretraining evaluation reports kNN-1 with the same features.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..skeleton.transforms import resize_frames
from .base import TaskKind, register_kind


def encode_features(session, samples: list[dict]) -> np.ndarray:
    """(N, 2d) pooled encoder features g (whole sequence resampled to T, the route of the model task)."""
    import torch

    from ..inference.examples import InferenceExamples
    from ..inference.runner import batches

    examples = InferenceExamples(session.recipe, samples, session.layout)
    parts = []
    session.model.eval()
    with torch.no_grad():
        for _, batch in batches(session, examples):
            parts.append(session.model.encode(batch["pose"], session.layout, session.task).pooled.float().cpu().numpy())
    return np.concatenate(parts)


@register_kind
class Retrieval(TaskKind):
    name = "retrieval"
    sampling = "whole_sequence"
    grammar = "none"
    headline = ("knn1_top1", True)
    uses_labels = True
    metric_keys = {"knn1_top1_accuracy": "knn1_top1"}
    inference_options = ("gallery",)
    prediction_prefix = "nearest: "

    def example(self, examples, item, sample, keypoint, rng):
        return {"pose": examples.transform(resize_frames(keypoint, examples.frames), sample, rng)}

    def infer(self, session, samples, options):
        from ..inference.runner import Result, base_record, ground_truth_name, same_action

        gallery = options.get("gallery")
        if not gallery:
            raise ConfigError("retrieval needs --gallery PREPARED_DIR (the sequences to search)")
        queries = encode_features(session, samples)
        keys = encode_features(session, gallery)
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
        similarity = queries @ keys.T
        results = []
        for i, sample in enumerate(samples):
            order = [j for j in np.argsort(-similarity[i], kind="stable")
                     if not (gallery[j].get("source") == sample.get("source")
                             and gallery[j].get("sample_id") == sample.get("sample_id"))][: session.top_k]
            neighbours = [{"rank": r + 1, "sample_id": str(gallery[j].get("sample_id", "")), "gallery_index": int(j),
                           "label": ground_truth_name(gallery[j]), "cosine": round(float(similarity[i, j]), 6)}
                          for r, j in enumerate(order)]
            record = base_record(i, sample, session.layout)
            record.update(route_task=session.task, gallery_size=len(gallery), neighbours=neighbours,
                          prediction=neighbours[0]["label"] if neighbours else None)
            if "ground_truth" in record and record["prediction"] is not None:
                record["correct"] = same_action(session.model.vocabulary, record["prediction"],
                                                record["ground_truth"])
            results.append(Result(i, sample, record, {"feature": queries[i].astype(np.float32)}))
        return results

    def summary(self, result):
        return [f"    {n['rank']}. {n['sample_id']} ({n['label'] or 'unlabelled'}) cosine {n['cosine']:.3f}"
                for n in result.record["neighbours"]]

    def figures(self, result, out, name, truth):
        from ..visualize.inference import plot_neighbours

        rec = result.record
        if not rec["neighbours"]:
            return []
        return [plot_neighbours(rec["neighbours"], out / f"{name}_neighbours.png", truth=truth,
                                title=f"{rec['sample_id']}: nearest gallery sequences")]
