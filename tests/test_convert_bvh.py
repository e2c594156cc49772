"""BVH converter: hierarchy and motion parsing, forward kinematics, layout check, CLI, bad input, real CMU files."""

import numpy as np
import pytest
from conftest import real_data, run_cli

from ups_toolkit.data.cli import main as data_cli
from ups_toolkit.data.converters.bvh import bvh_positions, read_bvh
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.errors import DataFormatError
from ups_toolkit.skeleton import get_layout

CGSPEED_METRES_PER_UNIT = 0.0564444


def convert(*args) -> int:
    """In-process ``python -m ups_toolkit.data convert bvh ...`` (run_cli covers the subprocess path)."""
    return data_cli(["convert", "bvh", *map(str, args), "--quiet"])


def bone_lengths(positions, parents):
    """(T, V, 3) -> (T, V-1) distances of every joint to its parent (root left out)."""
    children = [j for j, p in enumerate(parents) if p >= 0]
    return np.linalg.norm(positions[:, children] - positions[:, [parents[j] for j in children]], axis=-1)


def test_chain_hierarchy_and_motion(fixtures):
    motion = read_bvh(fixtures / "bvh" / "chain" / "chain2.bvh")  # mixed CRLF / LF, trailing spaces
    assert [j.name for j in motion.joints] == ["Hips", "Knee", "Knee_end"]
    assert [j.parent for j in motion.joints] == [-1, 0, 1]
    assert motion.joints[0].channels == ["xposition", "yposition", "zposition", "zrotation", "yrotation", "xrotation"]
    assert motion.joints[1].channels == ["zrotation", "xrotation", "yrotation"]
    assert motion.values.shape == (4, 9)
    assert motion.fps == 30.0


def test_chain_forward_kinematics_by_hand(fixtures):
    # Hips offset 0, Knee offset (0, -2, 0), End Site offset (0, -3, 0); rotations in degrees.
    positions = bvh_positions(read_bvh(fixtures / "bvh" / "chain" / "chain2.bvh"), end_sites=True)
    expected = [
        # frame 0: root at (1, 2, 3), no rotation
        [[1, 2, 3], [1, 0, 3], [1, -3, 3]],
        # frame 1: root at (0, 10, 0) turned 90 degrees about z: (0, -1, 0) -> (1, 0, 0)
        [[0, 10, 0], [2, 10, 0], [5, 10, 0]],
        # frame 2: knee Z 90 then X 90 (listed order Z X Y): R = Rz Rx, Rx turns (0, -3, 0) into (0, 0, -3),
        # which Rz keeps; the other order would give (3, 0, 0)
        [[0, 0, 0], [0, -2, 0], [0, -2, -3]],
        # frame 3: root Z 90, X 90 (order Z Y X): R = Rz Rx sends (0, -1, 0) to (0, 0, -1)
        [[0, 0, 0], [0, 0, -2], [0, 0, -5]],
    ]
    np.testing.assert_allclose(positions, expected, atol=1e-12)
    without_end = bvh_positions(read_bvh(fixtures / "bvh" / "chain" / "chain2.bvh"))
    np.testing.assert_allclose(without_end, np.array(expected)[:, :2], atol=1e-12)


