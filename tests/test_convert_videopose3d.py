"""VideoPose3D converter: paired 2D/3D samples from object-array .npz files, cameras, projection, H36M 32 -> 17,
protocols, bad input, and the real HumanEva-I files (docs/datasets.md §3)."""

import collections
import contextlib
import io

import numpy as np
import pytest
from conftest import FIXTURES, real_data, run_cli

from ups_toolkit.data.cli import main as data_cli
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.data.safe_pickle import safe_load_npz
from ups_toolkit.skeleton import get_layout

HUMANEVA = FIXTURES / "videopose3d" / "humaneva"
H36M = FIXTURES / "videopose3d" / "h36m"
CAMERAS = FIXTURES / "videopose3d" / "cameras.yaml"
H36M_KEPT = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]  # docs/formats.md §15


def convert(*args) -> int:
    """In-process ``python -m ups_toolkit.data convert videopose3d ...`` (run_cli covers the subprocess path)."""
    return data_cli(["convert", "videopose3d", *map(str, args), "--quiet"])


def raw(path, key):
    return safe_load_npz(path)[key].item()


def by_id(dataset):
    return {s["sample_id"]: s for s in dataset}


def test_paired_samples_trimmed_and_labelled(tmp_path):
    out = tmp_path / "he"
    result = run_cli("convert", "videopose3d", HUMANEVA, out, "--split", "humaneva", "--quiet")
    assert result.returncode == 0, result.stderr
    info = prepared_info(out)
    assert info["layout"] == "humaneva15" and info["fps"] == 60.0 and info["splits"] == {"train": 4, "test": 4}
    assert info["class_names"] == ["Walking", "Jog", "Box", "Gestures", "ThrowCatch"]
    positions_3d, positions_2d = raw(HUMANEVA / "data_3d_tiny.npz", "positions_3d"), raw(
        HUMANEVA / "data_2d_tiny_gt.npz", "positions_2d")
    train = by_id(load_prepared(out, "train"))
    assert sorted(train) == ["Train/S1/Box 1 chunk1/cam0", "Train/S1/Box 1 chunk1/cam1",
                             "Train/S1/Walking 1 chunk0/cam0", "Train/S1/Walking 1 chunk0/cam1"]
    walk = train["Train/S1/Walking 1 chunk0/cam1"]
    assert (walk["subject"], walk["view"], walk["label"], walk["layout"]) == ("S1", "1", 0, "humaneva15")
    # the 2D of this chunk has 6 frames, the 3D 4: trimmed to 4
    assert len(positions_2d["Train/S1"]["Walking 1 chunk0"][1]) == 6
    assert walk["keypoint"].shape == (4, 1, 15, 2) and walk["keypoint_3d"].shape == (4, 1, 15, 3)
    np.testing.assert_array_equal(walk["keypoint"][:, 0], positions_2d["Train/S1"]["Walking 1 chunk0"][1][:4])
    np.testing.assert_array_equal(walk["keypoint_3d"][:, 0], positions_3d["Train/S1"]["Walking 1 chunk0"])
    test = by_id(load_prepared(out, "test"))
    assert {s["label"] for s in test.values()} == {1, 3}  # Jog, Gestures
    assert "img_shape" not in load_prepared(out, "test").features


def test_actions_filter(tmp_path):
    out = tmp_path / "he"
    assert convert(HUMANEVA, out, "--split", "humaneva", "--actions", "Walking,Jog,Box") == 0
    assert prepared_info(out)["splits"] == {"train": 4, "test": 2}
    assert {s["sample_id"].split("/")[2] for s in load_prepared(out, "test")} == {"Jog 1 chunk0"}


def test_cameras_put_the_3d_into_each_camera_frame(tmp_path):
    out = tmp_path / "he"
    assert convert(HUMANEVA / "data_3d_tiny.npz", out, "--cameras", CAMERAS) == 0
    world = raw(HUMANEVA / "data_3d_tiny.npz", "positions_3d")["Validate/S2"]["Jog 1 chunk0"].astype(np.float64)
    samples = by_id(load_prepared(out, "all"))
    front, side = samples["Validate/S2/Jog 1 chunk0/cam0"], samples["Validate/S2/Jog 1 chunk0/cam1"]
    # front camera at (0, 0, -3) looking along +z: X_cam = X + (0, 0, 3)
    np.testing.assert_allclose(front["keypoint_3d"][:, 0], world + [0, 0, 3], atol=1e-6)
    # side camera at (3, 0, 0) looking along -x (-90 degrees about y): X_cam = (z, y, 3 - x)
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    np.testing.assert_allclose(side["keypoint_3d"][:, 0], np.stack([z, y, 3 - x], -1), atol=1e-6)
    assert list(front["img_shape"]) == [480, 640]


