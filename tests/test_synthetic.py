"""The synthetic demo data: deterministic, well-formed, physically plausible, and with classes that differ."""

import json

import numpy as np
import pytest
from conftest import run_cli

from ups_toolkit.data import synthetic
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.data.synthetic import KINDS, generate_samples, write_synthetic
from ups_toolkit.errors import ConfigError
from ups_toolkit.resources import load_label_set
from ups_toolkit.skeleton import get_layout

NUM_CLASSES = 10
PERSONS = {"ntu25_3d": 2, "h36m17_3d": 1, "h36m17_2d": 1, "untrimmed": 2}
CHANNELS = {"ntu25_3d": 3, "h36m17_3d": 3, "h36m17_2d": 2, "untrimmed": 3}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One synthetic folder, 12 samples per class (9 train / 3 test), shared by the tests that read it back."""
    out = tmp_path_factory.mktemp("synthetic") / "synth"
    return write_synthetic(out, num_per_class=12, seed=3)


def _assert_same_samples(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], np.ndarray):
                assert x[key].dtype == y[key].dtype and np.array_equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


def test_label_set_names_every_motion():
    classes = load_label_set("synthetic")
    assert len(classes) == NUM_CLASSES == len(set(classes))
    assert list(synthetic.class_names()) == classes
    assert set(synthetic.ACTIONS) == set(classes)


@pytest.mark.parametrize("layout", ["ntu25", "h36m17"])
def test_rest_pose_is_rebuilt_by_forward_kinematics_along_the_layout_bones(layout):
    body = synthetic.body_model(layout)
    names = get_layout(layout).joint_names
    rest = np.array([synthetic.REST_POSE[layout][n] for n in names])
    # zero angles give back the rest table: every joint is reached through the layout's bones
    standing = synthetic.forward_kinematics(body, np.zeros((1, len(names), 3)))[0]
    np.testing.assert_allclose(standing, rest, atol=1e-12)
    edges = {frozenset(e) for e in get_layout(layout).bones()}
    assert {frozenset((j, p)) for j, p in enumerate(body.parent) if p >= 0} == edges
    assert names[body.parent.index(-1)] in ("spine_base", "pelvis")
    height = rest[names.index("head"), 1]
    assert 1.55 < height < 1.8  # a plausible adult; the head joint sits below the top of the skull


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_is_bit_identical_another_seed_differs(kind):
    first = list(generate_samples(kind, 2, seed=7))
    _assert_same_samples(first, list(generate_samples(kind, 2, seed=7)))
    other = list(generate_samples(kind, 2, seed=8))
    assert not all(
        a["keypoint"].shape == b["keypoint"].shape and np.array_equal(a["keypoint"], b["keypoint"])
        for a, b in zip(first, other)
    )


def test_a_sample_does_not_depend_on_how_many_are_generated():
    one = list(generate_samples("ntu25_3d", 1, seed=5))
    two = list(generate_samples("ntu25_3d", 2, seed=5))
    _assert_same_samples(one, two[:NUM_CLASSES])


@pytest.mark.parametrize("kind", ["ntu25_3d", "h36m17_3d", "h36m17_2d"])
def test_trimmed_samples_are_well_formed(kind):
    samples = list(generate_samples(kind, 6, seed=0))
    layout = get_layout("ntu25" if kind == "ntu25_3d" else "h36m17")
    assert len(samples) == 6 * NUM_CLASSES
    assert np.bincount([s["label"] for s in samples], minlength=NUM_CLASSES).tolist() == [6] * NUM_CLASSES
    assert len({s["sample_id"] for s in samples}) == len(samples)
    lengths = []
    for s in samples:
        kp = s["keypoint"]
        assert kp.dtype == np.float32 and kp.ndim == 4
        assert kp.shape[1:] == (PERSONS[kind], layout.num_joints, CHANNELS[kind])
        assert np.isfinite(kp).all() and kp[:, 0].any(axis=-1).all()  # the first person is there in every frame
        assert s["layout"] == layout.name and s["fps"] == 30.0 and 0 <= s["label"] < NUM_CLASSES
        lengths.append(len(kp))
    assert 40 <= min(lengths) and max(lengths) <= 120 and len(set(lengths)) > 10


def test_ntu25_second_person_is_independent_or_absent():
    samples = list(generate_samples("ntu25_3d", 10, seed=0))
    second = np.array([s["keypoint"][:, 1].any() for s in samples])
    assert 0.08 <= second.mean() <= 0.35  # about 20 %
    for s in samples:
        kp = s["keypoint"]
        if kp[:, 1].any():
            assert kp[:, 1].any(axis=-1).all()  # present in every frame, not a partial body
            pelvis = kp[:, :, 0]  # spine_base
            assert np.linalg.norm(pelvis[:, 0] - pelvis[:, 1], axis=-1).min() > 0.5  # side by side, not overlapping


@pytest.mark.parametrize("kind", ["ntu25_3d", "h36m17_3d", "untrimmed"])
def test_bodies_are_rigid_and_stand_in_front_of_the_camera(kind):
    layout = get_layout("h36m17" if kind == "h36m17_3d" else "ntu25")
    for s in generate_samples(kind, 2, seed=1):
        body = s["keypoint"][:, 0].astype(np.float64)  # (T, V, 3)
        bones = np.stack([np.linalg.norm(body[:, c] - body[:, p], axis=-1) for c, p in layout.bones()], axis=1)
        # bone lengths stay fixed over time up to the sensor jitter (4 mm per coordinate)
        assert bones.std(axis=0).max() < 0.012
        assert bones.mean(axis=0).max() < 0.6  # no bone longer than a thigh
        assert 1.8 < body[..., 2].min() and body[..., 2].max() < 4.2  # about 3 m from the camera, arms reaching out
        head = body[:, layout.index("head"), 1]
        feet = body[:, [layout.index("left_ankle"), layout.index("right_ankle")], 1].min(axis=1)
        assert ((head - feet) > 0.5).all() and (head - feet).max() < 2.0  # upright or bending, never upside down


def test_2d_samples_are_the_documented_projection_of_the_3d_samples():
    camera = synthetic.camera()
    assert (camera["fx"], camera["fy"], camera["cx"], camera["cy"]) == (1000.0, 1000.0, 960.0, 540.0)
    three = {s["sample_id"]: s for s in generate_samples("h36m17_3d", 3, seed=2)}
    two = list(generate_samples("h36m17_2d", 3, seed=2))
    assert {s["sample_id"] for s in two} == set(three)
    for s in two:
        xyz = three[s["sample_id"]]["keypoint"].astype(np.float64)
        assert s["label"] == three[s["sample_id"]]["label"]
        # an ordinary camera image: u grows to the camera's right (-x), v grows downwards (-y)
        x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
        expected = np.stack([960.0 - 1000.0 * x / z, 540.0 - 1000.0 * y / z], axis=-1)
        np.testing.assert_allclose(s["keypoint"], expected, atol=1e-3)
        assert s["img_shape"] == [1080, 1920]
        assert s["keypoint_score"].shape == s["keypoint"].shape[:3] and (s["keypoint_score"] == 1).all()
        u, v = s["keypoint"][..., 0], s["keypoint"][..., 1]
        assert (u > 0).all() and (u < 1920).all() and (v > 0).all() and (v < 1080).all()
        # facing the camera at rest: the right shoulder appears left of the left shoulder in the image
        layout = get_layout("h36m17")
        assert u[0, 0, layout.index("right_shoulder")] < u[0, 0, layout.index("left_shoulder")]


def test_untrimmed_segments_agree_with_frame_labels():
    sequences = list(generate_samples("untrimmed", 5, seed=4))
    counts = np.zeros(NUM_CLASSES, int)
    for s in sequences:
        frames = len(s["keypoint"])
        labels = np.asarray(s["frame_labels"])
        assert s["label"] == -1 and len(labels) == frames and s["keypoint"].shape[1:] == (2, 25, 3)
        assert not s["keypoint"][:, 1].any()
        segments = s["segments"]
        assert 3 <= len(segments) <= 6
        expected = np.full(frames, -1)
        previous_end = 0
        for seg in segments:
            assert 0 <= seg["start"] < seg["end"] <= frames
            assert seg["start"] - previous_end >= 10  # an idle gap before every action
            assert 40 <= seg["end"] - seg["start"] <= 120
            expected[seg["start"]:seg["end"]] = seg["label"]
            counts[seg["label"]] += 1
            previous_end = seg["end"]
        assert frames - previous_end >= 10
        np.testing.assert_array_equal(labels, expected)
        # actions start and end at rest: across a boundary joints move by the sensor jitter only
        steps = np.linalg.norm(np.diff(s["keypoint"][:, 0], axis=0), axis=-1).max(axis=1)  # (T - 1,) metres
        boundaries = [b for seg in segments for b in (seg["start"], seg["end"])]
        assert steps[np.subtract(boundaries, 1)].max() < 0.06
        assert steps.max() < 0.3  # nothing faster than 9 m/s (a hand swinging up in a jump)
    assert counts.tolist() == [5] * NUM_CLASSES  # every class exactly num_per_class times


EXTREMITIES = ["head", "left_wrist", "right_wrist", "left_knee", "right_knee", "left_ankle", "right_ankle"]


def _features(keypoint: np.ndarray, layout_name: str) -> np.ndarray:
    """Heading-invariant summary of the first person, as mean / std / min / max over time of: the height and the
    horizontal distance of head, wrists, knees and ankles from the root (3D; 2D: image offsets in body heights) and
    the distance between the wrists; plus how far the root rises and falls and how far the shoulder line turns (3D)
    or the horizontal spread of the extremities (2D)."""
    layout = get_layout(layout_name)
    body = keypoint[:, 0].astype(np.float64)  # (T, V, C)
    root = body[:, layout.center[0]]
    rel = body[:, [layout.index(n) for n in EXTREMITIES]] - root[:, None]
    hands = np.linalg.norm(body[:, layout.index("left_wrist")] - body[:, layout.index("right_wrist")], axis=-1)
    if body.shape[-1] == 3:
        channels = [rel[..., 1], np.linalg.norm(rel[..., [0, 2]], axis=-1), hands[:, None]]
        shoulders = body[:, layout.index("left_shoulder")] - body[:, layout.index("right_shoulder")]
        heading = np.unwrap(np.arctan2(shoulders[:, 2], shoulders[:, 0]))
        extra = [np.ptp(root[:, 1]), np.abs(heading[-1] - heading[0])]
    else:
        size = np.ptp(body[0, :, 1])
        channels = [rel[..., 0] / size, rel[..., 1] / size, hands[:, None] / size]
        extra = [np.ptp(root[:, 1]) / size, np.ptp(rel[..., 0]) / size]
    stats = [f(c, axis=0) for c in channels for f in (np.mean, np.std, np.min, np.max)]
    return np.concatenate(stats + [np.array(extra)])


@pytest.mark.parametrize("kind", ["ntu25_3d", "h36m17_3d", "h36m17_2d"])
def test_every_action_is_distinguishable_by_a_nearest_centroid_classifier(written, kind):
    dataset = load_prepared(written / kind)
    layout = prepared_info(written / kind)["layout"]

    def table(split):
        part = dataset[split]
        return np.stack([_features(k, layout) for k in part["keypoint"]]), np.asarray(part["label"])

    x_train, y_train = table("train")
    x_test, y_test = table("test")
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    centroids = np.stack([x_train[y_train == c].mean(0) for c in range(NUM_CLASSES)])
    predicted = np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    per_class = [np.mean(predicted[y_test == c] == c) for c in range(NUM_CLASSES)]
    assert np.mean(predicted == y_test) > 0.8, per_class


def test_written_folder_has_every_kind_with_seeded_stratified_splits(written):
    about = json.loads((written / "ups_synthetic.json").read_text())
    assert about["synthetic"] is True and about["seed"] == 3 and about["num_per_class"] == 12
    assert sorted(p.name for p in written.iterdir()) == sorted([*KINDS, "ups_synthetic.json"])
    assert not list(written.parent.glob("*.tmp-*"))
    classes = load_label_set("synthetic")
    for kind in KINDS:
        info = prepared_info(written / kind)
        assert info["fingerprint"] == synthetic.fingerprint(kind, 12, 3)
        assert info["class_names"] == classes and info["kind"] == kind
        dataset = load_prepared(written / kind)
        assert set(dataset) == {"train", "test"}
        assert dataset["train"].features["label"].names == classes
        if kind != "untrimmed":
            assert np.bincount(dataset["train"]["label"], minlength=10).tolist() == [9] * NUM_CLASSES
            assert np.bincount(dataset["test"]["label"], minlength=10).tolist() == [3] * NUM_CLASSES
    # lifting pairs: the 2D and 3D H36M datasets hold the same motions under the same ids, in the same splits
    for split in ("train", "test"):
        two = load_prepared(written / "h36m17_2d", split)["sample_id"]
        three = load_prepared(written / "h36m17_3d", split)["sample_id"]
        assert list(two) == list(three)
    untrimmed = load_prepared(written / "untrimmed")
    assert sum(len(p) for p in untrimmed.values()) == len(synthetic._untrimmed_plan(12, 3))


def _file_bytes(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_write_synthetic_is_byte_identical_and_refuses_to_overwrite(tmp_path):
    first = write_synthetic(tmp_path / "first", num_per_class=2, seed=3)
    second = write_synthetic(tmp_path / "second", num_per_class=2, seed=3)
    files = _file_bytes(first)
    assert len(files) == 1 + 4 * 8  # ups_synthetic.json + per kind: info, dataset_dict, 2 splits x 3 files
    assert files == _file_bytes(second)
    with pytest.raises(ConfigError, match="already exists"):
        write_synthetic(second, num_per_class=1, seed=0)
    assert _file_bytes(second) == files  # untouched
    write_synthetic(second, num_per_class=1, seed=0, overwrite=True)
    assert prepared_info(second / "ntu25_3d")["num_per_class"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second"]  # no temporary folder left


@pytest.mark.parametrize("kind,n,seed", [("jump", 2, 0), ("ntu25_3d", 0, 0), ("ntu25_3d", 2, -1)])
def test_bad_options_are_refused(kind, n, seed):
    with pytest.raises(ConfigError):
        next(generate_samples(kind, n, seed))


def test_cli_synth_writes_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "demo"
    done = run_cli("synth", out, "--num-per-class", "2", "--seed", "1")
    assert done.returncode == 0, done.stderr
    for kind in KINDS:
        assert f"{out / kind}: layout" in done.stdout
    assert "train: 10 samples" in done.stdout and "test: 10 samples" in done.stdout  # 1 + 1 per class

    again = run_cli("synth", out, "--num-per-class", "3")
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr and str(out) in again.stderr
    assert prepared_info(out / "ntu25_3d")["num_per_class"] == 2

    replaced = run_cli("synth", out, "--num-per-class", "3", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert prepared_info(out / "ntu25_3d")["num_per_class"] == 3

    bad = run_cli("synth", tmp_path / "bad", "--num-per-class", "0")
    assert bad.returncode == 2 and "num_per_class" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