def test_cli_converts_cgspeed_hierarchy(fixtures, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", "bvh", fixtures / "bvh" / "cmu", out, "--quiet", "--scale", "0.5")
    assert result.returncode == 0, result.stderr
    info = prepared_info(out)
    assert info["layout"] == "cmu_bvh31" and info["fps"] == 120.0
    sample = load_prepared(out, "all")[0]
    assert sample["sample_id"] == "cmu_tiny" and sample["label"] == -1 and sample["fps"] == 120.0
    keypoint = sample["keypoint"]
    assert keypoint.shape == (2, 1, 31, 3) and keypoint.dtype == np.float32
    layout = get_layout("cmu_bvh31")
    # frame 0 has no rotation: the rest pose at the root position (1, 16, -2), halved by --scale 0.5
    left_toe = np.array([1, 16, -2]) + [1, -1, 0] + [0, -4, 0] + [0, -4, 0] + [0, -1, 2]
    np.testing.assert_allclose(keypoint[0, 0, layout.index("LeftToe")], 0.5 * left_toe)
    right_wrist = np.array([1, 16, -2]) + [0, 2, 0] + [0, 2, 0] + [-3, 1, 0] + [-3, 0, 0] + [-3, 0, 0]
    np.testing.assert_allclose(keypoint[0, 0, layout.index("RightWrist")], 0.5 * right_wrist)
    # frame 1 rotates root, left knee and right shoulder: bones keep their lengths
    lengths = bone_lengths(keypoint[:, 0].astype(np.float64), layout.parents)
    np.testing.assert_allclose(lengths[1], lengths[0], atol=1e-6)


def test_cli_end_sites_and_layout_mapping(fixtures, tmp_path):
    out = tmp_path / "out"
    assert convert(fixtures / "bvh" / "cmu" / "cmu_tiny.bvh", out, "--end-sites") == 0
    sample = load_prepared(out, "all")[0]
    assert prepared_info(out)["layout"] == "cmu_bvh38" and sample["keypoint"].shape == (2, 1, 38, 3)
    layout = get_layout("cmu_bvh38")
    head, head_end = (sample["keypoint"][0, 0, layout.index(n)] for n in ("Head", "Head_end"))
    np.testing.assert_allclose(head_end - head, [0, 1, 0])  # End Site OFFSET 0 1 0, no rotation in frame 0

    mapped = tmp_path / "mapped"
    assert convert(fixtures / "bvh" / "cmu" / "cmu_tiny.bvh", mapped, "--to-layout", "h36m17") == 0
    h36m = load_prepared(mapped, "all")[0]["keypoint"]
    assert h36m.shape == (2, 1, 17, 3)
    original = load_prepared(out, "all")[0]["keypoint"]
    np.testing.assert_allclose(h36m[:, 0, get_layout("h36m17").index("left_knee")],
                               original[:, 0, layout.index("LeftKnee")])


def test_skeleton_not_matching_the_layout_fails_clearly(fixtures, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", "bvh", fixtures / "bvh" / "chain" / "chain2.bvh", out, "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "chain2.bvh" in lines[0]
    assert "2 joints" in lines[0] and "layout 'cmu_bvh31' has 31" in lines[0] and "--layout" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _corrupt(fixtures, tmp_path, edit):
    lines = (fixtures / "bvh" / "cmu" / "cmu_tiny.bvh").read_bytes().decode().splitlines(keepends=True)
    path = tmp_path / "in" / "bad.bvh"
    path.parent.mkdir()
    path.write_text("".join(edit(lines)), newline="")
    return path, len(lines)


@pytest.mark.parametrize("edit, message, line_of", [
    (lambda ls: ls[:-1], "file ends early: 'Frames: 2' announced, 1 motion lines found", lambda n: n),
    (lambda ls: ls[:-1] + [ls[-1].rstrip() + " 7\n"], "frame 1 has 97 values, expected 96", lambda n: n),
    (lambda ls: ls[:-1] + [ls[-1].replace("45", "nan", 1)], "frame 1: value 12 is nan", lambda n: n),
    (lambda ls: ls[:-1] + [ls[-1].replace("45", "4x5", 1)], "frame 1: '4x5' is not a number", lambda n: n),
    (lambda ls: ls + [ls[-1]], "more motion lines than 'Frames: 2'", lambda n: n + 1),
])
def test_bad_motion_exits_2_naming_file_and_line(fixtures, tmp_path, capsys, edit, message, line_of):
    path, num_lines = _corrupt(fixtures, tmp_path, edit)
    with pytest.raises(DataFormatError, match=message) as error:
        read_bvh(path)
    assert error.value.line == line_of(num_lines) and error.value.file == path
    out = tmp_path / "out"
    assert convert(path.parent, out) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:{line_of(num_lines)}: ") and message in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_truncated_motion_exits_2_with_one_line_and_no_output(fixtures, tmp_path):
    path, num_lines = _corrupt(fixtures, tmp_path, lambda ls: ls[:-1])
    out = tmp_path / "out"
    result = run_cli("convert", "bvh", path.parent, out, "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}:{num_lines}: file ends early: 'Frames: 2' announced, 1 motion lines found (truncated file?)"
    ]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_bad_hierarchy_names_the_line(fixtures, tmp_path):
    path, _ = _corrupt(fixtures, tmp_path, lambda ls: [l.replace("CHANNELS 3 Zrotation Yrotation Xrotation",
                                                                 "CHANNELS 3 Zrotation Yrotation Wrotation", 1)
                                                       for l in ls])
    with pytest.raises(DataFormatError, match="unknown channel 'Wrotation' of joint 'LHipJoint'") as error:
        read_bvh(path)
    assert error.value.line == 9


# ---- real data: CMU subject 131 in the cgspeed conversion (docs/datasets.md §10) ------------------------------
@pytest.fixture(scope="module")
def converted_cmu(tmp_path_factory):
    src = real_data("CMU_mocap_samples") / "bvh"
    out = tmp_path_factory.mktemp("bvh") / "cmu"
    assert convert(src, out) == 0
    return src, load_prepared(out, "all")


def test_real_cmu_counts(converted_cmu):
    _, dataset = converted_cmu
    assert list(dataset["sample_id"]) == ["131_01", "131_02", "131_03"]
    assert [len(k) for k in dataset["keypoint"]] == [994, 1247, 1102]
    assert list(dataset["fps"]) == [120.0, 120.0, 120.0]
    assert all(k.shape[1:] == (1, 31, 3) for k in dataset["keypoint"])
    assert list(dataset["subject"]) == ["131"] * 3


def test_real_cmu_forward_kinematics_keeps_bone_lengths(converted_cmu):
    src, dataset = converted_cmu
    parents = get_layout("cmu_bvh31").parents
    for sample in dataset:
        motion = read_bvh(sample["source_file"])
        offsets = np.array([j.offset for j in motion.joints if not j.end_site])
        lengths = bone_lengths(sample["keypoint"][:, 0].astype(np.float64), parents)
        expected = np.linalg.norm(offsets[[j for j, p in enumerate(parents) if p >= 0]], axis=1)
        # float32 storage of positions of magnitude ~30 units: 1e-5 absolute
        np.testing.assert_allclose(lengths, np.broadcast_to(expected, lengths.shape), atol=1e-4)
        # cgspeed units: the hips stand about 0.95 m high (16.9 units x 0.0564 m)
        assert 0.8 < np.median(sample["keypoint"][:, 0, 0, 1]) * CGSPEED_METRES_PER_UNIT < 1.1