def test_project_makes_2d_from_3d(tmp_path):
    out = tmp_path / "he"
    assert convert(HUMANEVA, out, "--project", "--cameras", CAMERAS, "--split", "humaneva") == 0
    world = raw(HUMANEVA / "data_3d_tiny.npz", "positions_3d")["Train/S1"]["Walking 1 chunk0"].astype(np.float64)
    samples = by_id(load_prepared(out, "train"))
    front, side = samples["Train/S1/Walking 1 chunk0/cam0"], samples["Train/S1/Walking 1 chunk0/cam1"]
    assert front["keypoint"].shape == (4, 1, 15, 2) and front["source_file"].endswith("data_3d_tiny.npz")
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    expected_front = np.stack([500 * x / (z + 3) + 320, 500 * y / (z + 3) + 240], -1)
    np.testing.assert_allclose(front["keypoint"][:, 0], expected_front, rtol=1e-6)
    u = np.stack([z / (3 - x), y / (3 - x)], -1)  # side camera: X_cam = (z, y, 3 - x)
    r2 = np.sum(u**2, -1, keepdims=True)
    radial = 1 + 0.1 * r2 - 0.05 * r2**2 + 0.01 * r2**3
    tangential = 0.001 * u[..., :1] - 0.002 * u[..., 1:]
    expected_side = np.array([600, 550]) * (u * (radial + tangential) + np.array([0.001, -0.002]) * r2) + [300, 250]
    np.testing.assert_allclose(side["keypoint"][:, 0], expected_side, rtol=1e-6)


def test_h36m_keeps_17_of_32_joints_and_maps_action_names(tmp_path):
    out = tmp_path / "h36m"
    assert convert(H36M, out, "--split", "h36m") == 0
    info = prepared_info(out)
    assert info["layout"] == "h36m17" and info["fps"] == 50.0 and info["splits"] == {"train": 8, "test": 4}
    positions_3d = raw(H36M / "data_3d_h36mtiny.npz", "positions_3d")
    train = by_id(load_prepared(out, "train"))
    walk = train["S1/Walking 1/cam3"]
    np.testing.assert_array_equal(walk["keypoint_3d"][:, 0], positions_3d["S1"]["Walking 1"][:, H36M_KEPT])
    classes = info["class_names"]
    assert classes[walk["label"]] == "walking" and classes[train["S1/Photo/cam0"]["label"]] == "takingphoto"
    test = load_prepared(out, "test")
    assert {classes[s["label"]] for s in test} == {"walkingdog"} and {s["subject"] for s in test} == {"S9"}


def test_to_layout_maps_2d_and_3d_alike(tmp_path):
    out = tmp_path / "mapped"
    assert convert(HUMANEVA, out, "--to-layout", "h36m17") == 0
    sample = by_id(load_prepared(out, "all"))["Train/S1/Box 1 chunk1/cam0"]
    assert sample["keypoint"].shape == (3, 1, 17, 2) and sample["keypoint_3d"].shape == (3, 1, 17, 3)
    world = raw(HUMANEVA / "data_3d_tiny.npz", "positions_3d")["Train/S1"]["Box 1 chunk1"]
    he, h36 = get_layout("humaneva15"), get_layout("h36m17")
    np.testing.assert_array_equal(sample["keypoint_3d"][:, 0, h36.index("left_knee")], world[:, he.index("left_knee")])


# ---- bad input -------------------------------------------------------------------------------------------------
def write_pair(folder, positions_3d, positions_2d, metadata=None):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data_3d_bad.npz", positions_3d=positions_3d)
    np.savez(folder / "data_2d_bad_gt.npz", positions_2d=positions_2d,
             metadata=metadata or {"layout_name": "humaneva15", "num_joints": 15})


def assert_fails(tmp_path, src, *options, expect, subprocess=False):
    """Conversion exits 2 with one error line holding every ``expect`` part, and writes nothing."""
    out = tmp_path / "out"
    if subprocess:
        result = run_cli("convert", "videopose3d", src, out, "--quiet", *options)
        code, stderr = result.returncode, result.stderr
    else:
        buffer = io.StringIO()
        with contextlib.redirect_stderr(buffer):
            code = convert(src, out, *options)
        stderr = buffer.getvalue()
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(part in lines[0] for part in expect), lines
    assert not out.exists() and not list(tmp_path.glob("out.tmp*"))


def test_2d_shorter_than_3d_fails(tmp_path):
    pose = np.zeros((5, 15, 3), np.float32) + 1
    write_pair(tmp_path / "in", {"Train/S1": {"Walking 1 chunk0": pose}},
               {"Train/S1": {"Walking 1 chunk0": [np.ones((5, 15, 2), np.float32), np.ones((4, 15, 2), np.float32)]}})
    assert_fails(tmp_path, tmp_path / "in", subprocess=True,
                 expect=[str(tmp_path / "in" / "data_2d_bad_gt.npz"), "'Train/S1/Walking 1 chunk0/cam1'",
                         "2D has 4 frames but 3D has 5"])


