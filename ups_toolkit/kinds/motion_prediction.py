"""Motion prediction: from the last ``observed_frames`` frames, the next K as residuals to the last observed frame.

Training draws a random window per usable sequence (at least observed + K frames); evaluation takes
``eval_windows`` evenly spaced windows per sequence; inference observes the frames starting at a chosen frame (by
default the last ones). Metrics: MPJPE per horizon (ms) against zero-velocity, their mean, the quantisation floor.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataFormatError
from ..metrics import mpjpe_at_horizons
from ..skeleton.transforms import resize_frames
from .base import register_kind
from .coordinates import CoordinateKind

# caps keeping range resolution cheap on large datasets (windows are spread evenly over the training set)
MAX_RANGE_ITEMS = 20000


def motion_starts(samples: list[dict], observed: int, start: int | None) -> list[int]:
    """First observed frame per sample: ``start`` when given, else the last ``observed`` frames."""
    out = []
    for sample in samples:
        n = len(sample["keypoint"])
        first = n - observed if start is None else int(start)
        if n < observed or first < 0 or first + observed > n:
            need = f"frames {first}..{first + observed - 1}" if start is not None else f"{observed} frames"
            raise DataFormatError(f"motion prediction observes {observed} frames (the model's observed_frames) and "
                                  f"needs {need}, but the sequence has {n}", file=sample.get("source"),
                                  sample=sample.get("sample_id"))
        out.append(first)
    return out


@register_kind
class MotionPrediction(CoordinateKind):
    name = "motion_prediction"
    sampling = "observed_window"
    headline = ("mpjpe_mean_mm", False)
    metric_keys = {"mpjpe_per_horizon": r"mpjpe@.*ms", "zero_velocity_mpjpe_per_horizon": r"zero_velocity@.*ms",
                   "quantisation_floor": "floor_mm", "clip_rate": "clip_rate_%"}
    inference_options = ("start",)
    scores_horizons = True

    def clip_frames(self) -> tuple[int, int]:
        """(observed frames, future frames K)."""
        return int(self.spec.input.params["observed_frames"]), int(self.spec.output.frames)

    def why_empty(self, examples):
        obs, k = self.clip_frames()
        return f"every sequence is shorter than observed_frames + K = {obs + k} frames"

    def items(self, examples):
        starts = getattr(examples, "motion_starts", None)
        if starts is not None:  # inference: the chosen first observed frame of each input
            return [(i, int(start)) for i, start in enumerate(starts)]
        obs, k = self.clip_frames()
        lengths = [examples.split.num_frames(i) for i in range(len(examples.split))]
        usable = [i for i in range(len(lengths)) if lengths[i] >= obs + k]
        if examples.train:
            return [(i,) for i in usable]
        out = []
        for i in usable:
            last = lengths[i] - obs - k
            starts = np.unique(np.linspace(0, last, examples.settings["eval_windows"]).round().astype(int))
            out += [(i, int(s)) for s in starts]
        return examples.capped(out)

    def motion_clip(self, examples, keypoint, start: int, sample: dict, rng) -> tuple[np.ndarray, np.ndarray]:
        """Transformed clip of observed + K frames -> (input (T, M, V, C), residuals (K, V, 3) of person 1)."""
        obs, k = self.clip_frames()
        clip = examples.transform(keypoint[start : start + obs + k], sample, rng)
        observed, future = clip[:obs], clip[obs:]
        residuals = np.asarray(future[:, 0], np.float64) - np.asarray(observed[-1, 0], np.float64)
        return resize_frames(observed, examples.frames), residuals

    def example(self, examples, item, sample, keypoint, rng):
        obs, k = self.clip_frames()
        start = int(rng.integers(len(keypoint) - obs - k + 1)) if examples.train else int(item[1])
        pose, residuals = self.motion_clip(examples, keypoint, start, sample, rng)
        out = {"pose": pose, "coords": residuals.astype(np.float32), "window_start": start}
        if examples.codec is not None:
            out["target"] = examples.codec.encode(residuals)
        return out

    def range_values(self, examples, seed):
        rng = np.random.default_rng([seed, 7919])
        obs, k = self.clip_frames()
        windows = [(seq, s) for (seq,) in examples.items
                   for s in range(examples.split.num_frames(seq) - obs - k + 1)]
        if len(windows) > MAX_RANGE_ITEMS:
            windows = [windows[i] for i in np.linspace(0, len(windows) - 1, MAX_RANGE_ITEMS).astype(int)]
        values, cache = [], {}
        for seq, start in windows:
            if seq not in cache:
                cache = {seq: examples.split.sample(seq)}
            sample = cache[seq]
            _, residuals = self.motion_clip(examples, np.asarray(sample["keypoint"], np.float32), start, sample, rng)
            values.append(residuals.reshape(-1, 3))
        return np.concatenate(values)

    def predict_batch(self, model, state, batch, top_k):
        pred = self.decode_coordinates(model, state, batch["pose"])
        return {"item": batch["item"], "coords": pred["coordinates"].float(),
                "soft": pred["coordinates_expectation"].float(), "target": batch["coords"].float(),
                "label": batch["label"]}

    def score(self, state, arrays, *, horizons_ms, detection_tiou, top_k):
        target = arrays["target"].astype(np.float64)
        pred = arrays["coords"].astype(np.float64)
        fps = state.eval_split.fps
        errors = mpjpe_at_horizons(pred, target, fps, tuple(horizons_ms))
        zero = mpjpe_at_horizons(np.zeros_like(target), target, fps, tuple(horizons_ms))
        metrics = {f"mpjpe@{ms:g}ms": 1000 * v for ms, v in errors.items()}
        metrics.update({f"zero_velocity@{ms:g}ms": 1000 * v for ms, v in zero.items()})
        metrics["mpjpe_mean_mm"] = float(np.mean([metrics[f"mpjpe@{ms:g}ms"] for ms in errors]))
        metrics.update(self.floor(state, target))
        return metrics, {}

    def infer(self, session, samples, options):
        """The K frames after the observed window, as last observed frame + predicted residuals."""
        from ..inference.examples import InferenceExamples
        from ..inference.runner import Result, base_record, batches

        observed_count, future_count = self.clip_frames()
        starts = motion_starts(samples, observed_count, options.get("start"))
        examples = InferenceExamples(session.recipe, samples, session.layout, motion_starts=starts)
        residuals = {}
        for items, batch in batches(session, examples):
            coords = session.model.predict(batch["pose"], session.layout, session.task)["coordinates"].float()
            for item, c in zip(items, coords.cpu().numpy()):
                residuals[int(item["sequence"])] = c.astype(np.float64)
        results = []
        for i, sample in enumerate(samples):
            observed, after = self.motion_window(examples, i, starts[i])
            future = observed[-1] + residuals[i]
            record = base_record(i, sample, session.layout)
            fps = float(sample.get("fps", 30.0))
            record.update(observed_start=starts[i], observed_frames=observed_count, future_frames=future_count,
                          fps=fps, horizons_ms=[round(1000 * (k + 1) / fps, 1) for k in range(future_count)],
                          output="future", units="metres, in the space after the task's transforms")
            arrays = {"observed": observed.astype(np.float32), "future": future.astype(np.float32)}
            if len(after):
                errors = np.linalg.norm(future[: len(after)] - after, axis=-1).mean(-1)
                zero = np.linalg.norm(observed[-1][None] - after, axis=-1).mean(-1)
                record["ground_truth_frames"] = int(len(after))
                record["mpjpe_mm"] = [round(float(1000 * e), 2) for e in errors]
                record["zero_velocity_mpjpe_mm"] = [round(float(1000 * e), 2) for e in zero]
                arrays["ground_truth"] = after.astype(np.float32)
            results.append(Result(i, sample, record, arrays))
        return results

    def motion_window(self, examples, seq: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Person 1 of the transformed clip starting at ``start``: (observed (obs, V, 3), the frames after it that
        exist (K' <= K, V, 3)), in the space the model predicts in (after the task's transforms)."""
        sample = examples.split.sample(seq)
        obs, k = self.clip_frames()
        keypoint = np.asarray(sample["keypoint"], np.float32)
        clip = examples.transform(keypoint[start: start + obs + k], sample, None)
        return np.asarray(clip[:obs, 0], np.float64), np.asarray(clip[obs:, 0], np.float64)

    def summary(self, result):
        rec = result.record
        last = rec["observed_start"] + rec["observed_frames"] - 1
        line = (f"    observed frames {rec['observed_start']}..{last}, predicted {rec['future_frames']} future "
                f"frames ({rec['horizons_ms'][-1]:g} ms)")
        if "mpjpe_mm" in rec:
            line += (f"; error at the last known frame {rec['mpjpe_mm'][-1]:.1f} mm (zero-velocity "
                     f"{rec['zero_velocity_mpjpe_mm'][-1]:.1f} mm)")
        return [line]

    def figures(self, result, out, name, truth):
        from ..visualize.inference import plot_motion

        a, sample = result.arrays, result.sample
        return [plot_motion(a["observed"], a["future"], sample["layout"], out / f"{name}_motion.png",
                            truth=a.get("ground_truth"), fps=float(sample.get("fps", 30.0)),
                            title=f"{result.record['sample_id']}: motion prediction")]
