"""Exp-map converter: forward kinematics against hand-summed reference offsets, options, labels, splits, bad input,
and the real CMU exp-map split (docs/datasets.md §4)."""

import numpy as np
import pytest
from conftest import real_data, run_cli

from ups_toolkit.data.cli import main as data_cli
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.skeleton import get_layout
from ups_toolkit.skeleton.kinematics import get_kinematic_skeleton

CMU_UNIT = 0.0564444  # metres per CMU ASF length unit (1/0.45 inch)


def convert(*args) -> int:
    """In-process ``python -m ups_toolkit.data convert expmap ...`` (run_cli covers the subprocess path)."""
    return data_cli(["convert", "expmap", *map(str, args), "--quiet"])


def bone_lengths(positions, parents):
    children = [j for j, p in enumerate(parents) if p >= 0]
    return np.linalg.norm(positions[:, children] - positions[:, [parents[j] for j in children]], axis=-1)


@pytest.fixture(scope="module")
def cmu_fixture(tmp_path_factory):
    from conftest import FIXTURES

    out = tmp_path_factory.mktemp("expmap") / "cmu"
    assert convert(FIXTURES / "expmap" / "cmu", out, "--split", "folders") == 0
    return out


def test_cmu_rest_pose_is_the_summed_offsets(cmu_fixture):
    train = load_prepared(cmu_fixture, "train")
    assert len(train) == 1
    sample = train[0]
    assert sample["sample_id"] == "train/walking/walking_1" and sample["layout"] == "cmu38"
    assert sample["keypoint"].shape == (3, 1, 38, 3) and sample["expmap"].shape == (3, 117)
    layout = get_layout("cmu38")
    assert sample["label"] == 6 and sample["replication"] == 1 and sample["fps"] == 30.0
    root = np.array([10, 16, -30])  # triplet 0 of the file, every rotation zero
    # offsets of the reference table (LearnTrajDep _some_variables_cmu, before its x70), summed by hand
    left_knee = root + np.array([1.65674 + 2.5972, -1.80282 - 7.13576, 0.62477])
    head_end = root + np.array([0.01961 + 0.01021 + 0.00713 + 0.03429 + 0.01305,
                                2.0545 + 2.06436 + 1.56711 + 1.56041 + 1.6256,
                                -0.14112 - 0.05921 + 0.14968 - 0.10006 - 0.05265])
    for t in range(3):
        np.testing.assert_allclose(sample["keypoint"][t, 0, 0], root * CMU_UNIT, rtol=1e-6)
        np.testing.assert_allclose(sample["keypoint"][t, 0, layout.index("left_knee")], left_knee * CMU_UNIT, rtol=1e-6)
        np.testing.assert_allclose(sample["keypoint"][t, 0, layout.index("head_end")], head_end * CMU_UNIT, rtol=1e-6)
    np.testing.assert_array_equal(sample["expmap"][:, :3], np.tile([10, 16, -30], (3, 1)))


def test_cmu_rotations_follow_the_reference_convention(cmu_fixture):
    test = load_prepared(cmu_fixture, "test")
    sample = test[0]
    assert sample["sample_id"] == "test/jumping/jumping_1" and sample["label"] == 3
    layout = get_layout("cmu38")
    knee, ankle = layout.index("left_knee"), layout.index("left_ankle")
    rest_knee = np.array([1.65674 + 2.5972, -1.80282 - 7.13576, 0.62477])
    # frame 1: global exp-map (0, pi/2, 0); the reference multiplies row vectors: (x, y, z) @ Ry -> (-z, y, x)
    np.testing.assert_allclose(sample["keypoint"][1, 0, knee], [-0.62477 * CMU_UNIT, rest_knee[1] * CMU_UNIT,
                                                                rest_knee[0] * CMU_UNIT], rtol=1e-6, atol=1e-9)
    # frame 2: the left knee's own exp-map (pi/2, 0, 0) turns its child: ankle offset (x, y, z) @ Rx -> (x, z, -y)
    np.testing.assert_allclose(sample["keypoint"][2, 0, knee], rest_knee * CMU_UNIT, rtol=1e-6)
    np.testing.assert_allclose(sample["keypoint"][2, 0, ankle] - sample["keypoint"][2, 0, knee],
                               np.array([2.49236, 0.0, 6.8477]) * CMU_UNIT, rtol=1e-5, atol=1e-7)
    # bone lengths never change
    lengths = bone_lengths(sample["keypoint"][:, 0].astype(np.float64), layout.parents)
    np.testing.assert_allclose(lengths, np.broadcast_to(lengths[0], lengths.shape), atol=1e-6)


