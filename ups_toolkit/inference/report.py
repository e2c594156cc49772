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


def _truth(record: dict) -> str:
    if "ground_truth" not in record:
        return ""
    verdict = {True: ", predicted right", False: ", predicted wrong"}.get(record.get("correct"), "")
    return f"  [truth: {record['ground_truth']}{verdict}]"


def summary_lines(header: dict, results, kind) -> list[str]:
    """One block per input: its header line, then the task kind's lines (``kind.summary``)."""
    lines = [f"{header['task']} with {header['model']} ({len(results)} input{'s' if len(results) != 1 else ''}, "
             f"layout {header['model_layout']})"]
    for r in results:
        rec = r.record
        mapped = f", mapped from {rec['layout']}" if rec["layout"] != rec["model_layout"] else ""
        lines.append(f"[{rec['index']}] {rec['sample_id']} ({rec['frames']} frames{mapped}){_truth(rec)}")
        lines += kind.summary(r)
    return lines
