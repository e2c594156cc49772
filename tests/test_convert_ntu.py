"""NTU RGB+D raw ``.skeleton`` converter: hand-written fixtures in the exact raw format, and the 5 real samples."""

import shutil

import numpy as np
import pytest
from conftest import FIXTURES, real_data, run_cli

from ups_toolkit.data.cli import main
from ups_toolkit.data.prepared import load_prepared, prepared_info

NTU_FIXTURES = FIXTURES / "ntu-skeleton"
GOOD = NTU_FIXTURES / "good"
BAD = NTU_FIXTURES / "bad"


def convert(src, out, *options):
    """``python -m ups_toolkit.data convert ntu-skeleton SRC OUT ...`` run in-process (a subprocess per call would
    spend most of its time importing); the end-to-end subprocess runs are in the tests that use ``run_cli``."""
    assert main(["convert", "ntu-skeleton", str(src), str(out), "--quiet", *map(str, options)]) == 0
    return load_prepared(out)


def by_id(split):
    return {str(row["sample_id"]): row for row in split}


def raw_joint_rows(path, frame, body=0):
    """Joint rows (25, 12) of one body in one frame, parsed independently of the converter (line by line)."""
    lines = path.read_text().splitlines()
    pos = 1
    for t in range(frame + 1):
        bodies = int(lines[pos])
        pos += 1
        for b in range(bodies):
            assert int(lines[pos + 1]) == 25
            rows = np.array([[float(v) for v in lines[pos + 2 + j].split()] for j in range(25)])
            if t == frame and b == body:
                return rows
            pos += 27
    raise AssertionError(f"frame {frame} has no body {body}")


def split_of_ids(dataset):
    return {name: sorted(str(s) for s in part["sample_id"]) for name, part in dataset.items()}


# ---- hand-written fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_dataset(tmp_path_factory):
    return convert(GOOD, tmp_path_factory.mktemp("ntu") / "out")["all"]


def test_fixture_samples_frames_labels_metadata(fixture_dataset):
    rows = by_id(fixture_dataset)
    assert {k: len(r["keypoint"]) for k, r in rows.items()} == {
        "S001C001P001R001A001": 3, "S001C002P002R001A050": 3, "S002C003P003R002A010": 5, "S003C001P004R001A024": 2,
    }
    assert {k: int(r["label"]) for k, r in rows.items()} == {
        "S001C001P001R001A001": 0, "S001C002P002R001A050": 49, "S002C003P003R002A010": 9, "S003C001P004R001A024": 23,
    }
    r = rows["S002C003P003R002A010"]
    assert (str(r["subject"]), str(r["view"]), int(r["setup"]), int(r["replication"])) == ("P003", "C003", 2, 2)
    assert str(r["layout"]) == "ntu25" and float(r["fps"]) == 30.0
    assert fixture_dataset.features["keypoint"].shape == (None, 2, 25, 3)


def test_one_body_coordinates_equal_the_file(fixture_dataset):
    path = GOOD / "S001C001P001R001A001.skeleton"
    keypoint = by_id(fixture_dataset)["S001C001P001R001A001"]["keypoint"]
    assert keypoint.dtype == np.float32
    for t in range(3):
        np.testing.assert_array_equal(keypoint[t, 0], raw_joint_rows(path, t)[:, :3].astype(np.float32))
    assert not keypoint[:, 1].any(), "the absent second person must be all zeros"


def test_two_bodies_fill_both_person_slots(fixture_dataset):
    path = GOOD / "S001C002P002R001A050.skeleton"
    keypoint = by_id(fixture_dataset)["S001C002P002R001A050"]["keypoint"]
    for t in range(3):
        expected = {raw_joint_rows(path, t, b)[:, :3].astype(np.float32).tobytes() for b in range(2)}
        assert {keypoint[t, m].tobytes() for m in range(2)} == expected


def test_frames_without_bodies_kept_by_umurl_trimmed_by_pyskl(fixture_dataset, tmp_path):
    keypoint = by_id(fixture_dataset)["S002C003P003R002A010"]["keypoint"]
    present = keypoint.reshape(5, -1).any(axis=1)
    assert present.tolist() == [False, True, False, True, False]
    pyskl = convert(GOOD / "S002C003P003R002A010.skeleton", tmp_path / "p", "--bodies", "pyskl")["all"][0]["keypoint"]
    # leading and trailing empty frames are trimmed, the empty frame inside is kept
    assert pyskl.reshape(len(pyskl), -1).any(axis=1).tolist() == [True, False, True]
    np.testing.assert_array_equal(pyskl, keypoint[1:4])


