"""ST-GCN lineage ``.npy`` + label pickle converter (``stgcn-npy``): UmURL-style NTU and ST-GCN-style Kinetics
fixtures, round trips from NTU-like arrays (ST-GCN zero padding, CrosSCLR/AimCLR ``_position`` + ``_label.npy``), bad
input. No real file of this format is in ../shared/data; the fixtures follow docs/formats.md §4 with T = 12 / 10
instead of 300 frames to stay small (the converter reads T from the array).
"""

import functools
import os
import pickle
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, run_cli
from conftest import make_converter as conftest_make_converter

from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.errors import DataFormatError, UnsafePickleError

NTU = FIXTURES / "stgcn_npy" / "ntu"
KINETICS = FIXTURES / "stgcn_npy" / "kinetics"


make_converter = functools.partial(conftest_make_converter, "stgcn-npy")


def ntu_like(rng, num_frames, persons):
    """(T, 2, 25, 3) skeletons in camera metres; the second person zero when absent."""
    out = np.zeros((num_frames, 2, 25, 3), np.float32)
    for m in range(persons):
        body = rng.normal(0, 0.3, size=(25, 3)) + np.array([0.6 * m, 0.0, 3.0])
        out[:, m] = body + np.cumsum(rng.normal(0, 0.01, size=(num_frames, 25, 3)), axis=0)
    return out


def pack(sequences, frames):
    """Time-first (T, M, V, C) sequences -> ST-GCN array (N, C, frames, V, M), zero-padded."""
    _, m, v, c = sequences[0].shape
    data = np.zeros((len(sequences), c, frames, v, m), np.float32)
    for i, seq in enumerate(sequences):
        data[i, :, : len(seq)] = seq.transpose(3, 0, 2, 1)
    return data


def test_fixture_umurl_ntu(tmp_path):
    out = tmp_path / "ntu"
    result = run_cli("convert", "stgcn-npy", NTU, out, "--quiet")
    assert result.returncode == 0, result.stderr
    dataset = load_prepared(out)
    info = prepared_info(out)
    assert (info["layout"], info["num_persons"], info["channels"], len(info["class_names"])) == ("ntu25", 2, 3, 60)
    assert list(dataset["train"]["sample_id"]) == ["S001C001P001R001A001", "S002C002P003R002A050"]
    assert list(dataset["test"]["sample_id"]) == ["S003C003P002R001A060"]  # part val -> split test
    second = dataset["train"][1]
    assert (second["subject"], second["view"], second["setup"], second["replication"]) == ("P003", "C002", 2, 2)
    for part, split, lengths, labels in [("train", "train", [7, 12], [0, 49]), ("val", "test", [5], [59])]:
        raw = np.load(NTU / f"{part}_data_joint.npy")
        assert list(np.load(NTU / f"{part}_num_frame.npy")) == lengths
        assert [int(v) for v in dataset[split]["label"]] == labels
        for i, sample in enumerate(dataset[split]):
            t = lengths[i]
            # UmURL repeats the sequence into the padding: only num_frame tells where it ends
            assert raw[i, :, t:].any() == (t < raw.shape[2])
            np.testing.assert_array_equal(sample["keypoint"], raw[i, :, :t].transpose(1, 3, 2, 0))


def test_without_num_frame_the_last_nonzero_frame_ends_the_sequence(tmp_path):
    src = tmp_path / "xsub"
    shutil.copytree(NTU, src)
    for part in ("train", "val"):
        (src / f"{part}_num_frame.npy").unlink()
    lengths = [len(s["keypoint"]) for s in make_converter(src).samples(progress=False)]
    assert lengths == [12, 12, 12]  # the repeated padding of UmURL arrays is not zero: hence the num_frame file


