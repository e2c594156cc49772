"""JHMDB converter: joint_positions.mat -> (T, 1, 15, 2), class folders, official split lists, pos_world."""

import argparse
import shutil

import numpy as np
import pytest
import scipy.io as sio
from conftest import FIXTURES, real_data, run_cli

from ups_toolkit.data.converters.jhmdb import JHMDBConverter, pos_img_to_world, read_jhmdb_split
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.errors import DataFormatError
from ups_toolkit.resources import load_label_set

FIX = FIXTURES / "jhmdb"
BRUSH_0 = "Brushing_Her_Hair_brush_hair_f_nm_np1_ri_goo_0"
BRUSH_1 = "Brushing_Her_Hair_brush_hair_f_nm_np1_ri_goo_1"
WAVE_0 = "Wave_hello_wave_u_cm_np1_fr_med_0"


def convert(src, out, *options):
    return run_cli("convert", "jhmdb", src, out, "--quiet", *options)


def samples_of(src, **options):
    defaults = dict(coords="img", split_dir=None, split_index=None, skip_bad=False)
    converter = JHMDBConverter(src, argparse.Namespace(**{**defaults, **options}))
    return list(converter.samples(progress=False))


def test_label_set_is_the_21_classes():
    classes = load_label_set("jhmdb")
    assert len(classes) == 21 and classes == sorted(classes)
    assert classes[0] == "brush_hair" and classes[-1] == "wave"


def test_pos_img_to_world_formula():
    pos_img = np.array([[[160.0, 0.0]], [[120.0, 240.0]]])  # (2, 1 joint, 2 frames): frame centre, bottom-left
    scale = np.array([[1.0, 0.5]])
    world = pos_img_to_world(pos_img, scale)
    np.testing.assert_allclose(world[:, 0, 0], [0.0, 0.0])  # the frame centre maps to 0
    np.testing.assert_allclose(world[:, 0, 1], [-0.5 * 320 / 240 / 0.5, 0.5 / 0.5])


def test_fixture_conversion_pixels_without_split(tmp_path):
    out = tmp_path / "out"
    result = convert(FIX / "joint_positions", out)
    assert result.returncode == 0, result.stderr
    clips = load_prepared(out, "all")
    assert list(clips["sample_id"]) == [BRUSH_0, BRUSH_1, WAVE_0]
    classes = load_label_set("jhmdb")
    assert [classes[int(i)] for i in clips["label"]] == ["brush_hair", "brush_hair", "wave"]
    assert list(clips["view"]) == ["S", "NE", "W"]
    clip = clips[1]
    assert clip["keypoint"].shape == (4, 1, 15, 2) and clip["img_shape"].tolist() == [240, 320]
    t, j = 3, 11  # the fixture's formula: u = 100 + 10 j + t, v = 50 + 8 j + 2 t
    assert clip["keypoint"][t, 0, j].tolist() == [100 + 10 * j + t, 50 + 8 * j + 2 * t]
    assert "keypoint_score" not in clips.features
    assert prepared_info(out)["layout"] == "jhmdb15"


def test_world_coordinates_are_the_stored_pos_world(tmp_path):
    out = tmp_path / "out"
    result = convert(FIX / "joint_positions", out, "--coords", "world")
    assert result.returncode == 0, result.stderr
    clip = load_prepared(out, "all")[1]
    raw = sio.loadmat(FIX / "joint_positions" / "brush_hair" / BRUSH_1 / "joint_positions.mat")
    np.testing.assert_array_equal(clip["keypoint"][:, 0], raw["pos_world"].transpose(2, 1, 0).astype(np.float32))
    assert "img_shape" not in clip


def test_world_coordinates_rebuilt_when_pos_world_is_absent(tmp_path):
    raw = sio.loadmat(FIX / "joint_positions" / "wave" / WAVE_0 / "joint_positions.mat")
    path = tmp_path / "wave" / WAVE_0 / "joint_positions.mat"
    path.parent.mkdir(parents=True)
    sio.savemat(path, {"pos_img": raw["pos_img"], "scale": raw["scale"], "viewpoint": "W"})
    (sample,) = samples_of(tmp_path, coords="world")
    np.testing.assert_allclose(sample["keypoint"][:, 0], raw["pos_world"].transpose(2, 1, 0), rtol=1e-6)


@pytest.mark.parametrize("index, train, test", [(1, [BRUSH_0, WAVE_0], [BRUSH_1]), (2, [BRUSH_1], [BRUSH_0, WAVE_0])])
def test_official_split_lists(tmp_path, index, train, test):
    out = tmp_path / "out"
    result = convert(FIX / "joint_positions", out, "--split-dir", FIX / "splits", "--split-index", str(index))
    assert result.returncode == 0, result.stderr
    data = load_prepared(out)
    assert list(data["train"]["sample_id"]) == train and list(data["test"]["sample_id"]) == test


