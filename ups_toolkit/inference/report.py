"""Results as files (``results.json``, ``coordinates.npz``) and as a readable summary on the terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text

RESULTS_FILE = "results.json"
ARRAYS_FILE = "coordinates.npz"


def array_key(index: int, name: str) -> str:
    """NPZ key of one array of input ``index`` (``s0003_pose_3d``); the JSON record lists its keys."""
    return f"s{index:04d}_{name}"


def write_outputs(out: Path, header: dict, results) -> list[Path]:
    """``out/results.json`` (header + one record per input) and, when any result has arrays, ``out/coordinates.npz``
    (``sample_ids`` plus ``s<index>_<name>`` arrays). Both written atomically. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    arrays = {}
    for result in results:
        if result.arrays:
            keys = {name: array_key(result.index, name) for name in result.arrays}
            result.record["arrays"] = {"file": ARRAYS_FILE, "keys": keys}
            arrays.update({keys[name]: value for name, value in result.arrays.items()})
    if arrays:
        arrays["sample_ids"] = np.array([r.record["sample_id"] for r in results])
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        written.append(atomic_write_bytes(out / ARRAYS_FILE, buffer.getvalue()))
    document = {**header, "results": [r.record for r in results]}
    written.insert(0, atomic_write_text(out / RESULTS_FILE, json.dumps(document, indent=1) + "\n"))
    return written


# ----------------------------------------------------------------------------------------------------------------------
# terminal


def _top(rows: list[dict], k: int = 3) -> str:
    return ", ".join(f"{r['label']} {100 * r['probability']:.1f}%" for r in rows[:k])


def _truth(record: dict) -> str:
    if "ground_truth" not in record:
        return ""
    verdict = {True: ", predicted right", False: ", predicted wrong"}.get(record.get("correct"), "")
    return f"  [truth: {record['ground_truth']}{verdict}]"


def summary_lines(header: dict, results) -> list[str]:
    """One block per input, a few lines each."""
    lines = [f"{header['task']} with {header['model']} ({len(results)} input{'s' if len(results) != 1 else ''}, "
             f"layout {header['model_layout']})"]
    for r in results:
        rec = r.record
        mapped = f", mapped from {rec['layout']}" if rec["layout"] != rec["model_layout"] else ""
        lines.append(f"[{rec['index']}] {rec['sample_id']} ({rec['frames']} frames{mapped}){_truth(rec)}")
        if "top_k" in rec:
            lines.append(f"    {_top(rec['top_k'])}")
        elif "observed" in rec:
            for row in rec["observed"]:
                lines.append(f"    observed {100 * row['ratio']:.0f}% ({row['observed_frames']} frames): "
                             f"{_top(row['top_k'])}")
        elif rec.get("output") == "pose_3d":
            pose = r.arrays["pose_3d"]
            extent = np.ptp(pose, axis=1).max(axis=-1).mean()
            lines.append(f"    3D pose of every frame: {pose.shape[0]} x {pose.shape[1]} joints x 3 (mean body "
                         f"extent {extent:.2f} m{', flip-averaged' if rec['flip_test'] else ''})")
        elif rec.get("output") == "future":
            horizon = rec["horizons_ms"][-1]
            last = rec["observed_start"] + rec["observed_frames"] - 1
            line = (f"    observed frames {rec['observed_start']}..{last}, predicted {rec['future_frames']} future "
                    f"frames ({horizon:g} ms)")
            if "mpjpe_mm" in rec:
                line += (f"; error at the last known frame {rec['mpjpe_mm'][-1]:.1f} mm (zero-velocity "
                         f"{rec['zero_velocity_mpjpe_mm'][-1]:.1f} mm)")
            lines.append(line)
        elif "segments" in rec:
            segs = rec["segments"]
            lines.append(f"    {len(segs)} segment{'s' if len(segs) != 1 else ''} from {rec['windows']} window"
                         f"{'s' if rec['windows'] != 1 else ''}:")
            for s in sorted(segs, key=lambda s: s["start"])[:12]:
                lines.append(f"      {s['start']:>6}-{s['end']:<6} {s['label']} ({s['score']:.2f})")
            if len(segs) > 12:
                lines.append(f"      ... {len(segs) - 12} more in {RESULTS_FILE}")
            if "ground_truth_segments" in rec:
                truth = ", ".join(f"{g['label']} {g['start']}-{g['end']}" for g in rec["ground_truth_segments"][:6])
                lines.append(f"    ground truth: {truth}")
        elif "neighbours" in rec:
            for n in rec["neighbours"]:
                lines.append(f"    {n['rank']}. {n['sample_id']} ({n['label'] or 'unlabelled'}) cosine "
                             f"{n['cosine']:.3f}")
    return lines