def test_fixture_stgcn_kinetics_scores():
    converter = make_converter(KINETICS)
    spec = converter.spec()
    assert (spec.layout, spec.channels, spec.with_score, len(spec.class_names)) == ("openpose18", 2, True, 400)
    samples = list(converter.samples(progress=False))
    assert [s["sample_id"] for s in samples] == ["___dTOdxzXY", "__NrybzYzUg", "clip_zumba1"]
    assert [s["label"] for s in samples] == [172, 0, 399]  # numpy int64 labels in the pickle
    assert [s["_split"] for s in samples] == ["train", "test", "test"]
    assert [len(s["keypoint"]) for s in samples] == [7, 10, 4]  # zero padding trimmed
    raw = np.load(KINETICS / "train_data.npy")
    np.testing.assert_array_equal(samples[0]["keypoint"], raw[0, :2, :7].transpose(1, 3, 2, 0))
    np.testing.assert_array_equal(samples[0]["keypoint_score"], raw[0, 2, :7].transpose(0, 2, 1))
    assert not samples[0]["keypoint"][:, :, 14:].any() and not samples[0]["keypoint_score"][:, :, 14:].any()
    # --channels xyz reads the same arrays as three coordinates
    assert make_converter(KINETICS, "--channels", "xyz").spec().channels == 3


def test_round_trip_stgcn_zero_padded(tmp_path):
    rng = np.random.default_rng(11)
    parts = {"train": [ntu_like(rng, t, p) for t, p in [(300, 2), (1, 1), (80, 1)]],
             "val": [ntu_like(rng, t, p) for t, p in [(33, 2), (150, 1)]]}
    labels = {"train": [3, 119, 64], "val": [0, 77]}
    names = {"train": ["S018C001P042R001A064", "S020C002P045R002A120", "S019C003P046R001A065"],
             "val": ["S017C001P003R002A001", "S021C002P050R001A078"]}
    src = tmp_path / "xsetup"
    src.mkdir()
    for part, sequences in parts.items():
        np.save(src / f"{part}_data.npy", pack(sequences, 300))  # ST-GCN: no num_frame, zero padding
        with open(src / f"{part}_label.pkl", "wb") as fh:
            pickle.dump(([n + ".skeleton" for n in names[part]], labels[part]), fh)
    out = tmp_path / "out"
    result = run_cli("convert", "stgcn-npy", src, out, "--quiet")
    assert result.returncode == 0, result.stderr
    dataset = load_prepared(out)
    assert len(prepared_info(out)["class_names"]) == 120  # a label >= 60 -> ntu120
    for part, split in [("train", "train"), ("val", "test")]:
        assert list(dataset[split]["sample_id"]) == names[part]
        assert [int(v) for v in dataset[split]["label"]] == labels[part]
        for sample, seq in zip(dataset[split], parts[part]):
            np.testing.assert_array_equal(sample["keypoint"], seq)


