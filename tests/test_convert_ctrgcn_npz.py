"""CTR-GCN / InfoGCN ``.npz`` converter (``ctrgcn-npz``): tiny fixture, round trip from NTU-like arrays, bad input.

No real file of this format is in ../shared/data, so the round trip builds one exactly as docs/formats.md §3 lays it
out: x (N, 300, 150) = 2 persons x 25 joints x xyz per frame, person-major, zero-padded; y one-hot.
"""

import functools
import zipfile

import numpy as np
import pytest
from conftest import FIXTURES, run_cli
from conftest import make_converter as conftest_make_converter

from ups_toolkit.data.converters.ctrgcn_npz import open_npz_arrays
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.errors import DataFormatError

FIXTURE = FIXTURES / "ctrgcn_npz" / "NTU60_CS_tiny.npz"


make_converter = functools.partial(conftest_make_converter, "ctrgcn-npz")


def ntu_like(rng, num_frames, persons):
    """(T, 2, 25, 3) skeletons in camera metres: a body drifting over time; the second person zero when absent."""
    out = np.zeros((num_frames, 2, 25, 3), np.float32)
    for m in range(persons):
        body = rng.normal(0, 0.3, size=(25, 3)) + np.array([0.6 * m, 0.0, 3.0])
        out[:, m] = body + np.cumsum(rng.normal(0, 0.01, size=(num_frames, 25, 3)), axis=0)
    return out


def pack(sequences, labels, num_classes, frames=300):
    """Sequences (T, 2, 25, 3) -> CTR-GCN arrays x (N, frames, 150) zero-padded, y one-hot (N, num_classes)."""
    x = np.zeros((len(sequences), frames, 150), np.float32)
    y = np.zeros((len(sequences), num_classes), np.float32)
    for i, (seq, label) in enumerate(zip(sequences, labels)):
        x[i, : len(seq)] = seq.reshape(len(seq), 150)
        y[i, label] = 1
    return x, y


def write_npz(path, parts, num_classes, compressed=False):
    arrays = {}
    for part, (sequences, labels) in parts.items():
        arrays[f"x_{part}"], arrays[f"y_{part}"] = pack(sequences, labels, num_classes)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def test_fixture(tmp_path):
    out = tmp_path / "ntu"
    result = run_cli("convert", "ctrgcn-npz", FIXTURE, out, "--quiet")
    assert result.returncode == 0, result.stderr
    dataset = load_prepared(out)
    info = prepared_info(out)
    assert (info["layout"], info["num_persons"], info["channels"], len(info["class_names"])) == ("ntu25", 2, 3, 60)
    raw = np.load(FIXTURE)  # our own fixture: plain numeric arrays
    for part, lengths, labels in [("train", [5, 7, 4], [3, 58, 0]), ("test", [6, 3], [59, 10])]:
        split = dataset[part]
        assert list(split["sample_id"]) == [f"{part}_{i:06d}" for i in range(len(lengths))]
        assert [int(v) for v in split["label"]] == labels
        for i, sample in enumerate(split):
            t = lengths[i]
            assert sample["keypoint"].shape == (t, 2, 25, 3)
            np.testing.assert_array_equal(sample["keypoint"], raw[f"x_{part}"][i, :t].reshape(t, 2, 25, 3))
    assert not dataset["train"][0]["keypoint"][:, 1].any()  # one-person sample: second person zero
    assert dataset["train"][1]["keypoint"][:, 1].any()


def test_round_trip_from_ntu_like_arrays(tmp_path):
    rng = np.random.default_rng(7)
    train = [ntu_like(rng, t, p) for t, p in [(300, 2), (1, 1), (45, 1), (120, 2)]]
    train[2][10] = 0  # an all-zero frame inside a sequence is data, not padding: it stays
    test = [ntu_like(rng, t, p) for t, p in [(64, 2), (17, 1)]]
    src = write_npz(tmp_path / "NTU120_CSub.npz", {"train": (train, [0, 119, 60, 5]), "test": (test, [7, 100])}, 120)
    assert isinstance(open_npz_arrays(src)["x_train"], np.memmap)  # np.savez stores members: memory-mapped
    out = tmp_path / "out"
    result = run_cli("convert", "ctrgcn-npz", src, out, "--quiet")
    assert result.returncode == 0, result.stderr
    dataset = load_prepared(out)
    assert len(prepared_info(out)["class_names"]) == 120  # 120 one-hot columns -> ntu120
    for part, sequences, labels in [("train", train, [0, 119, 60, 5]), ("test", test, [7, 100])]:
        assert [int(v) for v in dataset[part]["label"]] == labels
        for sample, seq in zip(dataset[part], sequences):
            np.testing.assert_array_equal(sample["keypoint"], seq)


