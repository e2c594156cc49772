"""2D -> 3D pose estimation (lifting): T consecutive 2D frames around a frame, its root-relative 3D pose.

Training draws a random centre frame per sequence; evaluation takes every ``eval_frame_stride``-th frame (inference
every frame), optionally averaged with the left/right-flipped window (``options.flip_test``). Metrics MPJPE,
P-MPJPE, N-MPJPE (mm, per action then over actions), the unflipped and soft-argmax errors, the quantisation floor.
"""

from __future__ import annotations

import numpy as np

from ..metrics import n_mpjpe, per_action_mean
from ..metrics.pose import procrustes_align
from ..skeleton import get_layout
from ..skeleton.transforms import Flip
from .base import register_kind
from .coordinates import CoordinateKind


def unflip(coords, layout: str):
    """Undo a left/right flip of the input on predicted 3D joints (..., J, 3): negate x and swap the joint pairs."""
    perm = get_layout(layout).flip_permutation()
    out = coords[..., perm, :].clone()
    out[..., 0] = -out[..., 0]
    return out


def pose_errors(pred, target) -> dict[str, np.ndarray]:
    """Per-pose errors (metres) of (N, F, J, 3) poses, P1/P2/P3 in the VideoPose3D convention."""
    p1 = np.linalg.norm(pred - target, axis=-1).mean(axis=(1, 2))
    # A prediction with every joint at one point (an untrained model) has no shape to rotate: its best similarity
    # alignment has scale 0 and puts every joint at the target's centroid (the limit the formula cannot compute).
    spread = np.linalg.norm(pred - pred.mean(axis=-2, keepdims=True), axis=-1).max(axis=(1, 2))
    aligned = np.broadcast_to(target.mean(axis=-2, keepdims=True), target.shape).copy()
    ok = spread > 1e-9
    if ok.any():
        aligned[ok] = procrustes_align(pred[ok], target[ok])
    p2 = np.linalg.norm(aligned - target, axis=-1).mean(axis=(1, 2))
    p3 = np.array([n_mpjpe(p, t) for p, t in zip(pred, target)])
    return {"mpjpe": p1, "p_mpjpe": p2, "n_mpjpe": p3}


