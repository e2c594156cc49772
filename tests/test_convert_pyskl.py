"""pyskl / mmaction2 annotation pickles: layouts, float16, scores, splits from the file, the restricted unpickler."""

import pickle

import numpy as np
import pytest
from conftest import FIXTURES, real_data, run_cli

from ups_toolkit.data.cli import main
from ups_toolkit.data.prepared import load_prepared
from ups_toolkit.data.safe_pickle import safe_load_pickle

PYSKL = FIXTURES / "pyskl"
NTU_IDS = ["S001C001P001R001A001", "S001C002P002R001A050", "S001C001P003R001A010", "S001C003P003R002A024"]


def convert(src, out, *options):
    """``python -m ups_toolkit.data convert pyskl SRC OUT ...`` in-process (subprocess runs: see ``run_cli`` below)."""
    assert main(["convert", "pyskl", str(src), str(out), "--quiet", *map(str, options)]) == 0
    return load_prepared(out)


def fails(capsys, src, out, *options) -> str:
    """Run a conversion that must fail: exit 2, one error line, no output folder. Returns the line."""
    assert main(["convert", "pyskl", str(src), str(out), "--quiet", *map(str, options)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert not out.exists() and not list(out.parent.glob(f"{out.name}.tmp-*"))
    return lines[0]


def annotations(name):
    return {a["frame_dir"]: a for a in safe_load_pickle(PYSKL / name)["annotations"]}


def ids(dataset):
    return {name: sorted(str(s) for s in part["sample_id"]) for name, part in dataset.items()}


def write_pickle(path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def test_ntu_3d_float16_to_time_first_float32(tmp_path):
    dataset = convert(PYSKL / "ntu60_3d.pkl", tmp_path / "out")["all"]
    raw = annotations("ntu60_3d.pkl")
    assert raw["S001C001P001R001A001"]["keypoint"].dtype == np.float16
    assert dataset.features["keypoint"].shape == (None, 2, 25, 3)  # persons padded to the most in the file
    assert "keypoint_score" not in dataset.features
    assert dataset.features["label"].names == [f"class_{i}" for i in range(50)]  # up to the largest label, 49
    assert sorted(str(s) for s in dataset["sample_id"]) == sorted(NTU_IDS)
    for row in dataset:
        ann = raw[str(row["sample_id"])]
        m, t = ann["keypoint"].shape[:2]
        assert row["keypoint"].dtype == np.float32 and row["keypoint"].shape == (t, 2, 25, 3)
        np.testing.assert_array_equal(row["keypoint"][:, :m], ann["keypoint"].transpose(1, 0, 2, 3).astype(np.float32))
        assert not row["keypoint"][:, m:].any()
        assert int(row["label"]) == ann["label"] and str(row["layout"]) == "ntu25"
    row = next(r for r in dataset if r["sample_id"] == "S001C003P003R002A024")
    assert (str(row["subject"]), str(row["view"]), int(row["setup"]), int(row["replication"])) == ("P003", "C003", 1, 2)


@pytest.mark.parametrize(
    "prefix, expected",
    [
        ("xsub", {"train": ["S001C001P001R001A001", "S001C002P002R001A050"],
                  "test": ["S001C001P003R001A010", "S001C003P003R002A024"]}),
        ("xview", {"train": ["S001C002P002R001A050", "S001C003P003R002A024"],
                   "test": ["S001C001P001R001A001", "S001C001P003R001A010"]}),
    ],
)
def test_split_prefix_picks_the_files_split_lists(tmp_path, prefix, expected):
    # xsub_train -> train, xsub_val -> test (the file has no xsub_test list)
    assert ids(convert(PYSKL / "ntu60_3d.pkl", tmp_path / "out", "--split", prefix)) == expected


def test_label_set_gives_class_names(tmp_path):
    dataset = convert(PYSKL / "ntu60_3d.pkl", tmp_path / "out", "--label-set", "ntu60")["all"]
    names = dataset.features["label"].names
    assert len(names) == 60 and names[0] == "drink water"


def test_hrnet_2d_scores_img_shape_and_numbered_splits(tmp_path):
    raw = annotations("hmdb51_2d.pkl")
    dataset = convert(PYSKL / "hmdb51_2d.pkl", tmp_path / "out", "--split", "1")
    assert ids(dataset) == {"train": ["brush_hair_clip_01", "cartwheel_clip_07"], "test": ["chew_clip_03"]}
    train = dataset["train"]
    assert train.features["keypoint"].shape == (None, 3, 17, 2)  # coco17 inferred from V = 17, C = 2
    for row in list(train) + list(dataset["test"]):
        ann = raw[str(row["sample_id"])]
        m = ann["keypoint"].shape[0]
        assert str(row["layout"]) == "coco17" and row["img_shape"].tolist() == [240, 320]
        np.testing.assert_array_equal(row["keypoint"][:, :m], ann["keypoint"].transpose(1, 0, 2, 3))
        np.testing.assert_array_equal(row["keypoint_score"][:, :m], ann["keypoint_score"].transpose(1, 0, 2))
        assert not row["keypoint_score"][:, m:].any()
    assert ids(convert(PYSKL / "hmdb51_2d.pkl", tmp_path / "two", "--split", "2")) == {
        "train": ["cartwheel_clip_07", "chew_clip_03"], "test": ["brush_hair_clip_01"]
    }


def test_num_persons_keeps_the_first_persons(tmp_path):
    raw = annotations("hmdb51_2d.pkl")["cartwheel_clip_07"]
    assert raw["keypoint"].shape[0] == 3
    dataset = convert(PYSKL / "hmdb51_2d.pkl", tmp_path / "out", "--num-persons", "2")["all"]
    row = next(r for r in dataset if r["sample_id"] == "cartwheel_clip_07")
    assert row["keypoint"].shape == (3, 2, 17, 2)
    np.testing.assert_array_equal(row["keypoint"], raw["keypoint"][:2].transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(row["keypoint_score"], raw["keypoint_score"][:2].transpose(1, 0, 2))


def test_unknown_split_prefix_lists_the_files_protocols(tmp_path, capsys):
    line = fails(capsys, PYSKL / "ntu60_3d.pkl", tmp_path / "out", "--split", "xset")
    assert "ntu60_3d.pkl" in line and "--split 'xset'" in line and "protocol prefixes: xsub, xview" in line


def test_plain_split_names_and_ambiguous_layout(tmp_path, capsys):
    rng = np.random.default_rng(0)
    anns = [{"frame_dir": f"clip{i}", "label": i % 2, "total_frames": 3,
             "keypoint": rng.normal(size=(1, 3, 17, 3)).astype(np.float32)} for i in range(4)]
    path = write_pickle(tmp_path / "h36m.pkl", {"split": {"train": ["clip0", "clip1"], "val": ["clip2"],
                                                          "test": ["clip3"]}, "annotations": anns})
    # 17 joints with 3 channels may be H36M-17 3D or COCO-17 with a score channel: the user must say
    line = fails(capsys, path, tmp_path / "out")
    assert "h36m.pkl" in line and "--layout" in line
    dataset = convert(path, tmp_path / "out", "--layout", "h36m17")
    # plain train/val/test names are used without --split; val stays val because a test list exists
    assert ids(dataset) == {"train": ["clip0", "clip1"], "val": ["clip2"], "test": ["clip3"]}
    assert str(dataset["val"][0]["layout"]) == "h36m17"


def test_bare_annotation_list_is_one_split(tmp_path):
    kp = np.arange(2 * 25 * 3, dtype=np.float32).reshape(1, 2, 25, 3)
    path = write_pickle(tmp_path / "old.pkl", [{"frame_dir": "a", "label": 0, "keypoint": kp}])
    row = convert(path, tmp_path / "out")["all"][0]
    np.testing.assert_array_equal(row["keypoint"], kp.transpose(1, 0, 2, 3))


def test_kpfile_annotations_are_refused_with_a_clear_error(tmp_path, capsys):
    line = fails(capsys, PYSKL / "k400_kpfile.pkl", tmp_path / "out")
    assert "k400_kpfile.pkl" in line and "kpfiles" in line and "not supported" in line


def test_real_kinetics_pyskl_sample_is_refused(tmp_path):
    path = real_data("Kinetics_skeleton_samples") / "pyskl_style" / "k400_pyskl_style_annotation_sample.pkl"
    result = run_cli("convert", "pyskl", path, tmp_path / "out", "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "kpfiles" in lines[0]
    assert list(tmp_path.iterdir()) == []


class _CreatesFile:
    """Unpickling this calls open(path, "w"): executing the pickle would create the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    # control: the payload is live (plain pickle on our own bytes, never on user files) ...
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_CreatesFile(control), protocol=2)).close()
    assert control.exists()
    # ... but the converter refuses it before anything is executed
    marker = tmp_path / "marker"
    kp = np.zeros((1, 2, 25, 3), np.float16)
    annotation = {"frame_dir": "x", "label": 0, "keypoint": kp, "meta": _CreatesFile(marker)}
    payload = {"split": {}, "annotations": [annotation]}
    path = write_pickle(tmp_path / "evil.pkl", payload)
    result = run_cli("convert", "pyskl", path, tmp_path / "out", "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "refusing to unpickle global" in lines[0]
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
