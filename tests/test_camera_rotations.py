"""Rotation conversions, forward kinematics and the VideoPose3D camera model."""

import json

import numpy as np
import pytest

from ups_toolkit.errors import ConfigError
from ups_toolkit.skeleton.camera import (
    Camera, camera_to_world, cameras_for, load_cameras, project_to_2d, project_world_points, qrot, world_to_camera,
)
from ups_toolkit.skeleton.kinematics import forward_kinematics
from ups_toolkit.skeleton.rotations import (
    axis_rotation, euler_to_rotmat, expmap_to_euler, expmap_to_rotmat, quaternion_to_rotmat, rotmat_to_euler,
    rotmat_to_expmap, rotmat_to_quaternion,
)

RNG = np.random.default_rng(0)


def random_expmaps(n, max_angle=np.pi - 1e-3):
    axis = RNG.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return axis * RNG.uniform(0, max_angle, (n, 1))


# ---- rotations -------------------------------------------------------------------------------------------------
def test_rodrigues_known_values():
    np.testing.assert_allclose(expmap_to_rotmat([0, 0, np.pi / 2]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(expmap_to_rotmat([np.pi, 0, 0]), np.diag([1, -1, -1]), atol=1e-12)
    np.testing.assert_array_equal(expmap_to_rotmat(np.zeros(3)), np.eye(3))
    # a tiny angle still gives the first-order rotation, not a division by ~0
    np.testing.assert_allclose(expmap_to_rotmat([1e-10, 0, 0]), [[1, 0, 0], [0, 1, -1e-10], [0, 1e-10, 1]], atol=1e-15)


def test_rodrigues_matches_axis_rotations_and_is_a_rotation():
    for axis, vector in zip("xyz", np.eye(3)):
        np.testing.assert_allclose(expmap_to_rotmat(0.7 * vector), axis_rotation(axis, 0.7), atol=1e-12)
    rot = expmap_to_rotmat(random_expmaps(500))
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)


def test_expmap_round_trip():
    r = random_expmaps(1000)
    np.testing.assert_allclose(rotmat_to_expmap(expmap_to_rotmat(r)), r, atol=1e-9)
    # batched shapes are kept
    assert rotmat_to_expmap(expmap_to_rotmat(r.reshape(10, 100, 3))).shape == (10, 100, 3)
    np.testing.assert_allclose(rotmat_to_expmap(np.eye(3)), np.zeros(3), atol=1e-15)


def test_quaternion_round_trip_near_180_degrees():
    r = np.array([np.pi - 1e-7, 0, 0]) + random_expmaps(200, max_angle=1e-6)
    rot = expmap_to_rotmat(r)
    np.testing.assert_allclose(quaternion_to_rotmat(rotmat_to_quaternion(rot)), rot, atol=1e-9)


def test_euler_convention_of_the_reference():
    # the reference's Euler angles e satisfy R = (Rz(e3) Ry(e2) Rx(e1))^T; build R from explicit matrices
    e1, e2, e3 = 0.3, -0.4, 1.1
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(e1), -s(e1)], [0, s(e1), c(e1)]])
    ry = np.array([[c(e2), 0, s(e2)], [0, 1, 0], [-s(e2), 0, c(e2)]])
    rz = np.array([[c(e3), -s(e3), 0], [s(e3), c(e3), 0], [0, 0, 1]])
    rot = (rz @ ry @ rx).T
    np.testing.assert_allclose(rotmat_to_euler(rot), [e1, e2, e3], atol=1e-12)
    # and the reference's formulas, written out: E2 = -asin(R02), E1 = atan2(R12, R22), E3 = atan2(R01, R00)
    np.testing.assert_allclose(
        rotmat_to_euler(rot), [np.arctan2(rot[1, 2], rot[2, 2]), -np.arcsin(rot[0, 2]), np.arctan2(rot[0, 1], rot[0, 0])]
    )


def test_euler_round_trip_and_gimbal_lock():
    e = RNG.uniform([-np.pi, -1.5, -np.pi], [np.pi, 1.5, np.pi], (1000, 3))
    np.testing.assert_allclose(rotmat_to_euler(euler_to_rotmat(e)), e, atol=1e-9)
    # R[0, 2] = -1 exactly: the reference sets e3 = 0, e2 = pi/2, e1 = atan2(R01, R02)
    lock = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(rotmat_to_euler(lock), [np.pi, np.pi / 2, 0.0])
    np.testing.assert_allclose(rotmat_to_euler(lock.T), [0.0, -np.pi / 2, 0.0])


