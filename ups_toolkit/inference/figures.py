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

import numpy as np

MAX_ID = 40


def safe_name(index: int, sample_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(sample_id)).strip("-.")[:MAX_ID] or "input"
    return f"{index:03d}_{slug}"


def _frame_captions(record: dict, num_frames: int) -> list[str] | None:
    """Detection: the predicted segment(s) under way at every frame."""
    if "segments" not in record:
        return None
    captions = [""] * num_frames
    for seg in sorted(record["segments"], key=lambda s: -s["score"]):
        for f in range(max(0, seg["start"]), min(num_frames, seg["end"])):
            if not captions[f]:
                captions[f] = seg["label"]
    return captions


def _gif_title(task: str, record: dict) -> str:
    truth = f"\ntruth: {record['ground_truth']}" if "ground_truth" in record else ""
    if record.get("prediction"):
        prefix = "nearest: " if "neighbours" in record else "predicted: "
        return f"{prefix}{record['prediction']}{truth}"
    return task.replace("_", " ") + truth


def make_figures(task: str, results, out: Path, *, routes: dict | None = None, max_inputs: int = 8) -> list[Path]:
    """Write the pictures of the first ``max_inputs`` results (and the routing map) into ``out``; returns them."""
    from ..visualize.animation import animate_sequence
    from ..visualize.inference import plot_detection_timeline, plot_lifting, plot_motion, plot_neighbours, plot_topk

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results[:max_inputs]:
        rec, sample = result.record, result.sample
        name = safe_name(rec["index"], rec["sample_id"])
        truth = rec.get("ground_truth")
        fps = float(sample.get("fps", 30.0))
        original = sample.get("original_keypoint", sample["keypoint"])
        original_layout = sample.get("layout_in", sample["layout"])
        written.append(animate_sequence(original, original_layout, out / f"{name}.gif", fps=fps,
                                        title=_gif_title(task, rec),
                                        frame_captions=_frame_captions(rec, len(original))))
        if "top_k" in rec:
            written.append(plot_topk([("", rec["top_k"])], out / f"{name}_topk.png", truth=truth,
                                     title=f"{rec['sample_id']}: {task.replace('_', ' ')}"))
        elif "observed" in rec:
            panels = [(f"observed {100 * r['ratio']:.0f}% ({r['observed_frames']} of {rec['frames']} frames)",
                       r["top_k"]) for r in rec["observed"]]
            written.append(plot_topk(panels, out / f"{name}_topk.png", truth=truth,
                                     title=f"{rec['sample_id']}: early action prediction"))
        elif rec.get("output") == "pose_3d":
            pose_2d = np.asarray(original, np.float32)[:, 0]
            written.append(plot_lifting(pose_2d, result.arrays["pose_3d"], original_layout, sample["layout"],
                                        out / f"{name}_lifting.png", fps=fps,
                                        title=f"{rec['sample_id']}: 2D input and the lifted 3D pose"))
        elif rec.get("output") == "future":
            a = result.arrays
            written.append(plot_motion(a["observed"], a["future"], sample["layout"], out / f"{name}_motion.png",
                                       truth=a.get("ground_truth"), fps=fps,
                                       title=f"{rec['sample_id']}: motion prediction"))
        elif "segments" in rec:
            written.append(plot_detection_timeline(rec["segments"], rec["frames"], out / f"{name}_timeline.png",
                                                   truth=rec.get("ground_truth_segments"), fps=fps,
                                                   title=f"{rec['sample_id']}: temporal action detection"))
        elif "neighbours" in rec and rec["neighbours"]:
            written.append(plot_neighbours(rec["neighbours"], out / f"{name}_neighbours.png", truth=truth,
                                           title=f"{rec['sample_id']}: nearest gallery sequences"))
    if routes:
        from ..visualize.training import plot_routing_map

        written.append(plot_routing_map(routes, out / "routing_map.png",
                                        f"routing map: encoder block per task and layer (this run: {task})"))
    return written
