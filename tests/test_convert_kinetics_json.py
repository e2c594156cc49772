"""Kinetics-skeleton JSON converter (``kinetics-json``): hand-made clips, bad input, the 12 real sample clips."""

import functools
import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, real_data, run_cli
from conftest import make_converter as conftest_make_converter

from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.errors import DataFormatError
from ups_toolkit.resources import load_label_set

FIXTURE = FIXTURES / "kinetics_json"
LABEL_FILES = (
    "--label-file", FIXTURE / "kinetics_train_label.json", "--label-file", FIXTURE / "kinetics_val_label.json"
)


make_converter = functools.partial(conftest_make_converter, "kinetics-json")


def fixture_skeleton(k, conf):
    """Skeleton number k of the fixture: joint j at (0.1 k + 0.01 j, 0.5 + 0.02 j), every score = conf."""
    j = np.arange(18)
    return np.stack([0.1 * k + 0.01 * j, 0.5 + 0.02 * j], axis=-1).astype(np.float32), np.full(18, conf, np.float32)


def by_id(split):
    return {sample["sample_id"]: sample for sample in split}


def test_label_set_is_the_400_kinetics_names():
    classes = load_label_set("kinetics400")
    assert len(classes) == len(set(classes)) == 400
    assert classes[0] == "abseiling" and classes[172] == "jumping into pool" and classes[399] == "zumba"
    assert classes[208] == "passing American football (in game)"