def test_split_list_reader_and_its_errors(tmp_path):
    assert read_jhmdb_split(FIX / "splits" / "brush_hair_test_split1.txt") == {BRUSH_0: "train", BRUSH_1: "test"}
    path = tmp_path / "wave_test_split1.txt"
    path.write_text(f"{WAVE_0}.avi 1\n{WAVE_0}_b.avi 3\n")
    with pytest.raises(DataFormatError, match=r"expected '<video>.avi 1\|2'") as err:
        read_jhmdb_split(path)
    assert err.value.line == 2 and str(path) in str(err.value)
    path.write_text(f"{WAVE_0}.avi 1\n{WAVE_0}.avi 2\n")
    with pytest.raises(DataFormatError, match="listed twice"):
        read_jhmdb_split(path)


def copy_fixture(tmp_path):
    root = tmp_path / "jhmdb"
    shutil.copytree(FIX, root)
    return root


def test_split_problems_name_the_split_file(tmp_path):
    root = copy_fixture(tmp_path)
    (root / "splits" / "wave_test_split1.txt").unlink()
    with pytest.raises(DataFormatError, match="no split list for class 'wave'") as err:
        samples_of(root / "joint_positions", split_dir=str(root / "splits"))
    assert "wave_test_split1.txt" in str(err.value)
    (root / "splits" / "wave_test_split1.txt").write_text("Other_clip.avi 1\n")
    with pytest.raises(DataFormatError, match=f"video {WAVE_0}.avi is not listed"):
        samples_of(root / "joint_positions", split_dir=str(root / "splits"))


BAD_FILES = {
    "missing pos_img": ({"pos_world": np.zeros((2, 15, 3)), "viewpoint": "S"}, "missing variable(s) 'pos_img'"),
    "14 joints": ({"pos_img": np.zeros((2, 14, 3)), "viewpoint": "S"}, "'pos_img' has shape (2, 14, 3), expected (2, 15, T)"),
    "text pos_img": ({"pos_img": "abc", "viewpoint": "S"}, "'pos_img' must be numeric"),
    "inf": ({"pos_img": np.full((2, 15, 3), np.inf), "viewpoint": "S"}, "non-finite coordinates"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_names_file_and_problem(tmp_path, case):
    fields, message = BAD_FILES[case]
    path = tmp_path / "wave" / "clip_0" / "joint_positions.mat"
    path.parent.mkdir(parents=True)
    sio.savemat(path, fields)
    with pytest.raises(DataFormatError) as err:
        samples_of(tmp_path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_unknown_class_folder_cli_exits_2_and_leaves_nothing(tmp_path):
    root = copy_fixture(tmp_path)
    shutil.copytree(root / "joint_positions" / "wave", root / "joint_positions" / "juggle")
    out = tmp_path / "out"
    result = convert(root / "joint_positions", out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "juggle" in lines[0] and "joint_positions.mat" in lines[0] and "not a JHMDB class" in lines[0]
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))


def test_option_errors(tmp_path):
    out = tmp_path / "out"
    result = convert(FIX / "joint_positions", out, "--split-index", "2")
    assert result.returncode == 2 and "--split-index needs --split-dir" in result.stderr
    assert not out.exists()


def test_real_brush_hair(tmp_path):
    root = real_data("JHMDB_joint_positions_brush_hair")
    out = tmp_path / "out"
    result = convert(root, out)
    assert result.returncode == 0, result.stderr
    clips = load_prepared(out, "all")
    assert len(clips) == 41
    assert {len(k) for k in clips["keypoint"]} == {40}
    assert {int(i) for i in clips["label"]} == {load_label_set("jhmdb").index("brush_hair")}
    views = sorted(clips["view"])
    assert {v: views.count(v) for v in set(views)} == {"S": 17, "N": 17, "NE": 3, "SE": 1, "NNW": 1, "NW": 1, "SW": 1}
    raw = sio.loadmat(root / "brush_hair" / clips[0]["sample_id"] / "joint_positions.mat")
    np.testing.assert_array_equal(clips[0]["keypoint"][:, 0], raw["pos_img"].transpose(2, 1, 0).astype(np.float32))


def test_real_pos_world_is_the_normalised_pos_img():
    root = real_data("JHMDB_joint_positions_brush_hair")
    files = sorted(root.glob("brush_hair/*/joint_positions.mat"))
    assert len(files) == 41
    worst = 0.0
    for path in files:
        raw = sio.loadmat(path)
        worst = max(worst, float(np.abs(pos_img_to_world(raw["pos_img"], raw["scale"]) - raw["pos_world"]).max()))
    assert worst <= 1e-12
