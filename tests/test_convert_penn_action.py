"""Penn Action converter: .mat fields -> (T, 1, 13, 2) pixels + visibility, label set, official split, bad input."""

import argparse
import collections
import shutil

import numpy as np
import pytest
import scipy.io as sio
from conftest import FIXTURES, real_data, run_cli

from ups_toolkit.data.converters.penn_action import PennActionConverter
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.errors import DataFormatError
from ups_toolkit.resources import load_label_set

FIX = FIXTURES / "penn_action"

# docs/datasets.md §2: clips per class
CATALOG_CLASS_COUNTS = {
    "squat": 231, "bowl": 220, "pushup": 211, "pullup": 199, "tennis_serve": 186, "baseball_swing": 173,
    "baseball_pitch": 167, "golf_swing": 166, "tennis_forehand": 157, "bench_press": 140, "jumping_jacks": 112,
    "situp": 100, "strum_guitar": 94, "clean_and_jerk": 88, "jump_rope": 82,
}


def convert(src, out, *options):
    return run_cli("convert", "penn-action", src, out, "--quiet", *options)


def samples_of(src, **options):
    namespace = argparse.Namespace(split=options.pop("split", None), skip_bad=options.pop("skip_bad", False), **options)
    return list(PennActionConverter(src, namespace).samples(progress=False))


def test_label_set_is_the_15_classes_in_alphabetical_order():
    classes = load_label_set("penn_action")
    assert classes == sorted(CATALOG_CLASS_COUNTS)


def test_fixture_conversion_official_split(tmp_path):
    out = tmp_path / "out"
    result = convert(FIX, out, "--split", "official")  # the dataset root: labels/ is found inside
    assert result.returncode == 0, result.stderr
    data = load_prepared(out)
    assert list(data["train"]["sample_id"]) == ["0001", "0003"] and list(data["test"]["sample_id"]) == ["0002"]
    classes = load_label_set("penn_action")
    squat = data["train"][0]
    assert int(squat["label"]) == classes.index("squat") and squat["view"] == "front"
    assert squat["keypoint"].shape == (4, 1, 13, 2) and squat["keypoint_score"].shape == (4, 1, 13)
    t, j = 2, 7  # the fixture's formula: x = 10 j + t + 0.25, y = 100 + 5 j + 2 t + 0.5
    assert squat["keypoint"][t, 0, j].tolist() == [10 * j + t + 0.25, 100 + 5 * j + 2 * t + 0.5]
    score = squat["keypoint_score"][:, 0]
    assert score[1, 12] == 0 and score[3, 0] == 0 and score.sum() == 4 * 13 - 2
    assert squat["img_shape"].tolist() == [270, 480]  # [H, W] from dimensions [H W T]
    assert data["train"][1]["img_shape"].tolist() == [272, 481]
    info = prepared_info(out)
    assert info["layout"] == "penn13" and info["class_names"] == classes


def test_bbox_with_one_row_less_is_ignored():
    (bowl,) = samples_of(FIX / "labels" / "0002.mat")  # bbox has T - 1 rows, as in 1154.mat and 1865.mat
    assert sio.loadmat(FIX / "labels" / "0002.mat")["bbox"].shape == (2, 4)
    assert bowl["keypoint"].shape == (3, 1, 13, 2) and bowl["view"] == "left"


def test_without_split_one_split_all():
    samples = samples_of(FIX / "labels")
    assert [s["_split"] for s in samples] == ["all"] * 3


def fixture_fields(**changes):
    fields = {k: v for k, v in sio.loadmat(FIX / "labels" / "0001.mat").items() if not k.startswith("__")}
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


BAD_FILES = {
    "unknown action": (fixture_fields(action="kayaking"), "action 'kayaking' is not a Penn Action class"),
    "missing key": (fixture_fields(visibility=None), "missing variable(s) 'visibility'"),
    "y rows differ": (fixture_fields(y=np.zeros((3, 13))), "'y' has shape (3, 13), expected (4, 13)"),
    "12 joints": (fixture_fields(x=np.zeros((4, 12))), "'x' has shape (4, 12), expected (T, 13)"),
    "frames disagree": (fixture_fields(dimensions=np.array([[270, 480, 5]], np.uint16)), "'dimensions' says 5 frames"),
    "bad train flag": (fixture_fields(train=np.array([[0]], np.int32)), "'train' is 0, expected 1 (train) or -1"),
    "visibility values": (fixture_fields(visibility=np.full((4, 13), 2, np.uint8)), "only 0 and 1"),
    "nan": (fixture_fields(x=np.full((4, 13), np.nan)), "non-finite coordinates"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_names_file_and_problem(tmp_path, case):
    fields, message = BAD_FILES[case]
    path = tmp_path / "0042.mat"
    sio.savemat(path, fields)
    with pytest.raises(DataFormatError) as err:
        samples_of(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_not_a_mat_file_cli_exits_2_and_leaves_nothing(tmp_path):
    labels = tmp_path / "labels"
    shutil.copytree(FIX / "labels", labels)
    (labels / "0004.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    out = tmp_path / "out"
    result = convert(labels, out, "--split", "official")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "0004.mat" in lines[0], result.stderr
    assert "not a readable MATLAB .mat file" in lines[0]
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))
    # --skip-bad lists it and converts the rest
    result = convert(labels, out, "--split", "official", "--skip-bad")
    assert result.returncode == 0 and "skipped:" in result.stderr and "0004.mat" in result.stderr
    assert sum(len(part) for part in load_prepared(out).values()) == 3


def test_real_penn_action_all_clips():
    root = real_data("PennAction")
    samples = samples_of(root, split="official")  # all 2,326 clips in process (the CLI run below is a subset)
    assert collections.Counter(s["_split"] for s in samples) == {"train": 1258, "test": 1068}
    classes = load_label_set("penn_action")
    assert collections.Counter(classes[s["label"]] for s in samples) == CATALOG_CLASS_COUNTS
    lengths = [len(s["keypoint"]) for s in samples]
    assert (min(lengths), max(lengths)) == (18, 663)
    assert collections.Counter(s["view"] for s in samples) == {"front": 612, "back": 604, "right": 597, "left": 513}
    frames = {s["sample_id"]: len(s["keypoint"]) for s in samples}
    assert (frames["1154"], frames["1865"]) == (72, 73)  # bbox has one row less: converted with all frames


def test_real_penn_action_cli_subset(tmp_path):
    root = real_data("PennAction")
    subset = tmp_path / "labels"
    subset.mkdir()
    for name in ["0001", "0002", "0500", "1154", "1865", "2326"]:
        (subset / f"{name}.mat").symlink_to(root / "labels" / f"{name}.mat")
    out = tmp_path / "penn"
    result = convert(tmp_path, out, "--split", "official")
    assert result.returncode == 0, result.stderr
    data = load_prepared(out)
    assert sum(len(part) for part in data.values()) == 6
    classes = load_label_set("penn_action")
    raw = sio.loadmat(root / "labels" / "0001.mat")  # checked field by field against the .mat file
    clip = data["test"][0]
    assert clip["sample_id"] == "0001" and classes[int(clip["label"])] == "baseball_pitch" and clip["view"] == "back"
    np.testing.assert_array_equal(clip["keypoint"][:, 0, :, 0], raw["x"].astype(np.float32))
    np.testing.assert_array_equal(clip["keypoint"][:, 0, :, 1], raw["y"].astype(np.float32))
    np.testing.assert_array_equal(clip["keypoint_score"][:, 0], raw["visibility"])
    assert clip["img_shape"].tolist() == [360, 480]
