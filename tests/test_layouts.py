"""Joint layouts and mapping tables (docs/formats.md §15)."""

import numpy as np
import pytest

from ups_toolkit.errors import ConfigError
from ups_toolkit.skeleton import get_layout, layout_names, map_layout, mapping_matrix

REQUIRED = {"ntu25": 25, "kinect_v1_20": 20, "h36m17": 17, "coco17": 17, "openpose18": 18, "penn13": 13,
            "jhmdb15": 15, "humaneva15": 15}


@pytest.mark.parametrize("name,joints", sorted(REQUIRED.items()))
def test_required_layouts(name, joints):
    layout = get_layout(name)
    assert layout.num_joints == joints == len(layout.parents)
    # parents form a tree: every joint reaches the root without a cycle
    for j in range(joints):
        seen, node = set(), j
        while layout.parents[node] != -1:
            assert node not in seen
            seen.add(node)
            node = layout.parents[node]
        assert node == layout.root
    # symmetry pairs are left/right by name where names say so
    for a, b in layout.symmetry:
        names = {layout.joint_names[a], layout.joint_names[b]}
        assert {n.split("_")[0] for n in names} == {"left", "right"}, names
        assert {n.split("_", 1)[1] for n in names} == {layout.joint_names[a].split("_", 1)[1]}
    perm = layout.flip_permutation()
    assert sorted(perm) == list(range(joints)) and (perm[perm] == np.arange(joints)).all()


def test_every_registered_layout_loads():
    assert set(REQUIRED) <= set(layout_names())
    for name in layout_names():
        assert get_layout(name).num_joints > 0


def test_ntu_bone_variants_match_formats_md():
    ntu = get_layout("ntu25")
    # docs/formats.md §15, 1-based (child, parent)
    pyskl = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
             (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 8), (23, 8), (24, 12),
             (25, 12)]
    ctrgcn = [p for p in pyskl if p[0] not in (22, 24)] + [(22, 23), (24, 25)]
    as_zero_based = lambda pairs: sorted((c - 1, p - 1) for c, p in pairs)
    assert sorted(ntu.bones("pyskl")) == as_zero_based(pyskl)
    assert sorted(ntu.bones("ctrgcn")) == as_zero_based(ctrgcn)
    assert ntu.bones() == ntu.bones("ctrgcn")  # default = USDRL / CTR-GCN pairs
    assert ntu.joint_names[20] == "spine_shoulder" and ntu.root == 20
    with pytest.raises(ConfigError, match="no bone variant 'stgcn'"):
        ntu.bones("stgcn")


def test_h36m_parents_and_sides():
    h36m = get_layout("h36m17")
    assert h36m.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
    left = sorted(a for a, _ in h36m.symmetry)
    right = sorted(b for _, b in h36m.symmetry)
    assert left == [4, 5, 6, 11, 12, 13] and right == [1, 2, 3, 14, 15, 16]


def _named_pose(layout_name, rng):
    layout = get_layout(layout_name)
    return layout, {name: rng.normal(size=3) for name in layout.joint_names}


def test_coco_to_h36m_follows_motionbert():
    rng = np.random.default_rng(0)
    coco = rng.normal(size=(4, 17, 2))
    h36m, _ = map_layout(coco, "coco17", "h36m17")
    np.testing.assert_allclose(h36m[:, 0], (coco[:, 11] + coco[:, 12]) / 2)
    np.testing.assert_allclose(h36m[:, 8], (coco[:, 5] + coco[:, 6]) / 2)
    np.testing.assert_allclose(h36m[:, 7], (h36m[:, 0] + h36m[:, 8]) / 2)
    np.testing.assert_allclose(h36m[:, 10], (coco[:, 1] + coco[:, 2]) / 2)
    for dst, src in {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 9: 0, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}.items():
        np.testing.assert_allclose(h36m[:, dst], coco[:, src])


@pytest.mark.parametrize("src,dst", [("openpose18", "coco17"), ("ntu25", "h36m17"), ("coco17", "h36m17"),
                                     ("kinect_v1_20", "h36m17"), ("humaneva15", "h36m17")])
def test_single_joint_mappings_keep_joint_names(src, dst):
    """Where a target joint comes from one source joint, both carry the same anatomical name (or a documented
    stand-in)."""
    stand_ins = {("spine_base", "pelvis"), ("hip_center", "pelvis"), ("spine_mid", "spine"), ("spine", "spine"),
                 ("spine_shoulder", "thorax"), ("shoulder_center", "thorax"), ("neck", "neck_nose"),
                 ("shoulder_center", "neck_nose"), ("nose", "neck_nose"), ("thorax", "thorax"), ("pelvis", "pelvis"),
                 ("head", "head"), ("left_eye", "left_eye")}
    weights = mapping_matrix(src, dst)
    s, d = get_layout(src), get_layout(dst)
    for t in range(d.num_joints):
        (sources,) = np.nonzero(weights[t])
        if len(sources) != 1:
            continue
        a, b = s.joint_names[sources[0]], d.joint_names[t]
        assert a == b or (a, b) in stand_ins, (src, dst, a, b)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_composed_mapping_openpose_to_h36m():
    rng = np.random.default_rng(1)
    pose = rng.normal(size=(3, 18, 2))
    direct, _ = map_layout(map_layout(pose, "openpose18", "coco17")[0], "coco17", "h36m17")
    composed, _ = map_layout(pose, "openpose18", "h36m17")
    np.testing.assert_allclose(composed, direct)


def test_missing_source_joint_makes_target_missing():
    pose = np.ones((1, 17, 2))
    score = np.ones((1, 17))
    score[0, 11] = 0  # left hip undetected
    mapped, mapped_score = map_layout(pose, "coco17", "h36m17", score)
    assert mapped_score[0, 0] == 0 and (mapped[0, 0] == 0).all()  # pelvis needs both hips
    assert mapped_score[0, 4] == 0  # left hip itself
    assert mapped_score[0, 1] == 1 and (mapped[0, 1] == 1).all()  # right hip unaffected


def test_unknown_layout_and_mapping_errors():
    with pytest.raises(ConfigError, match="unknown layout 'ntu26'.*known layouts"):
        get_layout("ntu26")
    with pytest.raises(ConfigError, match="no mapping from layout 'h36m17' to 'ntu25'"):
        mapping_matrix("h36m17", "ntu25")
    with pytest.raises(ConfigError, match="data has 18 joints but layout 'coco17' has 17"):
        map_layout(np.zeros((2, 18, 2)), "coco17", "h36m17")