def test_expmap_to_euler_single_axis():
    # Rx(a) = (Rx(e1))^T with e1 = -a: the reference's angles are those of the transposed rotation
    np.testing.assert_allclose(expmap_to_euler([0.5, 0, 0]), [-0.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(expmap_to_euler([0, 0, 0.5]), [0, 0, -0.5], atol=1e-12)


# ---- forward kinematics ----------------------------------------------------------------------------------------
def test_forward_kinematics_chain_by_hand():
    # root at (1, 0, 0) turned 90 degrees about z; child 2 along x; grandchild 1 along x, child turned 90 about z
    local = np.stack([axis_rotation("z", np.pi / 2), axis_rotation("z", np.pi / 2), np.eye(3)])[None]
    offsets = np.array([[0, 0, 0], [2, 0, 0], [1, 0, 0]])
    positions = forward_kinematics(local, offsets, [-1, 0, 1], np.array([[1.0, 0, 0]]))
    np.testing.assert_allclose(positions[0], [[1, 0, 0], [1, 2, 0], [0, 2, 0]], atol=1e-12)


def test_forward_kinematics_rejects_children_before_parents():
    with pytest.raises(ValueError, match="parents listed before"):
        forward_kinematics(np.broadcast_to(np.eye(3), (1, 2, 3, 3)), np.zeros((2, 3)), [1, -1], np.zeros((1, 3)))


# ---- cameras ---------------------------------------------------------------------------------------------------
def test_quaternion_rotation_matches_matrix():
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # 90 degrees about z
    np.testing.assert_allclose(qrot(q, [1.0, 0, 0]), [0, 1, 0], atol=1e-12)
    qs = RNG.normal(size=(50, 4))
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    v = RNG.normal(size=(50, 3))
    np.testing.assert_allclose(qrot(qs, v), np.einsum("nab,nb->na", quaternion_to_rotmat(qs), v), atol=1e-12)


def test_world_camera_round_trip_and_convention():
    q = np.array([np.cos(-np.pi / 4), 0, np.sin(-np.pi / 4), 0])  # camera -> world: -90 degrees about y
    t = np.array([3.0, 0, 0])
    # the camera's optical axis (+z in the camera) points along world -x, towards the origin
    np.testing.assert_allclose(camera_to_world([0, 0, 1.0], q, t) - t, [-1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(world_to_camera([0.0, 0, 0], q, t), [0, 0, 3], atol=1e-12)
    x = RNG.normal(size=(20, 17, 3))
    np.testing.assert_allclose(camera_to_world(world_to_camera(x, q, t), q, t), x, atol=1e-12)


def test_projection_pinhole_and_distortion_by_hand():
    point = np.array([0.2, -0.1, 2.0])
    np.testing.assert_allclose(project_to_2d(point, [500, 400], [320, 240]), [320 + 50, 240 - 20])
    k, p = [0.1, -0.05, 0.01], [0.001, -0.002]
    u = np.array([0.1, -0.05])
    r2 = 0.1**2 + 0.05**2
    radial = 1 + 0.1 * r2 - 0.05 * r2**2 + 0.01 * r2**3
    tan = 0.001 * 0.1 - 0.002 * -0.05
    expected = np.array([500, 400]) * (u * (radial + tan) + np.array(p) * r2) + [320, 240]
    np.testing.assert_allclose(project_to_2d(point, [500, 400], [320, 240], k, p), expected, rtol=1e-12)
    # normalised coordinates are clipped to [-1, 1] before distortion (as VideoPose3D)
    np.testing.assert_allclose(project_to_2d([5.0, 0, 1.0], [100, 100], [0, 0]), [100, 0])


def test_project_world_points_through_a_camera():
    camera = Camera(focal_length=(500.0, 500.0), center=(320.0, 240.0), translation=(0.0, 0.0, -3.0))
    np.testing.assert_allclose(project_world_points(np.array([0.3, 0.6, 0.0]), camera), [370, 340])


def test_load_cameras_yaml_and_json(fixtures, tmp_path):
    cameras = load_cameras(fixtures / "videopose3d" / "cameras.yaml")
    assert [c.id for c in cameras_for(cameras, "Train/S1")] == ["front", "side"]
    assert cameras_for(cameras, "Validate/S2")[1].radial_distortion == (0.1, -0.05, 0.01)
    with pytest.raises(ConfigError, match="no cameras for subject 'Validate/S3'"):
        cameras_for(cameras, "Validate/S3")
    path = tmp_path / "cams.json"
    path.write_text(json.dumps({"default": [{"focal_length": [1, 1], "center": [0, 0],
                                             "orientation": [1, 0, 0, 0], "translation": [0, 0, 0]}]}))
    assert cameras_for(load_cameras(path), "S9")[0].tangential_distortion == (0.0, 0.0)


@pytest.mark.parametrize("entry, message", [
    ({"center": [0, 0], "orientation": [1, 0, 0, 0], "translation": [0, 0, 0]}, "missing focal_length"),
    ({"focal_length": [1], "center": [0, 0], "orientation": [1, 0, 0, 0], "translation": [0, 0, 0]},
     "focal_length must be a list of 2"),
    ({"focal_length": [1, 1], "center": [0, 0], "orientation": [0, 0, 0, 0], "translation": [0, 0, 0]},
     "orientation quaternion is zero"),
    ({"focal_length": [1, 1], "center": [0, 0], "orientation": [1, 0, 0, 0], "translation": [0, 0, 0], "fov": 3},
     "unknown keys"),
])
def test_bad_camera_files_name_file_and_key(tmp_path, entry, message):
    path = tmp_path / "cams.yaml"
    path.write_text(json.dumps({"S1": [entry]}))
    with pytest.raises(ConfigError, match=message) as error:
        load_cameras(path)
    assert str(path) in str(error.value) and "subject 'S1', camera 0" in str(error.value)