def test_noise_body_dropped_by_pyskl_rule(fixture_dataset, tmp_path):
    path = GOOD / "S003C001P004R001A024.skeleton"
    person, noise, small = (raw_joint_rows(path, 0, b)[:, :3].astype(np.float32) for b in range(3))
    assert np.ptp(noise[:, 0]) > np.ptp(noise[:, 1]), "fixture: the noise body is wide and flat"
    umurl = by_id(fixture_dataset)["S003C001P004R001A024"]["keypoint"]
    # umurl ranks on motion energy only: the fast, wide noise body beats the small person
    np.testing.assert_array_equal(umurl[0, 0], person)
    np.testing.assert_array_equal(umurl[0, 1], noise)
    pyskl = convert(path, tmp_path / "p", "--bodies", "pyskl")["all"][0]["keypoint"]
    np.testing.assert_array_equal(pyskl[0, 0], person)
    np.testing.assert_array_equal(pyskl[0, 1], small)


def test_color_and_depth_coordinates_are_pixels(tmp_path):
    path = GOOD / "S001C001P001R001A001.skeleton"
    for coords, columns, img_shape in [("color", slice(5, 7), [1080, 1920]), ("depth", slice(3, 5), [424, 512])]:
        dataset = convert(path, tmp_path / coords, "--coords", coords)["all"]
        assert dataset.features["keypoint"].shape == (None, 2, 25, 2)
        row = dataset[0]
        np.testing.assert_array_equal(row["keypoint"][1, 0], raw_joint_rows(path, 1)[:, columns].astype(np.float32))
        assert row["img_shape"].tolist() == img_shape


@pytest.mark.parametrize(
    "protocol, expected",
    [
        ("xsub", {"train": ["S001C001P001R001A001", "S001C002P002R001A050", "S003C001P004R001A024"],
                  "test": ["S002C003P003R002A010"]}),
        ("xview", {"train": ["S001C002P002R001A050", "S002C003P003R002A010"],
                   "test": ["S001C001P001R001A001", "S003C001P004R001A024"]}),
        ("xset", {"train": ["S002C003P003R002A010"],
                  "test": ["S001C001P001R001A001", "S001C002P002R001A050", "S003C001P004R001A024"]}),
    ],
)
def test_fixture_split_protocols(tmp_path, protocol, expected):
    assert split_of_ids(convert(GOOD, tmp_path / "out", "--split", protocol)) == expected


def test_fixture_missing_list_skips_listed_names(tmp_path):
    dataset = convert(GOOD, tmp_path / "out", "--missing-list", NTU_FIXTURES / "missing_skeletons.txt")
    assert split_of_ids(dataset) == {
        "all": ["S001C001P001R001A001", "S001C002P002R001A050", "S003C001P004R001A024"]
    }


def nan_line(path):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "NaN" in line)


@pytest.mark.parametrize(
    "name, line, message",
    [
        ("S001C001P001R001A002", lambda p: len(p.read_text().splitlines()) + 1, "file ends early"),
        ("S001C001P001R001A003", lambda p: 4, "24 joints, expected 25"),
        ("S001C001P001R001A004", nan_line, "non-finite coordinate"),
        ("S001C001P001R001A005", lambda p: 1, "frame count is 0"),
    ],
)
def test_bad_file_exits_2_naming_file_and_line(tmp_path, capsys, name, line, message):
    path = BAD / f"{name}.skeleton"
    out = tmp_path / "out"
    assert main(["convert", "ntu-skeleton", str(path), str(out), "--quiet"]) == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1, error_lines
    assert f"{path}:{line(path)}:" in error_lines[0] and message in error_lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_file_end_to_end_cli(tmp_path):
    path = BAD / "S001C001P001R001A003.skeleton"
    result = run_cli("convert", "ntu-skeleton", path, tmp_path / "out", "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}:4: frame 0, body 0: 24 joints, expected 25"]
    assert list(tmp_path.iterdir()) == []


