"""The generic ``arrays`` converter: users' own keypoints as per-sample .npz/.npy files or one packed .npz."""

import shutil

import numpy as np
import pytest
from conftest import FIXTURES, run_cli

from ups_toolkit.data.cli import main
from ups_toolkit.data.prepared import load_prepared
from ups_toolkit.data.safe_pickle import safe_load_npz

ARRAYS = FIXTURES / "arrays"
FOLDER = ARRAYS / "folder"
CLASSES = ARRAYS / "classes.txt"  # clapping, waving, jumping


def convert(src, out, *options):
    """``python -m ups_toolkit.data convert arrays SRC OUT ...`` in-process (subprocess runs use ``run_cli``)."""
    assert main(["convert", "arrays", str(src), str(out), "--quiet", *map(str, options)]) == 0
    return load_prepared(out)


def fails(capsys, src, out, *options) -> str:
    assert main(["convert", "arrays", str(src), str(out), "--quiet", *map(str, options)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert not out.exists()
    return lines[0]


def rows_by_id(dataset):
    return {str(row["sample_id"]): (name, row) for name, part in dataset.items() for row in part}


def numeric(path, key="keypoint"):
    """A numeric array of a fixture, read with numpy's own loader (no pickles involved)."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as data:
        return data[key]


def test_folder_of_files_end_to_end(tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", "arrays", FOLDER, out, "--quiet", "--layout", "coco17", "--class-names", CLASSES)
    assert result.returncode == 0, result.stderr
    dataset = load_prepared(out)
    rows = rows_by_id(dataset)
    # split = first-level folder named train/val/test; files at the top go to 'all'
    assert {k: split for k, (split, _) in rows.items()} == {
        "wave_01": "train", "jump_02": "train", "clap_03": "test", "wave_04": "all",
    }
    # labels: a name in the file, an index in the file, a name and an index from labels.csv
    assert {k: int(row["label"]) for k, (_, row) in rows.items()} == {
        "wave_01": 1, "jump_02": 2, "clap_03": 0, "wave_04": 1,
    }
    assert dataset["train"].features["label"].names == ["clapping", "waving", "jumping"]
    assert dataset["train"].features["keypoint"].shape == (None, 2, 17, 2)  # the most persons in the data: 2
    assert {k: float(row["fps"]) for k, (_, row) in rows.items()} == {
        "wave_01": 30.0, "jump_02": 25.0, "clap_03": 30.0, "wave_04": 30.0,
    }
    files = {"wave_01": "train/wave_01.npz", "jump_02": "train/jump_02.npz", "clap_03": "test/clap_03.npy",
             "wave_04": "wave_04.npy"}
    for sample_id, relative in files.items():
        raw = numeric(FOLDER / relative)
        keypoint = rows[sample_id][1]["keypoint"]
        if raw.ndim == 3:  # (T, V, C): one person
            raw = raw[:, None]
        np.testing.assert_array_equal(keypoint[:, : raw.shape[1]], raw)
        assert not keypoint[:, raw.shape[1]:].any()
        assert str(rows[sample_id][1]["layout"]) == "coco17"


def test_mixed_names_and_indices_need_class_names(tmp_path, capsys):
    line = fails(capsys, FOLDER, tmp_path / "out", "--layout", "coco17")
    assert str(FOLDER) in line and "mix class names and class indices" in line and "--class-names" in line


def test_label_in_file_must_agree_with_mapping(tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(FOLDER, src)
    (src / "labels.csv").write_text("stem,label\nclap_03,clapping\nwave_04,1\nwave_01,jumping\n")
    line = fails(capsys, src, tmp_path / "out", "--layout", "coco17", "--class-names", CLASSES)
    assert "wave_01.npz" in line and "disagrees" in line


def test_labels_json_mapping_and_label_set_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    keypoint = np.linspace(0, 1, 4 * 25 * 3, dtype=np.float32).reshape(4, 25, 3)
    np.save(src / "a.npy", keypoint)
    np.save(src / "b.npy", keypoint[:2])
    (src / "labels.json").write_text('{"a": "drink water", "b": 59}')
    dataset = convert(src, tmp_path / "out", "--layout", "ntu25", "--class-names", "ntu60")["all"]
    assert len(dataset.features["label"].names) == 60
    assert {str(r["sample_id"]): int(r["label"]) for r in dataset} == {"a": 0, "b": 59}
    # the same labels through --labels, names from a JSON list
    (tmp_path / "names.json").write_text('["drink water", "other"]')
    (tmp_path / "map.csv").write_text("a,other\nb,drink water\n")
    (src / "labels.json").unlink()
    dataset = convert(src, tmp_path / "out2", "--layout", "ntu25", "--class-names", tmp_path / "names.json",
                      "--labels", tmp_path / "map.csv")["all"]
    assert {str(r["sample_id"]): int(r["label"]) for r in dataset} == {"a": 1, "b": 0}


def test_packed_object_array(tmp_path):
    raw = safe_load_npz(ARRAYS / "packed_object.npz")
    dataset = convert(ARRAYS / "packed_object.npz", tmp_path / "out", "--layout", "coco17")
    rows = rows_by_id(dataset)
    assert {k: split for k, (split, _) in rows.items()} == {"s0": "train", "s1": "train", "s2": "test"}
    assert dataset["train"].features["label"].names == ["clapping", "waving", "jumping"]
    assert {k: int(row["label"]) for k, (_, row) in rows.items()} == {"s0": 1, "s1": 0, "s2": 1}
    for i, sample_id in enumerate(["s0", "s1", "s2"]):
        sequence = raw["keypoints"][i]
        sequence = sequence[:, None] if sequence.ndim == 3 else sequence
        keypoint = rows[sample_id][1]["keypoint"]
        assert keypoint.shape == (len(sequence), 2, 17, 2)
        np.testing.assert_array_equal(keypoint[:, : sequence.shape[1]], sequence)
        assert float(rows[sample_id][1]["fps"]) == 25.0


def test_packed_padded_array_is_cut_to_lengths(tmp_path):
    padded, scores = numeric(ARRAYS / "packed_padded.npz", "keypoints"), numeric(ARRAYS / "packed_padded.npz",
                                                                               "keypoint_scores")
    dataset = convert(ARRAYS / "packed_padded.npz", tmp_path / "out", "--layout", "ntu25")["all"]
    assert dataset.features["label"].names == ["class_0", "class_1", "class_2"]
    assert [len(k) for k in dataset["keypoint"]] == [6, 4, 2]
    assert list(dataset["label"]) == [0, 2, 1]
    for i, n in enumerate([6, 4, 2]):
        np.testing.assert_array_equal(dataset[i]["keypoint"], padded[i, :n])
        np.testing.assert_array_equal(dataset[i]["keypoint_score"], scores[i, :n])


def test_packed_without_lengths_cuts_trailing_zero_frames(tmp_path):
    padded = np.zeros((2, 5, 17, 2), np.float32)
    padded[0, :3] = 1.0
    padded[1, :5] = 2.0
    padded[0, 1] = 0.0  # an empty frame inside the sequence is kept
    np.savez(tmp_path / "data.npz", keypoints=padded)
    dataset = convert(tmp_path / "data.npz", tmp_path / "out", "--layout", "coco17", "--fps", "50")["all"]
    assert [len(k) for k in dataset["keypoint"]] == [3, 5]
    assert list(dataset["label"]) == [-1, -1] and float(dataset[0]["fps"]) == 50.0
    assert list(dataset["sample_id"]) == ["sample_000000", "sample_000001"]


def test_channel_first_arrays_get_a_clear_error(tmp_path, capsys):
    np.save(tmp_path / "clip.npy", np.zeros((3, 300, 25, 2), np.float32))  # ST-GCN order (C, T, V, M)
    line = fails(capsys, tmp_path / "clip.npy", tmp_path / "out", "--layout", "ntu25")
    assert "clip.npy" in line and "time-first" in line


def test_wrong_joint_count_names_the_file(tmp_path, capsys):
    np.savez(tmp_path / "clip.npz", keypoint=np.ones((4, 18, 2), np.float32))
    line = fails(capsys, tmp_path / "clip.npz", tmp_path / "out", "--layout", "coco17")
    assert "clip.npz" in line and "17 joints" in line and "18" in line


def test_scores_must_be_given_for_every_sample(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "a.npz", keypoint=np.ones((3, 17, 2), np.float32), keypoint_score=np.ones((3, 17), np.float32))
    np.savez(src / "b.npz", keypoint=np.ones((3, 17, 2), np.float32))
    line = fails(capsys, src, tmp_path / "out", "--layout", "coco17")
    assert "b.npz" in line and "keypoint_score" in line


class _CreatesFile:
    """Unpickling this calls open(path, "w"): executing the pickle would create the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_array_with_foreign_global_is_refused(tmp_path):
    marker = tmp_path / "marker"
    sequences = np.empty(2, dtype=object)
    sequences[0], sequences[1] = np.zeros((3, 17, 2), np.float32), _CreatesFile(marker)
    np.savez(tmp_path / "evil.npz", keypoints=sequences)
    result = run_cli("convert", "arrays", tmp_path / "evil.npz", tmp_path / "out", "--quiet", "--layout", "coco17")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "evil.npz" in lines[0] and "refusing to unpickle global" in lines[0]
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [[], ["--layout", "no_such_layout"]])
def test_layout_is_required_and_checked(tmp_path, args):
    result = run_cli("convert", "arrays", FOLDER, tmp_path / "out", "--quiet", *args)
    assert result.returncode == 2
    assert ("--layout" in result.stderr) if not args else ("unknown layout 'no_such_layout'" in result.stderr)
    assert not (tmp_path / "out").exists()
