"""Prepared datasets: atomic writing, overwrite rules, Arrow and Parquet round trips, no stale cache, collate."""

import shutil

import numpy as np
import pytest
from conftest import FIXTURES, run_cli

from ups_toolkit.data.cli import main
from ups_toolkit.data.collate import pad_collate
from ups_toolkit.data.converters.base import DatasetSpec
from ups_toolkit.data.prepared import INFO_FILE, load_prepared, prepared_info, write_prepared
from ups_toolkit.errors import ConfigError, DataFormatError

NTU_GOOD = FIXTURES / "ntu-skeleton" / "good"
NTU_TRUNCATED = FIXTURES / "ntu-skeleton" / "bad" / "S001C001P001R001A002.skeleton"
SPEC = DatasetSpec(layout="coco17", num_persons=2, channels=2, class_names=["sit", "stand", "walk"], with_score=True)


def make_sample(sample_id, frames, persons, split, label=0, seed=0):
    rng = np.random.default_rng(seed)
    keypoint = np.zeros((frames, 2, 17, 2), np.float32)
    keypoint[:, :persons] = rng.uniform(0, 100, (frames, persons, 17, 2))
    score = np.zeros((frames, 2, 17), np.float32)
    score[:, :persons] = rng.uniform(0, 1, (frames, persons, 17))
    return {"keypoint": keypoint, "keypoint_score": score, "layout": "coco17", "label": label, "fps": 30.0,
            "sample_id": sample_id, "subject": "", "view": "", "setup": -1, "replication": -1, "source_file": "",
            "_split": split}


SAMPLES = [make_sample("a", 3, 1, "train", 0, 1), make_sample("b", 7, 2, "train", 2, 2),
           make_sample("c", 5, 2, "test", 1, 3)]


def leftovers(out):
    """Anything a write to ``out`` may leave beside it: the folder itself, ``out.tmp-*``, ``out.old-*``."""
    return sorted(p.name for p in out.parent.glob(f"{out.name}*"))


def ntu_ids(path):
    return sorted(str(s) for s in load_prepared(path)["all"]["sample_id"])


# ---- atomic writing ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("error", [DataFormatError("bad frame", file="x.skeleton", line=7), RuntimeError("boom")])
def test_failure_mid_way_leaves_no_output_and_no_temporary_folder(tmp_path, error):
    def samples():
        yield SAMPLES[0]
        yield SAMPLES[1]
        raise error

    out = tmp_path / "out"
    # a user error comes out as itself (the CLI prints it on one line), not wrapped by datasets
    expected = DataFormatError if isinstance(error, DataFormatError) else Exception
    with pytest.raises(expected) as caught:
        write_prepared(samples(), out, spec=SPEC, fingerprint="f", progress=False)
    if isinstance(error, DataFormatError):
        assert caught.value is error
    assert leftovers(out) == []


def test_cli_failure_mid_way_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(NTU_GOOD, src)
    late = src / "S009C001P001R001A002.skeleton"  # sorts after the good files: it fails mid-way
    shutil.copy(NTU_TRUNCATED, late)
    out = tmp_path / "out"
    result = run_cli("convert", "ntu-skeleton", src, out, "--quiet")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and f"{late}:" in result.stderr
    assert leftovers(out) == []


def test_existing_dataset_survives_a_failed_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", "ntu-skeleton", str(NTU_GOOD), str(out), "--quiet"]) == 0
    before = load_prepared(out)["all"]
    ids, first = ntu_ids(out), before[0]["keypoint"].copy()
    src = tmp_path / "src"
    shutil.copytree(NTU_GOOD, src)
    shutil.copy(NTU_TRUNCATED, src / "S009C001P001R001A002.skeleton")
    assert main(["convert", "ntu-skeleton", str(src), str(out), "--quiet", "--overwrite"]) == 2
    assert "S009C001P001R001A002.skeleton" in capsys.readouterr().err
    assert leftovers(out) == ["out"]
    assert ntu_ids(out) == ids
    np.testing.assert_array_equal(load_prepared(out)["all"][0]["keypoint"], first)


def test_refuses_to_overwrite_without_the_flag(tmp_path):
    out = tmp_path / "out"
    one = NTU_GOOD / "S001C001P001R001A001.skeleton"
    assert main(["convert", "ntu-skeleton", str(one), str(out), "--quiet"]) == 0
    result = run_cli("convert", "ntu-skeleton", NTU_GOOD, out, "--quiet")
    assert result.returncode == 2
    message = f"error: output {out} already exists (pass --overwrite to replace it)"
    assert result.stderr.strip().splitlines() == [message]
    assert ntu_ids(out) == ["S001C001P001R001A001"]
    with pytest.raises(ConfigError, match="already exists"):
        write_prepared(iter(SAMPLES), out, spec=SPEC, fingerprint="f", progress=False)
    assert main(["convert", "ntu-skeleton", str(NTU_GOOD), str(out), "--quiet", "--overwrite"]) == 0
    assert len(ntu_ids(out)) == 4 and leftovers(out) == ["out"]


