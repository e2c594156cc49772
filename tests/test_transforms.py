"""Skeleton transforms: determinism, the D2 resize rule against torch, modalities, view normalisation, augmentations
and building pipelines from config dicts."""

import numpy as np
import pytest
import torch

from ups_toolkit.errors import ConfigError
from ups_toolkit.skeleton import get_layout
from ups_toolkit.skeleton.transforms import (
    Bone,
    Compose,
    CropResize,
    Flip,
    JointLinearMap,
    JointMask,
    Motion,
    PreNormalize2D,
    PreNormalize3D,
    RandomApply,
    RandomChoice,
    Resize,
    Rotate,
    Shear,
    Streams,
    TransformInputError,
    build_transforms,
    resize_frames,
)

USDRL_VIEW = [
    {"type": "CropResize", "size": 64, "min_ratio": 0.1, "max_ratio": 1.0},
    {"type": "RandomChoice", "weights": [0.25, 0.25, 0.5], "transforms": [
        {"type": "JointMask", "ratio": 0.6},
        {"type": "JointLinearMap", "ratio": 0.6},
        {"type": "Shear", "magnitude": 1.0},
    ]},
]


def make_sample(t=80, m=2, layout="ntu25", c=3, seed=0, score=False, absent_person=True):
    """Random non-zero joints; with ``absent_person`` person 2 is missing in the first quarter of the frames."""
    v = get_layout(layout).num_joints
    rng = np.random.default_rng(seed)
    kp = rng.normal(size=(t, m, v, c)).astype(np.float32) + 2.0
    if absent_person and m > 1:
        kp[: t // 4, 1] = 0
    sample = {"keypoint": kp, "layout": layout, "label": 3, "sample_id": f"s{seed}"}
    if score:
        sample["keypoint_score"] = rng.uniform(0.1, 1.0, size=(t, m, v)).astype(np.float32)
    return sample


def torch_resize(x: np.ndarray, size: int) -> np.ndarray:
    """Reference: F.interpolate over time of every (person, joint, channel) series."""
    n = x.shape[0]
    series = torch.from_numpy(x.reshape(n, -1).T.copy())[None]  # (1, M*V*C, n)
    out = torch.nn.functional.interpolate(series, size=size, mode="linear", align_corners=False)[0]
    return out.T.reshape((size,) + x.shape[1:]).numpy()


# ---------------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_result_other_seed_differs():
    pipeline = build_transforms(
        [{"type": "PreNormalize3D"}, *USDRL_VIEW, {"type": "Rotate", "max_angle": 0.3},
         {"type": "RandomApply", "p": 0.5, "transform": {"type": "Flip"}}]
    )
    sample = make_sample(t=120, score=True)
    before = sample["keypoint"].copy()
    a = pipeline(sample, np.random.default_rng(7))
    b = pipeline(sample, np.random.default_rng(7))
    c = pipeline(sample, np.random.default_rng(8))
    np.testing.assert_array_equal(a["keypoint"], b["keypoint"])
    np.testing.assert_array_equal(a["keypoint_score"], b["keypoint_score"])
    assert not np.allclose(a["keypoint"], c["keypoint"])
    assert a["keypoint"].shape == (64, 2, 25, 3) and a["keypoint"].dtype == np.float32
    np.testing.assert_array_equal(sample["keypoint"], before)  # the input is never modified
    assert a["label"] == 3 and a["layout"] == "ntu25"


def test_random_transform_without_generator_is_rejected():
    with pytest.raises(TypeError, match="CropResize is random"):
        CropResize(size=8)(make_sample())


# ---------------------------------------------------------------------------------------------------- temporal


@pytest.mark.parametrize("n, size", [(1, 64), (2, 64), (5, 64), (37, 64), (64, 64), (100, 64), (300, 64), (7, 3)])
def test_resize_equals_torch_linear_interpolation(n, size):
    x = np.random.default_rng(n).normal(size=(n, 2, 25, 3)).astype(np.float32)
    out = Resize(size=size)({"keypoint": x, "layout": "ntu25"})["keypoint"]
    assert out.shape == (size, 2, 25, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, torch_resize(x, size), rtol=1e-5, atol=1e-5)


def test_resize_moves_scores_and_frame_labels_along():
    sample = make_sample(t=10, score=True)
    sample["frame_labels"] = np.arange(10)
    out = Resize(size=20)(sample)
    np.testing.assert_allclose(out["keypoint_score"], torch_resize(sample["keypoint_score"], 20), atol=1e-6)
    # nearest source frame under the same rule: frames 0, 0, 1, 1, ... (p rounds half up)
    assert list(out["frame_labels"]) == [min(int(np.floor(max((i + 0.5) / 2 - 0.5, 0) + 0.5)), 9) for i in range(20)]


@pytest.mark.parametrize("n", [1, 30, 64, 200, 301])
def test_crop_resize_follows_the_usdrl_rule(n):
    x = np.random.default_rng(n).normal(size=(n, 2, 25, 3)).astype(np.float32)
    out = CropResize(size=64, min_ratio=0.1, max_ratio=1.0)({"keypoint": x, "layout": "ntu25"},
                                                           np.random.default_rng(123))["keypoint"]
    # the rule written out independently: s ~ U[0.1, 1), len = min(max(floor(n s), 64), n), start ~ U{0..n-len}
    rng = np.random.default_rng(123)
    s = rng.uniform(0.1, 1.0)
    length = min(max(int(np.floor(n * s)), 64), n)
    start = int(rng.integers(0, n - length + 1))
    np.testing.assert_allclose(out, torch_resize(x[start : start + length], 64), rtol=1e-5, atol=1e-5)


def test_crop_lengths_cover_the_ratio_range():
    x = np.arange(1000, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 25, 3), np.float32) + 1
    rng = np.random.default_rng(0)
    spans = []
    for _ in range(200):
        frames = CropResize(size=64, min_ratio=0.1, max_ratio=1.0)({"keypoint": x, "layout": "ntu25"}, rng)
        first, last = frames["keypoint"][0, 0, 0, 0], frames["keypoint"][-1, 0, 0, 0]
        assert 1 <= first <= last <= 1000
        spans.append(last - first)
    assert min(spans) < 150 and max(spans) > 850  # 10 %- and ~100 %-long crops both occur