def test_fixture_with_label_files(tmp_path):
    out = tmp_path / "kinetics"
    result = run_cli("convert", "kinetics-json", FIXTURE, out, *LABEL_FILES, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warning: 1 clips skipped: has_skeleton false in the label file" in result.stderr
    dataset = load_prepared(out)
    assert list(dataset["train"]["sample_id"]) == ["trainclip01"]
    assert list(dataset["test"]["sample_id"]) == ["validclip01"]  # emptyclip01 has has_skeleton: false
    info = prepared_info(out)
    assert (info["layout"], info["num_persons"], info["channels"]) == ("openpose18", 2, 2)

    clip = dataset["train"][0]
    assert clip["label"] == 0  # the name decides: label_index 3 in the clip is a rewritten index
    assert list(clip["img_shape"]) == [256, 340]
    keypoint, score = clip["keypoint"], clip["keypoint_score"]
    assert keypoint.shape == (4, 2, 18, 2) and score.shape == (4, 2, 18)
    assert not keypoint[0].any() and not score[0].any()  # frame_index 1 has no skeleton
    # frame_index 2: scores 0.2, 0.9, 0.5 -> skeletons 2 then 3
    for m, (k, conf) in enumerate([(2, 0.9), (3, 0.5)]):
        xy, s = fixture_skeleton(k, conf)
        np.testing.assert_array_equal(keypoint[1, m], xy)
        np.testing.assert_array_equal(score[1, m], s)
    # frame_index 3: one skeleton; joint 17 is stored as (0, 0) score 0, joint 16 keeps coordinates but has score 0
    xy, s = fixture_skeleton(4, 0.7)
    xy[16:] = 0
    s[16:] = 0
    np.testing.assert_array_equal(keypoint[2, 0], xy)
    np.testing.assert_array_equal(score[2, 0], s)
    assert not keypoint[2, 1].any()
    # frame_index 4: seven skeletons, only the first five compete (ST-GCN num_person_in = 5): 0.5 then 0.4
    np.testing.assert_array_equal(keypoint[3, 0], fixture_skeleton(5, 0.5)[0])
    np.testing.assert_array_equal(keypoint[3, 1], fixture_skeleton(4, 0.4)[0])

    val = dataset["test"][0]
    assert val["label"] == 399
    assert val["keypoint"].shape == (4, 2, 18, 2)  # frame_index 1, 2, 4: the missing frame 3 is empty
    assert not val["keypoint"][2].any()
    np.testing.assert_array_equal(val["keypoint"][3, 0], fixture_skeleton(3, 0.8)[0])


def test_person_options_and_pixels():
    converter = make_converter(FIXTURE / "kinetics_train", "--observe-persons", "0", "--num-persons", "3", "--pixels")
    (sample,) = converter.samples(progress=False)
    assert sample["_split"] == "train" and sample["keypoint"].shape == (4, 3, 18, 2)
    for m, (k, conf) in enumerate([(7, 0.95), (6, 0.9), (5, 0.5)]):  # every skeleton competes
        xy, s = fixture_skeleton(k, conf)
        np.testing.assert_allclose(sample["keypoint"][3, m], xy * np.float32([340, 256]), rtol=1e-6)
        np.testing.assert_array_equal(sample["keypoint_score"][3, m], s)
    assert not sample["keypoint"][2, 0, 16:].any()  # zero joints stay zero in pixels
    assert list(sample["img_shape"]) == [256, 340]


def test_label_from_name_without_label_file():
    converter = make_converter(FIXTURE / "kinetics_train")
    (sample,) = converter.samples(progress=False)
    assert sample["label"] == 0 and sample["_split"] == "train"
    assert converter.warnings == ["trainclip01: label_index 3 -> 0 (abseiling)"]


def test_split_from_label_file_when_folders_do_not_say(tmp_path):
    flat = tmp_path / "clips"
    flat.mkdir()
    shutil.copy(FIXTURE / "kinetics_train" / "trainclip01.json", flat)
    shutil.copy(FIXTURE / "kinetics_val" / "validclip01.json", flat)
    samples = list(make_converter(flat, *LABEL_FILES).samples(progress=False))
    assert {s["sample_id"]: s["_split"] for s in samples} == {"trainclip01": "train", "validclip01": "test"}
    assert {s["_split"] for s in make_converter(flat).samples(progress=False)} == {"all"}


def test_cli_empty_clip_without_label_file_exits_2(tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", "kinetics-json", FIXTURE, out, "--quiet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "emptyclip01.json: empty sequence" in lines[0]
    assert not out.exists() and not list(tmp_path.glob("out.*"))


def _edit(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _set_pose_value(record, value):
    record["data"][1]["skeleton"][0]["pose"][5] = value


BAD_CASES = {
    "nan": (lambda p: _edit(p, lambda r: _set_pose_value(r, float("nan"))), "non-finite"),
    "wrong_joint_count": (
        lambda p: _edit(p, lambda r: r["data"][1]["skeleton"][1]["pose"].__delitem__(slice(34, 36))),
        "frame_index 2, skeleton 1: 'pose' has 34 values, expected 36",
    ),
    "truncated": (lambda p: p.write_text(p.read_text()[:200]), "not a readable clip JSON"),
    "empty_sequence": (lambda p: _edit(p, lambda r: r.update(data=[])), "empty sequence"),
    "unknown_label": (lambda p: _edit(p, lambda r: r.update(label="juggling cats")), "not a Kinetics-400 class"),
    "duplicate_frame": (lambda p: _edit(p, lambda r: r["data"][2].update(frame_index=2)), "appears twice"),
    "zero_frame_index": (lambda p: _edit(p, lambda r: r["data"][0].update(frame_index=0)), "must be an integer >= 1"),
    "score_length": (lambda p: _edit(p, lambda r: r["data"][1]["skeleton"][0]["score"].pop()), "'score' has 17"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_clip_names_the_file(tmp_path, case):
    src = tmp_path / "kinetics_train"
    shutil.copytree(FIXTURE / "kinetics_train", src)
    damage, message = BAD_CASES[case]
    damage(src / "trainclip01.json")
    with pytest.raises(DataFormatError, match="trainclip01.json") as error:
        list(make_converter(src).samples(progress=False))
    assert message in str(error.value)


def test_clip_missing_from_label_file_is_an_error():
    converter = make_converter(FIXTURE, "--label-file", FIXTURE / "kinetics_val_label.json")
    with pytest.raises(DataFormatError, match="trainclip01.json: clip 'trainclip01' is not listed"):
        list(converter.samples(progress=False))


# ---- the 12 real clips (docs/datasets.md §7) ----------------------------------------------------------------------
TRUE_TRAIN_LABELS = {"___dTOdxzXY": 172, "___qijXy2f0": 234, "__0muxHV-Uw": 132, "__4frZhaVDs": 32, "__6LvmReo3Y": 262}


def reference_selection(path, keep=2, observe=5):
    """Straight from the raw JSON: per frame, the total scores of the persons the ST-GCN rule keeps."""
    record = json.loads(path.read_text())
    num_frames = max(f["frame_index"] for f in record["data"])
    totals = np.zeros((num_frames, keep))
    most = 0
    for frame in record["data"]:
        most = max(most, len(frame["skeleton"]))
        best = sorted((sum(s["score"]) for s in frame["skeleton"][:observe]), reverse=True)[:keep]
        totals[frame["frame_index"] - 1, : len(best)] = best
    return totals, most


def test_real_kinetics_samples(tmp_path):
    data = real_data("Kinetics_skeleton_samples")
    out = tmp_path / "kinetics"
    result = run_cli("convert", "kinetics-json", data, out, "--quiet")
    assert result.returncode == 0, result.stderr
    dataset = load_prepared(out)
    train, test = by_id(dataset["train"]), by_id(dataset["test"])
    assert len(train) + len(test) == 12 and len(test) == 7
    assert {k: int(v["label"]) for k, v in train.items()} == TRUE_TRAIN_LABELS
    val_labels = json.loads((data / "meta" / "kinetics_val_label.json").read_text())
    assert {k: int(v["label"]) for k, v in test.items()} == {k: val_labels[k]["label_index"] for k in test}
    lengths = sorted(len(v["keypoint"]) for v in {**train, **test}.values())
    assert (lengths[0], lengths[-1]) == (164, 299)

    most_seen = set()
    for name, sample in {**train, **test}.items():
        folder = "kinetics_train_samples" if name in train else "kinetics_val_samples"
        totals, most = reference_selection(data / folder / f"{name}.json")
        most_seen.add(most)
        np.testing.assert_allclose(sample["keypoint_score"].sum(axis=-1), totals, atol=1e-4)
    assert max(most_seen) == 11 and min(most_seen) == 2  # 0..11 skeletons per frame

    # __PYrzYbzKE, frame_index 156: 11 skeletons; the first five total 10.834, 11.417, 10.508, 10.873, 5.848
    clip = test["__PYrzYbzKE"]
    np.testing.assert_array_equal(clip["keypoint"][155, 0, :2], np.float32([[0.737, 0.446], [0.767, 0.486]]))
    np.testing.assert_array_equal(clip["keypoint"][155, 1, :2], np.float32([[0.925, 0.402], [0.937, 0.443]]))
    np.testing.assert_array_equal(clip["keypoint_score"][155, 0, :2], np.float32([0.693, 0.843]))
    # __NrybzYzUg: 234 of its 299 frames hold no skeleton and stay zero
    empty_frames = ~test["__NrybzYzUg"]["keypoint_score"].reshape(299, -1).any(axis=1)
    assert empty_frames.sum() == 234


def test_real_val_clips_with_label_file():
    data = real_data("Kinetics_skeleton_samples")
    label_file = data / "meta" / "kinetics_val_label.json"
    converter = make_converter(data / "kinetics_val_samples", "--label-file", label_file)
    samples = list(converter.samples(progress=False))
    assert len(samples) == 7 and {s["_split"] for s in samples} == {"test"}
    assert converter.warnings == []  # the val clips' label_index agrees with the names