def test_nan_in_3d_fails(tmp_path):
    pose = np.ones((3, 15, 3), np.float32)
    pose[2, 4, 1] = np.nan
    write_pair(tmp_path / "in", {"Train/S1": {"Box 1 chunk0": pose}},
               {"Train/S1": {"Box 1 chunk0": [np.ones((3, 15, 2), np.float32)]}})
    assert_fails(tmp_path, tmp_path / "in", expect=[str(tmp_path / "in" / "data_3d_bad.npz"),
                                                    "'Train/S1/Box 1 chunk0'", "non-finite 3D coordinates",
                                                    "frame 2"])


def test_unsafe_pickle_is_refused(tmp_path):
    write_pair(tmp_path / "in", {"Train/S1": {"Box 1 chunk0": collections.Counter()}}, {})
    assert_fails(tmp_path, tmp_path / "in", expect=["data_3d_bad.npz[positions_3d]", "collections.Counter"])


def test_missing_2d_and_missing_cameras_fail(tmp_path):
    assert_fails(tmp_path, HUMANEVA, "--keypoints", "cpn", expect=["data_2d_tiny_cpn.npz does not exist"])
    assert_fails(tmp_path, HUMANEVA, "--project", expect=["--project needs --cameras"])


# ---- real data -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_humaneva(tmp_path_factory):
    src = real_data("HumanEva_I_videopose3d_npz")
    out = tmp_path_factory.mktemp("vp3d") / "humaneva"
    assert convert(src, out, "--split", "humaneva") == 0
    return src, out


def test_real_humaneva_counts(real_humaneva):
    src, out = real_humaneva
    assert prepared_info(out)["splits"] == {"train": 105, "test": 126}  # 35 / 42 chunks x 3 cameras
    expected = {"train": ({"S1": 9, "S2": 13, "S3": 13}, 4729), "test": ({"S1": 11, "S2": 21, "S3": 10}, 4848)}
    for split, (chunks_per_subject, frames) in expected.items():
        dataset = load_prepared(out, split)
        chunks = collections.defaultdict(set)
        cameras = collections.Counter()
        for sample_id, subject in zip(dataset["sample_id"], dataset["subject"]):
            chunk, camera = sample_id.rsplit("/", 1)
            chunks[subject].add(chunk)
            cameras[chunk] += 1
        assert {s: len(c) for s, c in chunks.items()} == chunks_per_subject
        assert set(cameras.values()) == {3}
        cam0 = [k for k, v in zip(dataset["keypoint"], dataset["view"]) if v == "0"]
        assert sum(len(k) for k in cam0) == frames


def test_real_humaneva_2d_and_3d_lengths_and_values(real_humaneva):
    src, out = real_humaneva
    positions_3d = raw(src / "data_3d_humaneva15.npz", "positions_3d")
    positions_2d = raw(src / "data_2d_humaneva15_gt.npz", "positions_2d")
    for split in ("train", "test"):
        for sample in load_prepared(out, split):
            subject, chunk, camera = sample["sample_id"].rsplit("/", 2)
            raw_3d, raw_2d = positions_3d[subject][chunk], positions_2d[subject][chunk][int(camera[3:])]
            assert len(raw_2d) == len(raw_3d) == len(sample["keypoint"]) == len(sample["keypoint_3d"])
    sample = by_id(load_prepared(out, "train"))["Train/S1/Walking 1 chunk0/cam2"]
    np.testing.assert_array_equal(sample["keypoint"][:, 0], positions_2d["Train/S1"]["Walking 1 chunk0"][2])
    np.testing.assert_array_equal(sample["keypoint_3d"][:, 0], positions_3d["Train/S1"]["Walking 1 chunk0"])
    assert sample["label"] == 0 and sample["fps"] == 60.0


def test_real_humaneva_evaluation_actions(real_humaneva, tmp_path):
    src, _ = real_humaneva
    out = tmp_path / "eval"
    assert convert(src, out, "--split", "humaneva", "--actions", "Walking,Jog,Box") == 0
    positions_3d = raw(src / "data_3d_humaneva15.npz", "positions_3d")
    kept = {split: sum(3 for subject, actions in positions_3d.items() if subject.startswith(prefix)
                       for chunk in actions if chunk.split()[0] in {"Walking", "Jog", "Box"})
            for split, prefix in (("train", "Train/"), ("test", "Validate/"))}
    assert prepared_info(out)["splits"] == kept and 0 < kept["test"] < 126