def test_h36m_rest_pose_rotation_and_protocol(fixtures, tmp_path):
    out = tmp_path / "h36m"
    assert convert(fixtures / "expmap" / "h36m", out, "--split", "h36m") == 0
    info = prepared_info(out)
    assert info["layout"] == "h36m32" and info["splits"] == {"train": 1, "test": 1} and info["fps"] == 50.0
    assert len(info["class_names"]) == 15
    layout = get_layout("h36m32")
    train, test = load_prepared(out, "train")[0], load_prepared(out, "test")[0]
    assert (train["subject"], train["label"], train["replication"]) == ("S1", 0, 1)  # walking
    assert (test["subject"], test["label"], test["replication"]) == ("S5", 1, 2)  # eating
    mm = 0.001
    np.testing.assert_allclose(train["keypoint"][0, 0, layout.index("right_knee")],
                               np.array([-132.948591, -442.894612, 0]) * mm, rtol=1e-6)
    np.testing.assert_allclose(train["keypoint"][0, 0, layout.index("head")],
                               np.array([0, 0.1 + 233.383263 + 257.077681 + 121.134938 + 115.002227, 0]) * mm,
                               rtol=1e-6)
    np.testing.assert_allclose(train["keypoint"][0, 0, layout.index("left_wrist")],
                               np.array([0, 0.1 + 233.383263 + 257.077681 + 151.034226 + 278.882773 + 251.733451, 0])
                               * mm, rtol=1e-6)
    # global rotation pi/2 about y: right hip (-132.9, 0, 0) @ Ry -> (0, 0, -132.9)
    np.testing.assert_allclose(test["keypoint"][1, 0, layout.index("right_hip")], [0, 0, -0.132948591], atol=1e-7)


def test_downsample_zero_root_and_mapping(fixtures, tmp_path):
    src = fixtures / "expmap" / "cmu" / "train"
    out = tmp_path / "ds"
    assert convert(src, out, "--downsample", "2", "--zero-root", "--to-layout", "h36m17") == 0
    sample = load_prepared(out, "all")[0]
    assert prepared_info(out)["fps"] == 15.0 and sample["fps"] == 15.0
    assert sample["keypoint"].shape == (2, 1, 17, 3) and sample["expmap"].shape == (2, 117)  # frames 0 and 2
    np.testing.assert_array_equal(sample["keypoint"][:, 0, 0], 0)  # pelvis at the origin
    left_knee = np.array([1.65674 + 2.5972, -1.80282 - 7.13576, 0.62477]) * CMU_UNIT
    np.testing.assert_allclose(sample["keypoint"][0, 0, get_layout("h36m17").index("left_knee")], left_knee, rtol=1e-6)
    np.testing.assert_array_equal(sample["expmap"][0, :3], [10, 16, -30])  # the file's values are kept


def _write_bad_copy(fixtures, tmp_path, edit):
    rows = [r.split(",") for r in (fixtures / "expmap" / "cmu" / "train" / "walking" / "walking_1.txt").read_text()
            .splitlines()]
    path = tmp_path / "in" / "train" / "walking" / "walking_2.txt"
    path.parent.mkdir(parents=True)
    path.write_text("".join(",".join(r) + "\n" for r in edit(rows)))
    return path


