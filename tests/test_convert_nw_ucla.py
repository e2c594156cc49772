"""NW-UCLA JSON converter (``nw-ucla``): fixture in the CTR-GCN layout, bad input, and the real set's catalog counts."""

import functools
import json
import shutil
from collections import Counter

import numpy as np
import pytest
from conftest import FIXTURES, real_data, run_cli
from conftest import make_converter as conftest_make_converter

from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.errors import DataFormatError

FIXTURE = FIXTURES / "nw_ucla"


make_converter = functools.partial(conftest_make_converter, "nw-ucla")


def assert_failed_cleanly(result, out, name):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert name in lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f"{out.name}.*"))


def raw(path):
    return json.loads(path.read_text())


def test_fixture_cross_view(tmp_path):
    out = tmp_path / "ucla"
    result = run_cli("convert", "nw-ucla", FIXTURE, out, "--split", "xview", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warning: kept 1 sequences shorter than 10 frames: a12_s10_e04_v01 (3 frames)" in result.stderr
    dataset = load_prepared(out)
    assert sorted(dataset["train"]["sample_id"]) == ["a01_s01_e00_v01", "a01_s01_e00_v02", "a12_s10_e04_v01"]
    assert sorted(dataset["test"]["sample_id"]) == ["a01_s01_e00_v03", "a08_s03_e02_v03"]
    info = prepared_info(out)
    assert info["layout"] == "kinect_v1_20" and info["num_persons"] == 1 and info["channels"] == 3
    assert info["class_names"][6] == "donning" and len(info["class_names"]) == 10
    for split in ("train", "test"):
        for sample in dataset[split]:
            record = raw(FIXTURE / "all_sqe" / f"{sample['sample_id']}.json")
            expected = np.asarray(record["skeletons"], np.float32)[:, None]
            np.testing.assert_array_equal(sample["keypoint"], expected)
            assert sample["label"] == record["label"] - 1
            action, subject, episode, view = sample["sample_id"].split("_")
            assert (sample["subject"], sample["view"], sample["replication"]) == (subject, view, int(episode[1:]))
            assert sample["layout"] == "kinect_v1_20" and sample["fps"] == 30.0
    labels = dict(zip(dataset["test"]["sample_id"], dataset["test"]["label"]))
    assert labels["a08_s03_e02_v03"] == 6  # a08 is the 7th action id: label 7 -> 6


def test_fixture_without_split_and_short_sequence_warning():
    converter = make_converter(FIXTURE)
    samples = list(converter.samples(progress=False))
    assert len(samples) == 5 and {s["_split"] for s in samples} == {"all"}
    assert converter.warnings == ["a12_s10_e04_v01 (3 frames)"]


def _copy_fixture(tmp_path):
    src = tmp_path / "NW-UCLA"
    shutil.copytree(FIXTURE, src)
    return src


def _rewrite(path, change):
    record = raw(path)
    change(record)
    path.write_text(json.dumps(record))


BAD_CASES = {
    # json.dumps writes float("nan") as the bare NaN token that Python's reader accepts
    "nan": (lambda p: _rewrite(p, lambda r: r["skeletons"][1][3].__setitem__(0, float("nan"))), "non-finite"),
    "wrong_joint_count": (
        lambda p: _rewrite(p, lambda r: r["skeletons"][2].pop()), "frame 2 has 19 joints, expected 20"
    ),
    "truncated": (lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]), "not a readable JSON file"),
    "empty_sequence": (lambda p: _rewrite(p, lambda r: r.update(skeletons=[])), "empty sequence"),
    "label_disagrees_with_name": (lambda p: _rewrite(p, lambda r: r.update(label=3)), "the name says a01"),
    "not_a_coordinate": (lambda p: _rewrite(p, lambda r: r["skeletons"][0].__setitem__(4, [1.0, 2.0])), "joint 4"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_the_file(tmp_path, case):
    src = _copy_fixture(tmp_path)
    bad = src / "all_sqe" / "a01_s01_e00_v02.json"
    damage, message = BAD_CASES[case]
    damage(bad)
    with pytest.raises(DataFormatError, match="a01_s01_e00_v02") as error:
        list(make_converter(src).samples(progress=False))
    assert message in str(error.value)


def test_val_label_cross_check(tmp_path):
    import pickle

    src = _copy_fixture(tmp_path)
    entries = [{"file_name": "a01_s01_e00_v03", "length": 11, "label": 2}]  # the JSON says label 1
    (src / "val_label.pkl").write_bytes(pickle.dumps(entries, protocol=2))
    with pytest.raises(DataFormatError, match="a01_s01_e00_v03.json: val_label.pkl says label 2"):
        list(make_converter(src).samples(progress=False))
    # the same file is found with --val-label and is ignored when SRC is the all_sqe folder itself
    with pytest.raises(DataFormatError, match="val_label.pkl says label 2"):
        list(make_converter(src / "all_sqe", "--val-label", src / "val_label.pkl").samples(progress=False))
    assert len(list(make_converter(src / "all_sqe").samples(progress=False))) == 5


def test_skip_bad_lists_the_file(tmp_path):
    src = _copy_fixture(tmp_path)
    _rewrite(src / "all_sqe" / "a01_s01_e00_v02.json", lambda r: r.update(skeletons=[]))
    converter = make_converter(src, skip_bad=True)
    assert len(list(converter.samples(progress=False))) == 4
    assert len(converter.bad_items) == 1 and "a01_s01_e00_v02.json: empty sequence" in converter.bad_items[0]


@pytest.mark.parametrize("case", ["empty_sequence", "truncated"])
def test_cli_bad_input_exits_2(tmp_path, case):
    src = _copy_fixture(tmp_path)
    BAD_CASES[case][0](src / "all_sqe" / "a12_s10_e04_v01.json")
    out = tmp_path / "out"
    result = run_cli("convert", "nw-ucla", src, out, "--split", "xview", "--quiet")
    assert_failed_cleanly(result, out, "a12_s10_e04_v01.json")


def test_real_nw_ucla_catalog_counts(tmp_path):
    """docs/datasets.md §1: 1,484 sequences; views 516/504/464; xview 1,020/464; class counts; T = 1..201."""
    data = real_data("NW-UCLA")
    out = tmp_path / "ucla"
    result = run_cli("convert", "nw-ucla", data, out, "--split", "xview", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warning: kept 10 sequences shorter than 10 frames" in result.stderr
    assert "a02_s09_e04_v02 (1 frames)" in result.stderr and "a02_s09_e04_v03 (1 frames)" in result.stderr
    dataset = load_prepared(out)
    assert (len(dataset["train"]), len(dataset["test"])) == (1020, 464)
    views = Counter(list(dataset["train"]["view"]) + list(dataset["test"]["view"]))
    assert views == {"v01": 516, "v02": 504, "v03": 464}
    assert set(dataset["test"]["view"]) == {"v03"}
    labels = Counter(int(v) for v in list(dataset["train"]["label"]) + list(dataset["test"]["label"]))
    assert [labels[k] for k in range(10)] == [150, 152, 141, 173, 148, 149, 142, 142, 145, 142]
    lengths = [len(k) for split in ("train", "test") for k in dataset[split]["keypoint"]]
    assert (min(lengths), max(lengths)) == (1, 201)
    assert abs(np.mean(lengths) - 39.4) < 0.05
    assert sum(t < 10 for t in lengths) == 10 and sum(t < 5 for t in lengths) == 2
    # exact values as stored in the raw file (Kinect camera frame, metres)
    ids = list(dataset["train"]["sample_id"])
    first = dataset["train"][ids.index("a01_s01_e00_v01")]
    assert first["keypoint"].shape == (44, 1, 20, 3)
    np.testing.assert_array_equal(first["keypoint"][0, 0, 0], np.float32([-0.619699, 0.328046, 3.18186]))
    np.testing.assert_array_equal(first["keypoint"][0, 0, 1], np.float32([-0.62041, 0.381968, 3.16288]))
    record = raw(data / "all_sqe" / "a01_s01_e00_v01.json")
    np.testing.assert_array_equal(first["keypoint"][:, 0], np.asarray(record["skeletons"], np.float32))
