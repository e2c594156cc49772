"""The pictures of ``--visualize``, per input (the first ``max_inputs``) and once per run:

| task | pictures |
|---|---|
| every task | ``<i>_<id>.gif``: the input as given, animated, titled with the prediction |
| recognition, early prediction | ``<i>_<id>_topk.png``: top-k bars (one panel per observation ratio) |
| pose estimation | ``<i>_<id>_lifting.png``: 2D input above the predicted 3D pose |
| motion prediction | ``<i>_<id>_motion.png``: observed, predicted (and true) future frames |
| detection | ``<i>_<id>_timeline.png``: predicted segments against the ground truth when known |
| retrieval | ``<i>_<id>_neighbours.png``: similarity of the nearest gallery sequences |
| once | ``routing_map.png``: the block each task runs in each encoder layer |
"""

from __future__ import annotations

import re
from pathlib import Path

MAX_ID = 40


def safe_name(index: int, sample_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(sample_id)).strip("-.")[:MAX_ID] or "input"
    return f"{index:03d}_{slug}"


def _gif_title(task: str, record: dict, kind) -> str:
    truth = f"\ntruth: {record['ground_truth']}" if "ground_truth" in record else ""
    if record.get("prediction"):
        return f"{kind.prediction_prefix}{record['prediction']}{truth}"
    return task.replace("_", " ") + truth


def make_figures(task: str, results, out: Path, kind, *, routes: dict | None = None,
                 max_inputs: int = 8) -> list[Path]:
    """Write the pictures of the first ``max_inputs`` results (the animated input, then the task kind's
    ``figures``) and the routing map into ``out``; returns them."""
    from ..visualize.animation import animate_sequence

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results[:max_inputs]:
        rec, sample = result.record, result.sample
        name = safe_name(rec["index"], rec["sample_id"])
        original = sample.get("original_keypoint", sample["keypoint"])
        written.append(animate_sequence(original, sample.get("layout_in", sample["layout"]), out / f"{name}.gif",
                                        fps=float(sample.get("fps", 30.0)), title=_gif_title(task, rec, kind),
                                        frame_captions=kind.frame_captions(rec, len(original))))
        written += kind.figures(result, out, name, rec.get("ground_truth"))
    if routes:
        from ..visualize.training import plot_routing_map

        written.append(plot_routing_map(routes, out / "routing_map.png",
                                        f"routing map: encoder block per task and layer (this run: {task})"))
    return written