# ---------------------------------------------------------------------------------------------------- modalities


def test_bone_of_a_known_skeleton():
    layout = get_layout("penn13")  # 0 head (root), 1 L shoulder <- 0, 3 L elbow <- 1, 5 L wrist <- 3, ...
    kp = np.zeros((2, 1, 13, 2), np.float32)
    kp[:, 0, 0] = [10, 10]  # head
    kp[:, 0, 1] = [8, 12]  # left shoulder
    kp[:, 0, 3] = [7, 15]  # left elbow
    kp[:, 0, 5] = [7, 18]  # left wrist
    kp[1] += 1  # a translated frame has the same bones
    bone = Bone()({"keypoint": kp, "layout": "penn13"})["keypoint"]
    assert [layout.parents[j] for j in (0, 1, 3, 5)] == [-1, 0, 1, 3]
    for t in range(2):
        np.testing.assert_array_equal(bone[t, 0, 0], [0, 0])  # root
        np.testing.assert_array_equal(bone[t, 0, 1], [-2, 2])
        np.testing.assert_array_equal(bone[t, 0, 3], [-1, 3])
        np.testing.assert_array_equal(bone[t, 0, 5], [0, 3])


def test_bone_variants_of_ntu25_differ_only_at_the_hand_tips():
    sample = make_sample(t=3)
    kp = sample["keypoint"]
    ctrgcn = Bone()(sample)["keypoint"]
    pyskl = Bone(bone_variant="pyskl")(sample)["keypoint"]
    np.testing.assert_allclose(ctrgcn[:, :, 21], kp[:, :, 21] - kp[:, :, 22])  # left hand tip <- left thumb
    np.testing.assert_allclose(pyskl[:, :, 21], kp[:, :, 21] - kp[:, :, 7])  # left hand tip <- left hand
    np.testing.assert_array_equal(ctrgcn[:, :, 20], 0)  # spine_shoulder is the root
    differs = np.flatnonzero(np.any(ctrgcn != pyskl, axis=(0, 1, 3)))
    assert list(differs) == [21, 23]
    with pytest.raises(ConfigError, match="no bone variant 'nope'"):
        Bone(bone_variant="nope")(sample)