def test_skip_bad_lists_bad_files_and_converts_the_rest(tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(GOOD, src)
    shutil.copy(BAD / "S001C001P001R001A003.skeleton", src)
    shutil.copy(BAD / "S001C001P001R001A004.skeleton", src)
    assert main(["convert", "ntu-skeleton", str(src), str(tmp_path / "out"), "--quiet"]) == 2
    assert "S001C001P001R001A003.skeleton:4" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert len(convert(src, tmp_path / "out", "--skip-bad")["all"]) == 4
    assert sum(line.startswith("skipped:") for line in capsys.readouterr().err.splitlines()) == 2
    assert len(prepared_info(tmp_path / "out")["bad_items"]) == 2


# ---- the 5 real samples (docs/datasets.md §6) ---------------------------------------------------------------------
REAL_FRAMES = {
    "S001C001P001R001A011": 82, "S001C003P008R002A058": 70, "S002C001P003R001A003": 100,
    "S003C001P015R001A034": 71, "S004C002P003R001A017": 124,
}
REAL_LABELS = {
    "S001C001P001R001A011": 10, "S001C003P008R002A058": 57, "S002C001P003R001A003": 2,
    "S003C001P015R001A034": 33, "S004C002P003R001A017": 16,
}
HANDSHAKE = "S001C003P008R002A058"


@pytest.fixture(scope="module")
def real_skeletons():
    return real_data("NTU_RGBD_samples") / "skeletons"


@pytest.fixture(scope="module")
def real_dataset(real_skeletons, tmp_path_factory):
    out = tmp_path_factory.mktemp("ntu-real") / "out"
    result = run_cli("convert", "ntu-skeleton", real_skeletons, out, "--quiet")  # the user's command, end to end
    assert result.returncode == 0, result.stderr
    assert "all: 5 samples, frames 70-124" in result.stdout
    return load_prepared(out)["all"]


def test_real_frames_labels_and_bodies(real_dataset):
    rows = by_id(real_dataset)
    assert {k: len(r["keypoint"]) for k, r in rows.items()} == REAL_FRAMES
    assert {k: int(r["label"]) for k, r in rows.items()} == REAL_LABELS
    for sample_id, row in rows.items():
        per_person = row["keypoint"].reshape(len(row["keypoint"]), 2, -1).any(axis=2)  # (T, M) slot non-zero
        if sample_id == HANDSHAKE:
            assert per_person.all(), "both bodies of the handshake are present in every frame"
        else:
            assert per_person[:, 0].all() and not per_person[:, 1].any()


def test_real_coordinates_equal_the_file(real_dataset, real_skeletons):
    rows = by_id(real_dataset)
    path = real_skeletons / "S001C001P001R001A011.skeleton"
    for t in (0, 40, 81):
        expected = raw_joint_rows(path, t)[:, :3].astype(np.float32)
        np.testing.assert_array_equal(rows["S001C001P001R001A011"]["keypoint"][t, 0], expected)
    path = real_skeletons / f"{HANDSHAKE}.skeleton"
    for t in (0, 69):
        expected = {raw_joint_rows(path, t, b)[:, :3].astype(np.float32).tobytes() for b in range(2)}
        assert {rows[HANDSHAKE]["keypoint"][t, m].tobytes() for m in range(2)} == expected


def test_real_split_protocols(real_skeletons, tmp_path):
    # P001, P008, P015 are cross-subject training performers; cameras 2, 3 train cross-view; even setups train xset
    expected = {
        "xsub": {"train": ["S001C001P001R001A011", "S001C003P008R002A058", "S003C001P015R001A034"],
                 "test": ["S002C001P003R001A003", "S004C002P003R001A017"]},
        "xview": {"train": ["S001C003P008R002A058", "S004C002P003R001A017"],
                  "test": ["S001C001P001R001A011", "S002C001P003R001A003", "S003C001P015R001A034"]},
        "xset": {"train": ["S002C001P003R001A003", "S004C002P003R001A017"],
                 "test": ["S001C001P001R001A011", "S001C003P008R002A058", "S003C001P015R001A034"]},
    }
    for protocol, splits in expected.items():
        dataset = convert(real_skeletons, tmp_path / protocol, "--split", protocol)
        assert split_of_ids(dataset) == splits, protocol


def test_real_missing_skeleton_lists(real_skeletons, tmp_path):
    official = real_skeletons.parent / "metadata" / "NTU_RGBD_samples_with_missing_skeletons.txt"
    names = official.read_text().split()
    assert not set(REAL_FRAMES) & set(names)  # none of the 5 samples is on the official list
    assert len(convert(real_skeletons, tmp_path / "official", "--missing-list", official)["all"]) == 5
    # the official file with one of the samples appended: its 3 header lines are ignored, the sample is skipped
    extended = tmp_path / "extended.txt"
    extended.write_text(official.read_text().rstrip("\n") + "\nS004C002P003R001A017\n")
    dataset = convert(real_skeletons, tmp_path / "extended", "--missing-list", extended)
    assert sorted(str(s) for s in dataset["all"]["sample_id"]) == sorted(set(REAL_FRAMES) - {"S004C002P003R001A017"})
    dataset = convert(real_skeletons, tmp_path / "fixture", "--missing-list", NTU_FIXTURES / "missing_skeletons.txt")
    assert sorted(str(s) for s in dataset["all"]["sample_id"]) == sorted(set(REAL_FRAMES) - {"S002C001P003R001A003"})


def test_real_color_coordinates_are_pixels(real_skeletons, tmp_path):
    dataset = convert(real_skeletons, tmp_path / "color", "--coords", "color")["all"]
    assert dataset.features["keypoint"].shape == (None, 2, 25, 2)
    row = by_id(dataset)["S002C001P003R001A003"]
    expected = raw_joint_rows(real_skeletons / "S002C001P003R001A003.skeleton", 10)[:, 5:7].astype(np.float32)
    np.testing.assert_array_equal(row["keypoint"][10, 0], expected)
    assert row["img_shape"].tolist() == [1080, 1920]
    assert 0 < row["keypoint"][..., 0].max() <= 1920 and 0 < row["keypoint"][..., 1].max() <= 1080