def test_round_trip_crossclr_position_arrays(tmp_path):
    rng = np.random.default_rng(5)
    sequences = [ntu_like(rng, 50, p) for p in (1, 2, 1)]  # CrosSCLR / AimCLR resample every sample to 50 frames
    src = tmp_path / "xview"
    src.mkdir()
    np.save(src / "train_position.npy", pack(sequences[:2], 50))
    np.save(src / "train_label.npy", np.array([[5], [9]], np.int64))
    np.save(src / "val_position.npy", pack(sequences[2:], 50))
    np.save(src / "val_label.npy", np.array([[59]], np.int64))
    samples = list(make_converter(src).samples(progress=False))
    assert [s["sample_id"] for s in samples] == ["train_000000", "train_000001", "test_000000"]
    assert [s["label"] for s in samples] == [5, 9, 59]
    for sample, seq in zip(samples, sequences):
        np.testing.assert_array_equal(sample["keypoint"], seq)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _damage(src, case):
    """Break one file of a copy of the NTU fixture; returns (file name expected in the error, message part)."""
    data_file = src / "train_data_joint.npy"
    if case == "nan":
        data = np.load(data_file)
        data[1, 0, 3, 4, 0] = np.nan
        np.save(data_file, data)
        return "train_data_joint.npy", "non-finite coordinates"
    if case == "wrong_joint_count":
        for part in ("train", "val"):
            np.save(src / f"{part}_data_joint.npy", np.load(src / f"{part}_data_joint.npy")[:, :, :, :24])
        return "train_data_joint.npy", "layout 'ntu25' has 25 joints but the data has 24"
    if case == "parts_disagree":
        np.save(data_file, np.load(data_file)[:, :, :, :24])
        return "val_data_joint.npy", "(C, V, M) = (3, 25, 2) but train_data_joint.npy has (3, 24, 2)"
    if case == "truncated":
        content = data_file.read_bytes()
        data_file.write_bytes(content[: len(content) - 1000])
        return "train_data_joint.npy", "not a readable numeric .npy array"
    if case == "corrupt":
        data_file.write_bytes(b"garbage, not an array")
        return "train_data_joint.npy", "not a .npy file"
    if case == "empty_sequence":
        np.save(src / "val_num_frame.npy", np.array([0]))
        return "val_num_frame.npy", "num_frame[0] = 0: expected an integer 1..12"
    if case == "all_zero_sample":
        (src / "train_num_frame.npy").unlink()
        data = np.load(data_file)
        data[0] = 0
        np.save(data_file, data)
        return "train_data_joint.npy", "sample 0 is all zeros: empty sequence"
    if case == "label_count":
        (src / "train_label.pkl").write_bytes(pickle.dumps((["S001C001P001R001A001"], [0]), protocol=2))
        return "train_label.pkl", "1 labels for 2 samples"
    if case == "not_a_tuple":
        (src / "train_label.pkl").write_bytes(pickle.dumps({"labels": [0, 1]}, protocol=2))
        return "train_label.pkl", "expected the pickled tuple"
    if case == "unsafe_pickle":
        (src / "train_label.pkl").write_bytes(pickle.dumps((["a", "b"], [0, _RunsCode()]), protocol=2))
        return "train_label.pkl", "refusing to unpickle global posix.system"
    raise AssertionError(case)


BAD_CASES = ["all_zero_sample", "corrupt", "empty_sequence", "label_count", "nan", "not_a_tuple", "parts_disagree",
             "truncated", "unsafe_pickle", "wrong_joint_count"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_names_the_file(tmp_path, case):
    src = tmp_path / "xsub"
    shutil.copytree(NTU, src)
    name, message = _damage(src, case)
    argv = ("--layout", "ntu25") if case == "wrong_joint_count" else ()
    with pytest.raises((DataFormatError, UnsafePickleError), match=name.replace(".", r"\.")) as error:
        converter = make_converter(src, *argv)
        converter.spec()
        list(converter.samples(progress=False))
    assert message in str(error.value)


@pytest.mark.parametrize("case", ["truncated", "unsafe_pickle"])
def test_cli_bad_input_exits_2(tmp_path, case):
    src = tmp_path / "xsub"
    shutil.copytree(NTU, src)
    name, _ = _damage(src, case)
    out = tmp_path / "out"
    result = run_cli("convert", "stgcn-npy", src, out, "--quiet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], result.stderr
    assert "must never run" not in result.stdout + result.stderr
    assert not out.exists() and not list(tmp_path.glob("out.*"))


def test_unknown_joint_count_needs_a_layout(tmp_path):
    src = tmp_path / "odd"
    src.mkdir()
    np.save(src / "train_data.npy", np.ones((1, 3, 4, 17, 1), np.float32))
    (src / "train_label.pkl").write_bytes(pickle.dumps((["x"], [0])))
    with pytest.raises(Exception, match="V = 17 joints has no default layout"):
        make_converter(src).spec()
    converter = make_converter(src, "--layout", "h36m17", "--label-set", "ntu60")
    (sample,) = converter.samples(progress=False)
    assert sample["layout"] == "h36m17" and sample["keypoint"].shape == (4, 1, 17, 3)