@pytest.mark.parametrize("edit, line, message", [
    (lambda rows: [rows[0], rows[1][:-1], rows[2]], 2, "116 values, expected 117 per line"),
    (lambda rows: [rows[0], rows[1], rows[2][:5] + ["nan"] + rows[2][6:]], 3, "value 5 is nan"),
    (lambda rows: [rows[0], rows[1][:7] + ["0.1x"] + rows[1][8:], rows[2]], 2, "'0.1x' is not a number"),
])
def test_bad_lines_exit_2_naming_file_and_line(fixtures, tmp_path, capsys, edit, line, message):
    path = _write_bad_copy(fixtures, tmp_path, edit)
    out = tmp_path / "out"
    assert convert(tmp_path / "in", out, "--skeleton", "cmu") == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {path}:{line}: {message}"]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_bad_line_through_the_command_line(fixtures, tmp_path):
    path = _write_bad_copy(fixtures, tmp_path, lambda rows: [rows[0], rows[1][:-1], rows[2]])
    out = tmp_path / "out"
    result = run_cli("convert", "expmap", tmp_path / "in", out, "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}:2: 116 values, expected 117 per line"]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_mixed_skeletons_and_unknown_actions_fail_clearly(fixtures, tmp_path, capsys):
    # the first file (cmu/test/...) fixes 117 values per line; the H36M files have 99
    assert convert(fixtures / "expmap", tmp_path / "mixed") == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: {fixtures / 'expmap' / 'h36m' / 'S1' / 'walking_1.txt'}:1: 99 values, expected 117 per line"
    path = tmp_path / "in" / "dancing" / "dancing_1.txt"
    path.parent.mkdir(parents=True)
    path.write_text("0," * 116 + "0\n")
    assert convert(tmp_path / "in", tmp_path / "out") == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {path}: action 'dancing'") and "'cmu_mocap'" in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "mixed").exists()


# ---- real data ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_cmu(tmp_path_factory):
    src = real_data("CMU_mocap_expmap")
    out = tmp_path_factory.mktemp("expmap_real") / "cmu"
    assert convert(src, out, "--split", "folders") == 0
    return src, out


def test_real_cmu_counts_and_frames(real_cmu):
    src, out = real_cmu
    info = prepared_info(out)
    assert info["splits"] == {"test": 6, "train": 32} and info["layout"] == "cmu38"
    frames = {}
    for name in ("train", "test"):
        for sample in load_prepared(out, name):
            path = src / f"{sample['sample_id']}.txt"
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            assert all(len(line.split(",")) == 117 for line in lines)
            assert sample["keypoint"].shape == (len(lines), 1, 38, 3)
            assert sample["expmap"].shape == (len(lines), 117)
            np.testing.assert_array_equal(sample["expmap"][-1], np.array(lines[-1].split(","), dtype=np.float32))
            assert sample["sample_id"].split("/")[0] == name
            assert info["class_names"][sample["label"]] == sample["sample_id"].split("/")[1]
            frames[sample["sample_id"]] = len(lines)
    assert min(frames.values()) == 151 and max(frames.values()) == 3703  # docs/datasets.md §4: 151-3,703 frames
    assert frames["test/washwindow/washwindow_1"] == 2754 and frames["train/walking/walking_1"] == 344
    tests = sorted(k.split("/")[1] for k in frames if k.startswith("test/"))
    assert tests == ["basketball", "jumping", "running", "soccer", "walking", "washwindow"]


def test_real_cmu_bone_lengths_constant(real_cmu):
    _, out = real_cmu
    skeleton = get_kinematic_skeleton("cmu")
    parents = get_layout("cmu38").parents
    expected = np.linalg.norm(skeleton.offsets[1:], axis=1) * skeleton.metres_per_unit
    for sample in load_prepared(out, "test"):
        lengths = bone_lengths(sample["keypoint"][:, 0].astype(np.float64), parents)
        np.testing.assert_allclose(lengths, np.broadcast_to(expected, lengths.shape), atol=2e-6)


def test_real_cmu_downsample_keeps_every_second_frame(real_cmu, tmp_path):
    src, full = real_cmu
    out = tmp_path / "ds"
    assert convert(src / "test" / "running", out, "--downsample", "2") == 0
    sample = load_prepared(out, "all")[0]
    reference = next(s for s in load_prepared(full, "test") if s["sample_id"] == "test/running/running_1")
    assert len(sample["keypoint"]) == (163 + 1) // 2
    np.testing.assert_array_equal(sample["keypoint"], reference["keypoint"][::2])
    np.testing.assert_array_equal(sample["expmap"], reference["expmap"][::2])