def test_motion_is_the_next_frame_difference_with_last_frame_zero():
    sample = make_sample(t=6)
    motion = Motion()(sample)["keypoint"]
    np.testing.assert_allclose(motion[:-1], sample["keypoint"][1:] - sample["keypoint"][:-1], atol=1e-6)
    np.testing.assert_array_equal(motion[-1], 0)
    np.testing.assert_array_equal(Motion()(make_sample(t=1))["keypoint"], 0)


def test_streams_concatenate_joint_bone_and_motions_along_channels():
    sample = make_sample(t=6)
    kp = sample["keypoint"]
    out = Streams(streams=["joint", "bone", "joint_motion", "bone_motion"])(sample)["keypoint"]
    assert out.shape == kp.shape[:-1] + (12,) and out.dtype == np.float32
    bone = Bone()(sample)["keypoint"]
    np.testing.assert_array_equal(out[..., 0:3], kp)
    np.testing.assert_array_equal(out[..., 3:6], bone)
    np.testing.assert_array_equal(out[..., 6:9], Motion()(sample)["keypoint"])
    np.testing.assert_array_equal(out[..., 9:12], Motion()({**sample, "keypoint": bone})["keypoint"])
    # order is the config's; a 2D pose gets 2 channels per stream; pyskl's bone table is reachable
    two_d = make_sample(t=4, layout="coco17", c=2)
    flipped = Streams(streams=["bone", "joint"], bone_variant=None)(two_d)["keypoint"]
    np.testing.assert_array_equal(flipped[..., 2:], two_d["keypoint"])
    assert flipped.shape[-1] == 4
    pyskl = Streams(streams=["bone"], bone_variant="pyskl")(sample)["keypoint"]
    np.testing.assert_array_equal(pyskl, Bone(bone_variant="pyskl")(sample)["keypoint"])
    assert build_transforms([{"type": "Streams", "streams": ["joint", "bone"]}]).transforms[0] == Streams()


@pytest.mark.parametrize("streams", [[], ["joint", "joint"], ["joint", "velocity"]])
def test_streams_rejects_empty_repeated_or_unknown_names(streams):
    with pytest.raises(ConfigError, match="Streams: streams must be distinct names from joint, bone"):
        Streams(streams=streams)


