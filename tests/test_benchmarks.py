"""The real-data benchmark harness (benchmarks/realdata.py): its pieces on small local data, and one benchmark's
--quick smoke run end to end when ../shared/data is present (skipped in CI, which has no real data)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, real_data

sys.path.insert(0, str(REPO / "benchmarks"))
import realdata  # noqa: E402


def _prepared(tmp_path, items_by_split: dict):
    """A saved DatasetDict with the prepared schema's keypoint/label/layout columns: one row per (keypoint, label)."""
    from datasets import Array4D, ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"keypoint": Array4D(shape=(None, 1, 25, 3), dtype="float32"), "layout": Value("string"),
                         "label": ClassLabel(names=["a", "b", "c"])})
    out = tmp_path / "prepared"
    DatasetDict({split: Dataset.from_dict({"keypoint": [kp.astype(np.float32) for kp, _ in items],
                                           "layout": ["ntu25"] * len(items), "label": [l for _, l in items]},
                                          features=features)
                 for split, items in items_by_split.items()}).save_to_disk(str(out))
    return out


def test_knn1_baseline_finds_the_matching_training_sequence(tmp_path):
    rng = np.random.default_rng(0)
    train = [(rng.normal(size=(20 + 5 * i, 1, 25, 3)), i % 3) for i in range(9)]
    # test items: the training sequences themselves, the last three with another label (kNN-1 must get those wrong)
    test = [(kp, label) for kp, label in train[:6]] + [(kp, (label + 1) % 3) for kp, label in train[6:]]
    data = _prepared(tmp_path, {"train": train, "test": test})
    assert realdata.knn1_baseline(data, []) == pytest.approx(100 * 6 / 9)


def test_training_seconds_sums_the_logged_intervals(tmp_path):
    log = tmp_path / "metrics.jsonl"
    records = [{"kind": "train", "step": 10, "seconds_per_step": 0.5}, {"kind": "eval", "step": 10, "metrics": {}},
               {"kind": "train", "step": 30, "seconds_per_step": 0.25}]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert realdata.training_seconds(log) == pytest.approx(10 * 0.5 + 20 * 0.25)


def test_table_formats_numbers_and_text():
    text = realdata.table([["model", 12.345, ""]], ["name", "top-1", "note"])
    assert text.splitlines() == ["| name | top-1 | note |", "|---|---|---|", "| model | 12.35 |  |"]


def test_validation_split_is_a_fixed_stratified_part_of_train(tmp_path):
    import decoder_vs_head
    from datasets import load_from_disk

    rng = np.random.default_rng(0)
    train = [(rng.normal(size=(10, 1, 25, 3)), i % 3) for i in range(60)]
    data = _prepared(tmp_path, {"train": train, "test": train[:3]})
    out = decoder_vs_head.carve_validation(data, tmp_path / "with_val", fraction=0.2, seed=0)
    parts = load_from_disk(str(out))
    assert set(parts) == {"train", "val"} and len(parts["train"]) == 48 and len(parts["val"]) == 12
    assert sorted(np.bincount(parts["val"]["label"]).tolist()) == [4, 4, 4]  # 20 % of every class
    rows = lambda split: {np.asarray(k).tobytes() for k in parts[split]["keypoint"]}  # noqa: E731
    assert not rows("train") & rows("val")  # disjoint, and together the whole training split
    assert len(rows("train") | rows("val")) == 60
    again = load_from_disk(str(decoder_vs_head.carve_validation(data, tmp_path / "again", fraction=0.2, seed=0)))
    assert rows("val") == {np.asarray(k).tobytes() for k in again["val"]["keypoint"]}  # fixed by its seed


def test_nwucla_quick_run_end_to_end(tmp_path):
    real_data("NW-UCLA")
    result = subprocess.run([sys.executable, "benchmarks/nwucla_recognition.py", "--quick", "--steps", "4",
                             "--workdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| UPS (this toolkit), 3D recognition |" in result.stdout
    saved = json.loads((tmp_path / "results" / "nwucla_recognition.json").read_text())
    assert saved["tasks"]["action_recognition_3d"]["steps"] == 4
    assert set(saved["tasks"]["early_action_prediction"]["metrics"]) >= {"top1@0.1", "top1@1", "top1_mean"}
    assert 0 <= saved["knn1_baseline_top1"] <= 100