def test_compressed_archive_is_read_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    parts = {"train": ([ntu_like(rng, 9, 1)], [4]), "test": ([ntu_like(rng, 3, 2)], [2])}
    arrays = open_npz_arrays(write_npz(tmp_path / "c.npz", parts, 60, compressed=True))
    assert type(arrays["x_train"]) is np.ndarray and arrays["x_train"].shape == (1, 300, 150)


def test_split_protocol_and_label_set_option(tmp_path):
    samples = list(make_converter(FIXTURE).samples(progress=False))
    assert [s["_split"] for s in samples] == ["train"] * 3 + ["test"] * 2
    assert [s["_split"] for s in make_converter(FIXTURE, split="file").samples(progress=False)] == [
        s["_split"] for s in samples
    ]
    with pytest.raises(DataFormatError, match="60 one-hot columns but label set 'ntu120' has 120"):
        make_converter(FIXTURE, "--label-set", "ntu120").spec()


def _good_parts(rng):
    return {"train": ([ntu_like(rng, 8, 1), ntu_like(rng, 5, 2)], [1, 2]), "test": ([ntu_like(rng, 4, 1)], [3])}


def _damage(path, case):
    rng = np.random.default_rng(3)
    parts = _good_parts(rng)
    if case == "truncated":
        write_npz(path, parts, 60)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "not a readable .npz archive"
    if case == "corrupt":
        path.write_bytes(b"this is not a zip archive at all")
        return "not a readable .npz archive"
    arrays = {}
    for part, (sequences, labels) in parts.items():
        arrays[f"x_{part}"], arrays[f"y_{part}"] = pack(sequences, labels, 60)
    if case == "nan":
        arrays["x_train"][1, 2, 40] = np.nan
        message = "sample 'train_000001': 1 non-finite coordinates"
    elif case == "wrong_joint_count":
        arrays["x_train"] = arrays["x_train"][:, :, :144]  # 2 persons x 24 joints x 3
        message = "x_train has shape (2, 300, 144), expected (N, T, 150)"
    elif case == "empty_sequence":
        arrays["x_test"][0] = 0
        message = "sample 'test_000000': x_test[0] is all zeros: empty sequence"
    elif case == "not_one_hot":
        arrays["y_train"][0, 5] = 1
        message = "sample 'train_000000': y_train[0] is not one-hot (2 positive entries)"
    elif case == "missing_key":
        del arrays["y_test"]
        message = "missing key 'y_test'"
    elif case == "object_array":
        arrays["y_test"] = np.array([{"label": 3}], dtype=object)
        message = "key 'y_test' is an object array"
    np.savez(path, **arrays)
    return message


BAD_CASES = ["corrupt", "empty_sequence", "missing_key", "nan", "not_one_hot", "object_array", "truncated",
             "wrong_joint_count"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_names_the_file(tmp_path, case):
    path = tmp_path / "NTU60_CV.npz"
    message = _damage(path, case)
    with pytest.raises(DataFormatError, match="NTU60_CV.npz") as error:
        converter = make_converter(path)
        converter.spec()
        list(converter.samples(progress=False))
    assert message in str(error.value)


def test_object_array_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    _damage(path, "object_array")
    with zipfile.ZipFile(path) as archive:  # the member really is a pickle inside a .npy
        assert b"\x80" in archive.read("y_test.npy")
    with pytest.raises(DataFormatError, match="object array"):
        open_npz_arrays(path)


@pytest.mark.parametrize("case", ["truncated", "empty_sequence"])
def test_cli_bad_input_exits_2(tmp_path, case):
    path = tmp_path / "NTU60_CV.npz"
    _damage(path, case)
    out = tmp_path / "out"
    result = run_cli("convert", "ctrgcn-npz", path, out, "--quiet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "NTU60_CV.npz" in lines[0]
    assert not out.exists() and not list(tmp_path.glob("out.*"))