# ---------------------------------------------------------------------------------------------------- view normalisation


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_prenormalize_centres_person1_and_turns_shoulders_onto_x():
    layout = get_layout("ntu25")
    centre, right, left = layout.center[0], layout.axes["right_shoulder"], layout.axes["left_shoulder"]
    rng = np.random.default_rng(3)
    body = rng.normal(scale=0.3, size=(25, 3))
    kp = np.zeros((10, 3, 25, 3), np.float32)  # person 3 absent throughout
    for t in range(10):
        kp[t, 0] = body @ _random_rotation(rng).T + rng.normal(size=3)
        kp[t, 1] = body + [1.0, 0.0, 2.0]
    kp[:2, 1] = 0  # person 2 absent in frames 0-1: moved to the front
    kp[5, 1, 3] = 0  # one absent joint of person 2
    out = PreNormalize3D()({"keypoint": kp, "layout": "ntu25"})["keypoint"]
    np.testing.assert_allclose(out[:, 0, centre], 0, atol=1e-6)
    shoulders = out[0, 0, right] - out[0, 0, left]
    assert shoulders[0] > 0.05
    np.testing.assert_allclose(shoulders[1:], 0, atol=1e-5)
    np.testing.assert_array_equal(out[:, 2], 0)  # the absent person stays zero
    np.testing.assert_array_equal(out[8:, 1], 0)  # 8 frames of person 2 moved to the front, zeros after
    np.testing.assert_array_equal(out[3, 1, 3], 0)  # absent joint (frame 5 -> 3 after the move) stays zero
    assert np.count_nonzero(np.all(out[:8, 1] == 0, axis=-1)) == 1
    # a rigid motion per frame: distances within person 1 are unchanged
    d_in = np.linalg.norm(kp[4, 0, :, None] - kp[4, 0, None], axis=-1)
    d_out = np.linalg.norm(out[4, 0, :, None] - out[4, 0, None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-5)


def test_prenormalize_options():
    sample = make_sample(t=6, absent_person=False)
    sample["keypoint"][:2, 1] = 0
    kept = PreNormalize3D(move_to_front=False)(sample)["keypoint"]
    np.testing.assert_array_equal(kept[:2, 1], 0)
    assert np.all(np.any(kept[2:, 1] != 0, axis=-1))
    # shoulders pointing along -x (turned round): the result still points along +x
    flipped = {**sample, "keypoint": sample["keypoint"] * np.array([-1, 1, -1], np.float32)}
    flipped["keypoint"][:, 0, 8] = flipped["keypoint"][:, 0, 4] + [-0.4, 0, 0]
    out = PreNormalize3D()(flipped)["keypoint"]
    v = out[0, 0, 8] - out[0, 0, 4]
    np.testing.assert_allclose(v, [0.4, 0, 0], atol=1e-5)
    # optional spine alignment alone: spine_bottom -> spine_top along +z
    spine = PreNormalize3D(align_shoulders=False, align_spine="z")(sample)["keypoint"]
    s = spine[0, 0, 1] - spine[0, 0, 0]
    assert s[2] > 0 and np.allclose(s[:2], 0, atol=1e-5)
    with pytest.raises(ConfigError, match="align_spine"):
        PreNormalize3D(align_spine="up")
    with pytest.raises(TransformInputError, match="does not define axes 'spine_bottom'"):
        PreNormalize3D(align_spine="z")(make_sample(layout="coco17"))
    with pytest.raises(TransformInputError, match="use PreNormalize2D"):
        PreNormalize3D()(make_sample(c=2))


def test_prenormalize2d_image_and_body_modes():
    sample = make_sample(t=5, layout="coco17", c=2, score=True)
    sample["keypoint"] = sample["keypoint"] * 100
    sample["img_shape"] = [480, 640]
    image = PreNormalize2D(mode="image")(sample)["keypoint"]
    expected = sample["keypoint"] * 2 / 640 - np.array([1, 480 / 640], np.float32)
    present = np.any(sample["keypoint"] != 0, axis=-1)
    np.testing.assert_allclose(image[present], expected[present], atol=1e-6)
    np.testing.assert_array_equal(image[~present], 0)
    body = PreNormalize2D(mode="body")(sample)["keypoint"]
    hips = get_layout("coco17").center
    np.testing.assert_allclose(body[:, 0, list(hips)].mean(axis=1), 0, atol=1e-5)
    assert np.sqrt((body[:, 0] ** 2).sum(-1).mean()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(body[~present], 0)
    with pytest.raises(TransformInputError, match="img_shape"):
        PreNormalize2D()({k: v for k, v in sample.items() if k != "img_shape"})


# ---------------------------------------------------------------------------------------------------- augmentations


def test_flip_twice_is_identity_and_swaps_left_and_right():
    sample = make_sample(t=4, score=True)
    once = Flip()(sample)
    layout = get_layout("ntu25")
    kp, out = sample["keypoint"], once["keypoint"]
    for left, right in layout.symmetry:
        np.testing.assert_array_equal(out[..., right, 0], -kp[..., left, 0])
        np.testing.assert_array_equal(out[..., right, 1:], kp[..., left, 1:])
        np.testing.assert_array_equal(once["keypoint_score"][..., left], sample["keypoint_score"][..., right])
    np.testing.assert_array_equal(out[..., 0, :], kp[..., 0, :] * [-1, 1, 1])  # a middle joint stays in place
    twice = Flip()(once)
    np.testing.assert_array_equal(twice["keypoint"], kp)
    np.testing.assert_array_equal(twice["keypoint_score"], sample["keypoint_score"])
    np.testing.assert_array_equal(out[:1, 1], 0)  # person 2 absent in frame 0 of 4 stays zero
    assert not np.signbit(out[:1, 1]).any()  # and is +0.0, not -0.0


@pytest.mark.parametrize("layout, expected", [("ntu25", 15), ("coco17", 10), ("kinect_v1_20", 12), ("penn13", 8)])
def test_joint_mask_zeroes_exactly_round_0_6_v_joints(layout, expected):
    sample = make_sample(t=8, layout=layout, score=True, absent_person=False)
    for seed in range(5):
        out = JointMask(ratio=0.6)(sample, np.random.default_rng(seed))
        zero = np.all(out["keypoint"] == 0, axis=(0, 1, 3))
        assert zero.sum() == expected
        np.testing.assert_array_equal(out["keypoint"][:, :, ~zero], sample["keypoint"][:, :, ~zero])
        np.testing.assert_array_equal(out["keypoint_score"][:, :, zero], 0)


def test_joint_linear_map_changes_round_0_6_v_joints_and_keeps_zeros():
    sample = make_sample(t=8)
    out = JointLinearMap(ratio=0.6)(sample, np.random.default_rng(1))["keypoint"]
    changed = np.any(out != sample["keypoint"], axis=(0, 1, 3))
    assert changed.sum() == 15
    np.testing.assert_array_equal(out[: 8 // 4, 1], 0)


@pytest.mark.parametrize("transform", [Shear(magnitude=1.0), Rotate(max_angle=(0.5, 1.0, 1.5)), JointMask(),
                                       JointLinearMap()])
@pytest.mark.parametrize("channels", [2, 3])
def test_spatial_transforms_keep_shapes_and_zeros(transform, channels):
    sample = make_sample(t=12, c=channels)
    sample["keypoint"][3, 0, 5] = 0
    out = transform(sample, np.random.default_rng(0))["keypoint"]
    assert out.shape == sample["keypoint"].shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[:3, 1], 0)
    np.testing.assert_array_equal(out[3, 0, 5], 0)
    assert not np.allclose(out, sample["keypoint"])


def test_shear_matrix_form_and_rotation_is_rigid():
    kp = np.zeros((1, 1, 25, 3), np.float32)
    kp[0, 0, 0] = [1, 0, 0]
    kp[0, 0, 1] = [0, 1, 0]
    kp[0, 0, 2] = [0, 0, 1]
    for seed in range(10):
        s = Shear(magnitude=0.3)({"keypoint": kp, "layout": "ntu25"}, np.random.default_rng(seed))["keypoint"][0, 0]
        matrix = s[:3].T  # columns = images of the unit vectors = S
        np.testing.assert_array_equal(np.diag(matrix), 1)
        assert np.all(np.abs(matrix - np.eye(3)) <= 0.3)
    sample = make_sample(t=5)
    rotated = Rotate(max_angle=3.0)(sample, np.random.default_rng(0))["keypoint"]
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(sample["keypoint"], axis=-1),
                               rtol=1e-5)


def test_random_choice_follows_its_weights():
    choice = RandomChoice(transforms=[{"type": "JointMask"}, {"type": "JointLinearMap"}, {"type": "Shear"}],
                          weights=[1, 1, 2])
    sample = make_sample(t=4, absent_person=False)
    rng = np.random.default_rng(0)
    masked = sum(np.all(choice(sample, rng)["keypoint"] == 0, axis=(0, 1, 3)).any() for _ in range(2000))
    assert 430 <= masked <= 570  # expected 500 (1/4)
    never = RandomApply(transform=Flip(), p=0.0)(sample, rng)
    assert never is sample
    always = RandomApply(transform={"type": "Flip"}, p=1.0)(sample, rng)
    np.testing.assert_array_equal(always["keypoint"], Flip()(sample)["keypoint"])


# ---------------------------------------------------------------------------------------------------- config and errors


def test_build_transforms_from_config_dicts():
    pipeline = build_transforms([{"type": "PreNormalize3D", "align_spine": None}, *USDRL_VIEW,
                                 {"type": "Bone", "bone_variant": "ctrgcn"}])
    assert isinstance(pipeline, Compose) and pipeline.random
    assert [t.name for t in pipeline.transforms] == ["PreNormalize3D", "CropResize", "RandomChoice", "Bone"]
    choice = pipeline.transforms[2]
    assert [t.name for t in choice.transforms] == ["JointMask", "JointLinearMap", "Shear"]
    out = pipeline(make_sample(t=50), np.random.default_rng(0))
    assert out["keypoint"].shape == (64, 2, 25, 3)
    assert "CropResize(size=64, min_ratio=0.1, max_ratio=1.0)" in repr(pipeline)
    assert not build_transforms([{"type": "Resize", "size": 16}, {"type": "Motion"}]).random


def test_build_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown transform type 'RandomWarp'"):
        build_transforms([{"type": "Resize"}, {"type": "RandomWarp", "p": 1}])
    with pytest.raises(ConfigError, match="unknown transform type 'Nope'"):
        build_transforms([{"type": "RandomChoice", "transforms": [{"type": "Nope"}]}])
    with pytest.raises(ConfigError, match="transform 'CropResize': unknown option\\(s\\) 'length'"):
        build_transforms([{"type": "CropResize", "length": 64}])
    with pytest.raises(ConfigError, match="'type' key"):
        build_transforms([{"size": 64}])
    with pytest.raises(ConfigError, match="min_ratio <= max_ratio"):
        build_transforms([{"type": "CropResize", "min_ratio": 0.9, "max_ratio": 0.5}])
    with pytest.raises(ConfigError, match="3 weights for 2 transforms"):
        RandomChoice(transforms=[Flip(), Motion()], weights=[1, 2, 3])


@pytest.mark.parametrize("transform", [PreNormalize3D(), Bone(), Motion(), Resize(8), CropResize(8), Shear(), Rotate(),
                                       JointMask(), JointLinearMap(), Flip(), build_transforms(USDRL_VIEW)])
def test_empty_sequence_is_a_clear_value_error(transform):
    empty = {"keypoint": np.zeros((0, 2, 25, 3), np.float32), "layout": "ntu25", "sample_id": "S001C001P001R001A001"}
    with pytest.raises(ValueError, match="empty sequence.*T = 0") as info:
        transform(empty, np.random.default_rng(0))
    assert "S001C001P001R001A001" in str(info.value)


def test_layout_mismatch_is_reported():
    sample = make_sample(layout="ntu25")
    with pytest.raises(TransformInputError, match="layout 'coco17' has 17 joints but the data has 25"):
        Flip()({**sample, "layout": "coco17"})


def test_resize_frames_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        resize_frames(np.zeros((0, 3)), 4)


def test_prenormalize_on_real_nw_ucla_sequences():
    import json

    from conftest import real_data

    folder = real_data("NW-UCLA") / "all_sqe"
    layout = get_layout("kinect_v1_20")
    right, left = layout.axes["right_shoulder"], layout.axes["left_shoulder"]
    for name in ["a01_s01_e00_v01.json", "a12_s10_e04_v03.json"]:
        path = folder / name
        assert path.exists(), path
        kp = np.asarray(json.loads(path.read_text())["skeletons"], np.float32)[:, None]  # (T, 1, 20, 3)
        out = PreNormalize3D()({"keypoint": kp, "layout": "kinect_v1_20"})["keypoint"]
        np.testing.assert_allclose(out[:, 0, layout.center[0]], 0, atol=1e-6)
        shoulders = out[0, 0, right] - out[0, 0, left]
        assert shoulders[0] > 0 and np.allclose(shoulders[1:], 0, atol=1e-5)
        d = lambda x: np.linalg.norm(x[:, 0, :, None] - x[:, 0, None], axis=-1)  # noqa: E731
        np.testing.assert_allclose(d(out), d(kp), atol=1e-4)  # rigid: in-frame distances are kept