@register_kind
class Lifting(CoordinateKind):
    name = "lifting"
    sampling = "consecutive"
    headline = ("mpjpe_mm", False)
    metric_keys = {"mpjpe": "mpjpe_mm", "p_mpjpe": "p_mpjpe_mm", "n_mpjpe": "n_mpjpe_mm",
                   "quantisation_floor": "floor_mm", "clip_rate": "clip_rate_%"}
    diagnostics = ("mpjpe_noflip_mm", "mpjpe_soft_mm")  # flip averaging and soft-argmax, beside the headline
    paired_3d_targets = True

    def flip_test(self, examples):
        return not examples.train and bool(self.spec.options.get("flip_test"))

    def items(self, examples):
        n_seq = len(examples.split)
        if examples.train:
            return [(i,) for i in range(n_seq)]
        stride = examples.settings["eval_frame_stride"]
        return examples.capped([(i, t) for i in range(n_seq) for t in range(0, examples.split.num_frames(i), stride)])

    def example(self, examples, item, sample, keypoint, rng):
        seq = item[0]
        frame = int(rng.integers(len(keypoint))) if examples.train else int(item[1])
        score = sample.get("keypoint_score")
        window = examples.consecutive_window(keypoint, frame)
        window_score = None if score is None else examples.consecutive_window(np.asarray(score, np.float32), frame)
        pose = examples.transform(window, sample, rng, window_score)
        coords = examples.pose_target(seq, sample, frame)
        out = {"pose": pose, "coords": coords.astype(np.float32), "frame": frame}
        if examples.codec is not None:
            out["target"] = examples.codec.encode(coords)
        if examples.flip_test:
            out["pose_flip"] = Flip()({"keypoint": pose, "layout": examples.split.layout})["keypoint"]
        return out

    def range_values(self, examples, seed):
        values = []
        for seq in range(len(examples.split)):
            sample = examples.split.sample(seq)
            values.append(examples.root_relative(examples.split.keypoint_3d(seq, sample)[:, 0]).reshape(-1, 3))
        return np.concatenate(values)

    def predict_batch(self, model, state, batch, top_k):
        pred = self.decode_coordinates(model, state, batch["pose"])
        out = {"item": batch["item"], "coords": pred["coordinates"].float(),
               "soft": pred["coordinates_expectation"].float(), "target": batch["coords"].float(),
               "label": batch["label"]}
        if "pose_flip" in batch:
            flipped = self.decode_coordinates(model, state, batch["pose_flip"])
            out["coords_flip"] = unflip(flipped["coordinates"].float(), state.layout(train=False))
        return out

    def score(self, state, arrays, *, horizons_ms, detection_tiou, top_k):
        target = arrays["target"].astype(np.float64)
        names = state.eval_split.class_names
        actions = [names[l] if 0 <= l < len(names) else "all" for l in arrays["label"].astype(int)]
        pred = arrays["coords"].astype(np.float64)
        if "coords_flip" in arrays:
            pred = (pred + arrays["coords_flip"].astype(np.float64)) / 2
        metrics = {}
        for name, errors in pose_errors(pred, target).items():
            metrics[f"{name}_mm"] = 1000 * per_action_mean(errors, actions)[1]
        if "coords_flip" in arrays:
            p1 = np.linalg.norm(arrays["coords"] - target, axis=-1).mean(axis=(1, 2))
            metrics["mpjpe_noflip_mm"] = 1000 * per_action_mean(p1, actions)[1]
        soft = np.linalg.norm(arrays["soft"] - target, axis=-1).mean(axis=(1, 2))
        metrics["mpjpe_soft_mm"] = 1000 * per_action_mean(soft, actions)[1]
        metrics.update(self.floor(state, target))
        return metrics, {}

    def infer(self, session, samples, options):
        """One window centred on every frame; the centre frame's 3D pose (flip-averaged with ``flip_test``)."""
        import torch

        from ..inference.examples import InferenceExamples
        from ..inference.runner import Result, base_record, batches

        examples = InferenceExamples(session.recipe, samples, session.layout)
        poses = {i: np.zeros((len(s["keypoint"]), s["keypoint"].shape[2], 3), np.float32)
                 for i, s in enumerate(samples)}
        # with flip test-time augmentation (as evaluation reports it) a window and its mirror image decode together
        size = session.batch_size // 2 if examples.flip_test else session.batch_size
        for items, batch in batches(session, examples, keys=("pose", "pose_flip"), size=max(1, size)):
            both = torch.cat([batch["pose"], batch["pose_flip"]]) if "pose_flip" in batch else batch["pose"]
            coords = session.model.predict(both, session.layout, session.task)["coordinates"].float()
            if "pose_flip" in batch:
                n = len(items)
                coords = (coords[:n] + unflip(coords[n:], session.layout)) / 2
            coords = coords.cpu().numpy()
            for item, c in zip(items, coords):
                poses[int(item["sequence"])][int(item["frame"])] = c[0]
        results = []
        for i, sample in enumerate(samples):
            record = base_record(i, sample, session.layout)
            record.update(output="pose_3d", shape=list(poses[i].shape), units="metres, root-relative (root joint = 0)",
                          joints=list(get_layout(session.layout).joint_names), flip_test=bool(examples.flip_test),
                          window_frames=examples.frames)
            results.append(Result(i, sample, record, {"pose_3d": poses[i]}))
        return results

    def summary(self, result):
        pose = result.arrays["pose_3d"]
        extent = np.ptp(pose, axis=1).max(axis=-1).mean()
        return [f"    3D pose of every frame: {pose.shape[0]} x {pose.shape[1]} joints x 3 (mean body extent "
                f"{extent:.2f} m{', flip-averaged' if result.record['flip_test'] else ''})"]

    def figures(self, result, out, name, truth):
        from ..visualize.inference import plot_lifting

        rec, sample = result.record, result.sample
        original = sample.get("original_keypoint", sample["keypoint"])
        pose_2d = np.asarray(original, np.float32)[:, 0]
        return [plot_lifting(pose_2d, result.arrays["pose_3d"], sample.get("layout_in", sample["layout"]),
                             sample["layout"], out / f"{name}_lifting.png", fps=float(sample.get("fps", 30.0)),
                             title=f"{rec['sample_id']}: 2D input and the lifted 3D pose")]