# ---- round trips ---------------------------------------------------------------------------------------------------
def assert_same_samples(dataset):
    assert sorted(dataset) == ["test", "train"]
    for name in dataset:
        feature = dataset[name].features["keypoint"]
        assert type(feature).__name__ == "Array4D" and feature.shape == (None, 2, 17, 2) and feature.dtype == "float32"
        assert dataset[name].features["label"].names == ["sit", "stand", "walk"]
    rows = {str(r["sample_id"]): r for name in dataset for r in dataset[name]}
    for sample in SAMPLES:
        row = rows[sample["sample_id"]]
        assert row["keypoint"].dtype == np.float32
        np.testing.assert_array_equal(row["keypoint"], sample["keypoint"])
        np.testing.assert_array_equal(row["keypoint_score"], sample["keypoint_score"])
        assert int(row["label"]) == sample["label"]
    assert [str(s) for s in dataset["train"]["sample_id"]] == ["a", "b"]


def test_round_trip_arrow_then_parquet(tmp_path):
    out = tmp_path / "out"
    write_prepared(iter(SAMPLES), out, spec=SPEC, fingerprint="f", info={"converter": "test"}, progress=False)
    assert_same_samples(load_prepared(out))
    assert prepared_info(out)["splits"] == {"train": 2, "test": 1}
    parquet = tmp_path / "parquet"
    result = run_cli("export-parquet", out, parquet)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in parquet.iterdir()) == sorted([INFO_FILE, "test.parquet", "train.parquet"])
    assert_same_samples(load_prepared(parquet))
    single = load_prepared(parquet / "test.parquet")  # one file: its stem names the split
    np.testing.assert_array_equal(single["test"][0]["keypoint"], SAMPLES[2]["keypoint"])
    with pytest.raises(ConfigError, match="has no split 'val'"):
        load_prepared(out, split="val")


def test_rewritten_input_gives_new_values(tmp_path):
    src = tmp_path / "clip.npz"
    out, parquet = tmp_path / "out", tmp_path / "parquet"
    for value in (1.0, 2.0):  # same path, same shape, same options: only the bytes change
        np.savez(src, keypoint=np.full((4, 17, 2), value, np.float32))
        assert main(["convert", "arrays", str(src), str(out), "--quiet", "--layout", "coco17", "--overwrite"]) == 0
        assert main(["export-parquet", str(out), str(parquet)]) == 0
        assert load_prepared(out)["all"][0]["keypoint"][0, 0, 0, 0] == value
        assert load_prepared(parquet)["all"][0]["keypoint"][0, 0, 0, 0] == value
    assert prepared_info(out)["fingerprint"] != ""


def test_same_fingerprint_never_returns_stale_rows(tmp_path):
    # even a careless converter that reuses a fingerprint gets the new rows: the cache lives in the temporary folder
    out = tmp_path / "out"
    write_prepared(iter(SAMPLES[:1]), out, spec=SPEC, fingerprint="same", progress=False)
    write_prepared(iter(SAMPLES[1:]), out, spec=SPEC, fingerprint="same", overwrite=True, progress=False)
    assert sorted(str(s) for name, part in load_prepared(out).items() for s in part["sample_id"]) == ["b", "c"]


# ---- collate -------------------------------------------------------------------------------------------------------
def test_pad_collate_pads_time_and_persons():
    short = {"keypoint": np.ones((3, 1, 17, 2), np.float32), "keypoint_score": np.ones((3, 1, 17), np.float32),
             "label": 2, "sample_id": "short"}
    long = {"keypoint": np.full((5, 2, 17, 2), 2.0, np.float32),
            "keypoint_score": np.full((5, 2, 17), 0.5, np.float32), "label": 0, "sample_id": "long"}
    batch = pad_collate([short, long])
    keypoint = batch["keypoint"].numpy()
    assert keypoint.shape == (2, 5, 2, 17, 2) and keypoint.dtype == np.float32
    assert (keypoint[0, :3, 0] == 1).all() and not keypoint[0, 3:].any() and not keypoint[0, :, 1].any()
    assert (keypoint[1] == 2).all()
    assert batch["frame_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["length"].tolist() == [3, 5] and batch["label"].tolist() == [2, 0]
    score = batch["keypoint_score"].numpy()
    assert score.shape == (2, 5, 2, 17) and score[0, :3, 0].all()
    assert not score[0, 3:].any() and not score[0, :, 1].any()
    assert batch["sample_id"] == ["short", "long"]


def test_pad_collate_on_prepared_rows(tmp_path):
    out = tmp_path / "out"
    write_prepared(iter(SAMPLES), out, spec=SPEC, fingerprint="f", progress=False)
    train = load_prepared(out, split="train")
    batch = pad_collate([train[0], train[1]])
    assert tuple(batch["keypoint"].shape) == (2, 7, 2, 17, 2)
    assert batch["length"].tolist() == [3, 7] and batch["label"].tolist() == [0, 2]
    np.testing.assert_array_equal(batch["keypoint"][0, :3].numpy(), SAMPLES[0]["keypoint"])
    assert not batch["keypoint"][0, 3:].any()
    assert batch["frame_mask"].sum(dim=1).tolist() == [3, 7]
