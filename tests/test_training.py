"""Multi-task training (docs/design.md D9) and evaluation (D11): task examples, schedule, cycle, scoring, a tiny run
end to end, and the demo config's full run (marked ``demo``)."""

import json
import math
import sys

import numpy as np
import pytest
import yaml
from training_helpers import environment, one_thread, run, synthetic_root, tiny_config

from ups_toolkit.errors import ConfigError, DataFormatError
from ups_toolkit.skeleton.transforms import resize_frames
from ups_toolkit.tokenization import build_vocabulary
from ups_toolkit.tokenization.targets import ranges_from_percentiles
from ups_toolkit.training.config import ExperimentConfig, load_config
from ups_toolkit.training.loop import WarmupCosine, parameter_groups, task_cycle
from ups_toolkit.kinds.segments import merge_touching, merge_window_segments, temporal_nms, window_targets
from ups_toolkit.training.setup import build_tasks


@pytest.fixture(scope="module")
def vocab():
    return build_vocabulary()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    path = tiny_config(folder, tasks=("action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection"))
    data = yaml.safe_load(path.read_text())
    for name in data["tasks"]:
        data["tasks"][name]["transforms"] = []  # raw inputs: the examples can be checked against the data
    data["tasks"]["early_action_prediction"] = {
        "train": {"path": "{synthetic}/ntu25_3d", "split": "train"},
        "eval": {"path": "{synthetic}/ntu25_3d", "split": "test"}, "eval_obs_ratios": [0.2, 0.5]}
    data["tasks"]["motion_prediction"] = {
        "train": {"path": "{synthetic}/h36m17_3d", "split": "train"},
        "eval": {"path": "{synthetic}/h36m17_3d", "split": "test"}, "eval_windows": 2,
        "overrides": {"input": {"observed_frames": 24}, "output": {"frames": 12}}}
    path.write_text(yaml.safe_dump(data))
    return load_config(str(path))


@pytest.fixture(scope="module")
def states(config, vocab):
    return {s.name: s for s in build_tasks(config, vocab)}


# ----------------------------------------------------------------------------------------------------------------------
# schedule, cycle, optimizer groups


def test_round_robin_cycle_repeats_tasks_by_weight():
    config = ExperimentConfig({"tasks": {"a": {"weight": 2}, "b": {"weight": 1}, "c": {"weight": 3}}}, "x", "x")
    assert task_cycle(config, ["a", "b", "c"]) == ["a", "b", "c", "a", "c", "c"]


def test_warmup_then_cosine_to_one_percent():
    schedule = WarmupCosine(total=100, warmup_ratio=0.05, min_ratio=0.01)
    assert [schedule(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert schedule(5) == pytest.approx(1.0)
    assert schedule(100) == pytest.approx(0.01)
    halfway = 5 + (100 - 5) / 2
    assert schedule(halfway) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(schedule(s) >= schedule(s + 1) for s in range(5, 100))


def test_no_weight_decay_on_biases_norms_and_embeddings(config, states, vocab):
    from ups_toolkit.training.setup import build_model

    table = np.zeros((len(vocab), 8), np.float32)
    model = build_model(config, list(states.values()), vocab, table, "zeros")
    decay, no_decay = parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    free = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decayed | free == set(names.values()) and not decayed & free
    assert all(model.get_parameter(n).ndim == 2 for n in decayed)
    for n in ("decoder.vocab.residual", "decoder.vocab.bias", "decoder.positions", "decoder.stream_embedding",
              "encoder.dste.router.task_embeddings", "encoder.dste.router.block_embeddings",
              "encoder.dste.embeddings.ntu25.spatial_pe", "decoder.norm.weight"):
        assert n in free, n
    assert "decoder.vocab.projection.weight" in decayed and "decoder.layers.0.mlp.0.weight" in decayed


def test_decoder_learning_rate_scale_gets_its_own_groups(config, states, vocab):
    from ups_toolkit.training.setup import build_model

    table = np.zeros((len(vocab), 8), np.float32)
    model = build_model(config, list(states.values()), vocab, table, "zeros")
    plain = parameter_groups(model, 0.05)
    groups = parameter_groups(model, 0.05, decoder_lr_scale=3.0)
    assert len(groups) == 4 and [g["lr_scale"] for g in groups] == [1.0, 1.0, 3.0, 3.0]
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        in_decoder = {not names[id(p)].startswith("encoder.") for p in group["params"]}
        assert in_decoder == {group["lr_scale"] == 3.0}
    # the same weight-decay split as without the scale
    decays = lambda gs: {id(p) for g in gs if g["weight_decay"] for p in g["params"]}  # noqa: E731
    assert decays(groups) == decays(plain)
    assert sum(len(g["params"]) for g in groups) == sum(len(g["params"]) for g in plain)


# ----------------------------------------------------------------------------------------------------------------------
# examples per sampling rule


def test_recognition_resamples_the_whole_sequence(states):
    state = states["action_recognition_3d"]
    examples = state.train_examples
    sample = state.train_split.sample(3)
    example = examples.example(3, np.random.default_rng(0))
    assert example["pose"].shape == (64, 2, 25, 3)
    np.testing.assert_array_equal(example["pose"], resize_frames(sample["keypoint"], 64))
    codec = examples.codec
    assert list(example["target"]) == [codec.class_ids[int(sample["label"])], codec.eot_id]
    assert codec.label_set == "synthetic"


def test_recognition_train_crop_takes_a_random_span_in_training_only(states):
    from ups_toolkit.data.task_examples import TaskExamples

    state = states["action_recognition_3d"]
    spec = state.spec.with_overrides({"input": {"train_crop": 0.5}})
    assert spec.input.params == {"train_crop": 0.5} and state.spec.input.params == {"train_crop": 1.0}
    keypoint = state.train_split.sample(3)["keypoint"]
    n = len(keypoint)
    train = TaskExamples(spec, state.train_split, state.settings, train=True)
    spans = set()
    for epoch in range(8):
        pose = train.example(3, np.random.default_rng([0, 0, epoch, 3]))["pose"]
        # the example is the resampled span keypoint[start:start + length] for some length >= n / 2
        matches = [(a, k) for k in range(math.ceil(n / 2), n + 1) for a in range(n - k + 1)
                   if np.array_equal(pose, resize_frames(keypoint[a:a + k], 64))]
        assert matches, f"epoch {epoch}: not a resampled span of at least half the sequence"
        spans.add(matches[0])
    assert len(spans) > 1  # drawn anew per (seed, epoch, item)
    evaluation = TaskExamples(spec, state.train_split, state.settings, train=False)
    np.testing.assert_array_equal(evaluation.example(3, None)["pose"], resize_frames(keypoint, 64))
    with pytest.raises(ConfigError, match="input.train_crop.*a ratio in \\(0, 1\\]"):
        state.spec.with_overrides({"input": {"train_crop": 0}})


def test_early_prediction_sees_only_the_observed_prefix(states):
    state = states["early_action_prediction"]
    examples = state.eval_examples
    n_seq = len(state.eval_split)
    assert len(examples) == 2 * n_seq and [examples.items[i][1] for i in (0, n_seq)] == [0.2, 0.5]
    example = examples.example(n_seq + 1, None)  # ratio 0.5, sequence 1
    keypoint = state.eval_split.sample(1)["keypoint"]
    n_obs = math.ceil(0.5 * len(keypoint))
    np.testing.assert_array_equal(example["pose"], resize_frames(keypoint[:n_obs], 64))
    assert example["ratio"] == np.float32(0.5)
    # training draws the ratio from the task's list, reproducibly per (seed, epoch, item)
    train = state.train_examples
    drawn = {float(train.example(0, np.random.default_rng([0, 1, e, 0]))["pose"].sum()) for e in range(6)}
    assert len(drawn) > 1


def test_pose_estimation_window_is_centred_and_target_root_relative(states):
    state = states["pose_estimation_2d3d"]
    examples = state.eval_examples
    item = next(i for i, it in enumerate(examples.items) if it[1] == 40)
    seq = examples.items[item][0]
    example = examples.example(item, None)
    sample = state.eval_split.sample(seq)
    assert example["pose"].shape == (64, 1, 17, 2)
    np.testing.assert_array_equal(example["pose"][32], sample["keypoint"][40])
    np.testing.assert_array_equal(example["pose"][0], sample["keypoint"][8])
    xyz = state.eval_split.keypoint_3d(seq)[40, 0].astype(np.float64)
    np.testing.assert_allclose(example["coords"][0], xyz - xyz[0], atol=1e-6)  # h36m17 root = pelvis, joint 0
    assert len(example["target"]) == 3 * 17 + 1
    # edge replication before the first frame
    first = examples.example(0, None)
    np.testing.assert_array_equal(first["pose"][:33], np.repeat(sample_of(state, 0)["keypoint"][:1], 33, axis=0))
    # the flip-test input is the mirrored window (flip_test is on in the task file)
    assert "pose_flip" in example


def sample_of(state, item):
    return state.eval_split.sample(state.eval_examples.items[item][0])


def test_pose_ranges_come_from_training_percentiles(states):
    state = states["pose_estimation_2d3d"]
    assert state.spec.output.range_mode == "fixed"
    split, examples = state.train_split, state.train_examples
    values = np.concatenate([examples.root_relative(split.keypoint_3d(i)[:, 0]).reshape(-1, 3)
                             for i in range(len(split))])
    expected = ranges_from_percentiles(values, ("x", "y", "z"), (0.1, 99.9))
    assert set(state.spec.output.ranges) == set(expected)
    for axis, (lo, hi) in expected.items():
        assert tuple(state.spec.output.ranges[axis]) == pytest.approx((lo, hi))
    assert examples.codec.quantizer.lo == pytest.approx([expected[a][0] for a in "xyz"])


def test_pose_pairs_2d_and_3d_by_sample_id(tmp_path, states):
    from ups_toolkit.data.prepared import load_prepared, write_prepared
    from ups_toolkit.data.synthetic import dataset_spec
    from ups_toolkit.data.task_examples import load_split

    test3d = load_prepared(synthetic_root() / "h36m17_3d", "test")
    rows = [dict(test3d[i], _split="test") for i in reversed(range(len(test3d)))]  # another order
    write_prepared(rows, tmp_path / "reversed3d", spec=dataset_spec("h36m17_3d"), fingerprint="r", progress=False)
    spec = states["pose_estimation_2d3d"].spec
    ref = {"path": str(synthetic_root() / "h36m17_2d"), "split": "test", "target_path": str(tmp_path / "reversed3d")}
    split = load_split(ref, spec, "tasks.pose_estimation_2d3d.eval")
    for i in range(len(split)):
        partner = split.target_dataset[int(split.targets_3d[i])]
        assert str(partner["sample_id"]) == str(split.sample(i)["sample_id"])
    rows[0]["sample_id"] = "someone-else"
    write_prepared(rows, tmp_path / "renamed3d", spec=dataset_spec("h36m17_3d"), fingerprint="s", progress=False)
    missing = str(load_prepared(synthetic_root() / "h36m17_3d", "test")[len(rows) - 1]["sample_id"])
    with pytest.raises(DataFormatError, match=f"sample '{missing}'.*no 3D partner"):
        load_split({**ref, "target_path": str(tmp_path / "renamed3d")}, spec, "tasks.pose_estimation_2d3d.eval")


def test_pose_targets_from_a_keypoint_3d_column(tmp_path, states):
    """Converters like videopose3d store the 3D targets beside the 2D input (extra feature keypoint_3d)."""
    from datasets import Array4D

    from ups_toolkit.data.prepared import load_prepared, write_prepared
    from ups_toolkit.data.synthetic import dataset_spec
    from ups_toolkit.data.task_examples import TaskExamples, load_split

    two_d = load_prepared(synthetic_root() / "h36m17_2d", "test")
    three_d = load_prepared(synthetic_root() / "h36m17_3d", "test")
    spec2d = dataset_spec("h36m17_2d")
    spec2d.extra_features = {"keypoint_3d": Array4D(shape=(None, 1, 17, 3), dtype="float32")}
    rows = [dict(two_d[i], keypoint_3d=three_d[i]["keypoint"], _split="test") for i in range(3)]
    write_prepared(rows, tmp_path / "paired", spec=spec2d, fingerprint="p", progress=False)
    spec = states["pose_estimation_2d3d"].spec
    split = load_split({"path": str(tmp_path / "paired"), "split": "test", "target_path": None}, spec, "tasks.x.eval")
    assert split.targets_3d == "column"
    examples = TaskExamples(spec, split, states["pose_estimation_2d3d"].settings, train=False)
    seq, frame = examples.items[-1]
    example = examples.example(len(examples) - 1, None)
    xyz = three_d[seq]["keypoint"][frame, 0].astype(np.float64)
    np.testing.assert_allclose(example["coords"][0], xyz - xyz[0], atol=1e-6)


def test_motion_prediction_targets_are_residuals_to_the_last_observed_frame(states):
    state = states["motion_prediction"]
    examples = state.eval_examples
    assert len(examples) == 2 * len(state.eval_split)  # eval_windows: 2 per sequence, first and last
    seq, start = examples.items[1]
    keypoint = state.eval_split.sample(seq)["keypoint"]
    assert start == len(keypoint) - 24 - 12
    example = examples.example(1, None)
    np.testing.assert_array_equal(example["pose"], resize_frames(keypoint[start:start + 24], 64))
    expected = keypoint[start + 24:start + 36, 0].astype(np.float64) - keypoint[start + 23, 0]
    np.testing.assert_allclose(example["coords"], expected, atol=1e-6)
    assert len(example["target"]) == 3 * 17 * 12 + 1


def test_detection_windows_and_their_targets(states):
    state = states["temporal_action_detection"]
    examples, codec = state.eval_examples, state.eval_examples.codec
    sample = state.eval_split.sample(0)
    n = len(sample["keypoint"])
    starts = [s for seq, s in examples.items if seq == 0]
    assert starts[0] == 0 and all(b - a == 128 for a, b in zip(starts, starts[1:])) and starts[-1] + 256 >= n
    example = examples.example(examples.items.index((0, 128)), None)
    window = np.zeros((256,) + sample["keypoint"].shape[1:], np.float32)
    part = sample["keypoint"][128:384]
    window[: len(part)] = part
    np.testing.assert_array_equal(example["pose"], resize_frames(window, 64))
    decoded = [(s.label, s.start, s.end) for s in codec.decode(example["target"])]
    assert decoded == window_targets(state.eval_truth[0], 128, 256, 0.5)


def test_window_targets_merging_and_nms():
    segments = [{"label": 1, "start": 100, "end": 200}, {"label": 2, "start": 240, "end": 300}]
    # [240, 300) has 16 of 60 frames inside [0, 256): dropped; [100, 200) fully inside
    assert window_targets(segments, 0, 256, 0.5) == [(1, 100, 200)]
    assert window_targets(segments, 128, 256, 0.5) == [(1, 0, 72), (2, 112, 172)]
    assert merge_touching([(1, 0, 10, 1.0), (1, 10, 30, 0.5), (2, 30, 40, 0.9)]) == \
        [(1, 0, 30, pytest.approx((10 * 1.0 + 20 * 0.5) / 30)), (2, 30, 40, 0.9)]
    # the whole copy beats the clipped copy of the same segment at equal score; other classes are kept
    assert temporal_nms([(1, 100, 156, 1.0), (1, 100, 200, 1.0), (2, 100, 156, 0.3)], 0.5) == \
        [(2, 100, 156, 0.3), (1, 100, 200, 1.0)]
    # window 0 sees [200, 256) of an action, window 128 all of it, [200, 300): one segment in sequence frames
    merged = merge_window_segments([(0, [(1, 200, 256, 0.6)]), (128, [(1, 72, 172, 0.9), (3, 0, 20, 0.5)])],
                                   nms_tiou=0.5, num_frames=290)
    assert merged == [(3, 128, 148, 0.5), (1, 200, 290, 0.9)]


# ----------------------------------------------------------------------------------------------------------------------
# scoring: perfect predictions give the perfect score through the whole evaluation path


def _perfect_arrays(state):
    examples = state.eval_examples
    items = [examples.example(i, None) for i in range(len(examples))]
    arrays = {"item": np.arange(len(items)), "label": np.array([e["label"] for e in items])}
    if state.spec.output.grammar == "action":  # the test builds what each grammar decodes
        scores = np.zeros((len(items), examples.codec.num_classes))
        scores[np.arange(len(items)), arrays["label"]] = 1.0
        arrays["scores"] = scores
        if "ratio" in items[0]:
            arrays["ratio"] = np.array([e["ratio"] for e in items])
    elif state.spec.output.grammar == "coordinates":
        arrays["target"] = np.stack([e["coords"] for e in items])
        arrays["coords"] = arrays["soft"] = arrays["target"].copy()
    else:
        rows = []
        for e in items:
            segs = window_targets(state.eval_truth[e["sequence"]], e["window_start"], 256, 0.5)
            row = np.full((10, 4), -1.0)
            row[: len(segs)] = [[l, s, t, 1.0] for l, s, t in segs]
            rows.append(row)
        arrays.update(segments=np.stack(rows), sequence=np.array([e["sequence"] for e in items]),
                      window_start=np.array([e["window_start"] for e in items]))
    return arrays


def test_perfect_predictions_score_perfectly(config, states):
    from ups_toolkit.training.evaluation import score_task

    ev = config["evaluation"]
    score = {name: score_task(state, _perfect_arrays(state), horizons_ms=ev["horizons_ms"],
                              detection_tiou=ev["detection_tiou"], top_k=5)[0] for name, state in states.items()}
    assert score["action_recognition_3d"]["top1"] == 100 and score["action_recognition_3d"]["mean_class"] == 100
    assert score["early_action_prediction"] == {"top1@0.2": 100, "top1@0.5": 100, "top1_mean": 100}
    pose = score["pose_estimation_2d3d"]
    assert pose["mpjpe_mm"] == pytest.approx(0, abs=1e-9) and pose["p_mpjpe_mm"] == pytest.approx(0, abs=1e-4)
    assert 0 < pose["floor_mm"] < 2  # 1000 bins over a ~2 m range: about 0.96 mm
    motion = score["motion_prediction"]
    assert motion["mpjpe@400ms"] == 0 and motion["zero_velocity@400ms"] > motion["zero_velocity@80ms"] > 0
    detection = score["temporal_action_detection"]
    for theta in (0.1, 0.3, 0.5, 0.7):
        assert detection[f"mAP_a@{theta:g}"] == pytest.approx(100) and detection[f"mAP_v@{theta:g}"] == \
            pytest.approx(100)


def test_confusion_matrix_and_table_from_scores(states):
    from ups_toolkit.training.evaluation import format_table, score_task

    state = states["action_recognition_3d"]
    arrays = _perfect_arrays(state)
    # every prediction is the next class, the true one second
    arrays["scores"] = np.roll(arrays["scores"], 1, axis=1) + 0.5 * arrays["scores"]
    metrics, extras = score_task(state, arrays, horizons_ms=[80], detection_tiou=[0.5], top_k=5)
    assert metrics["top1"] == 0 and metrics["top5"] == 100
    confusion = extras["confusion"]
    assert confusion.sum() == len(arrays["label"]) and np.trace(confusion) == 0
    table = format_table({"action_recognition_3d": metrics})
    assert "action_recognition_3d | top1" in table and "100.00" in table


# ----------------------------------------------------------------------------------------------------------------------
# a tiny run end to end, in this process


def test_tiny_multitask_run_with_finetuning(tmp_path):
    from ups_toolkit.models.modeling_ups import UPSForSeq2Seq
    from ups_toolkit.training.cli import evaluate_saved_model, train_main
    from ups_toolkit.training.loop import train

    path = tiny_config(tmp_path, tasks=("action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection"),
                       training={"steps": 6, "log_every": 2, "eval_every": 3, "checkpoint_every": 3},
                       finetune={"steps": 2, "tasks": ["action_recognition_3d"]})
    config = load_config(str(path))
    with one_thread():
        final = train(config, quiet=True)
    out = tmp_path / "run"
    assert set(final) == {"action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection",
                          "action_recognition_3d (finetune:action_recognition_3d)"}
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == [2, 4, 6, 8]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6, 8]
    assert all(r["processes"] == 1 for r in records if r["kind"] == "train")
    # exports: the joint model (+ vocabulary), the best evaluation, the fine-tuned model
    model = UPSForSeq2Seq.from_pretrained(out / "model")
    assert model.config.tasks == ["action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection"]
    assert model.config.task_specs["pose_estimation_2d3d"]["output"]["range_mode"] == "fixed"
    assert (out / "model" / "vocab.json").is_file() and (out / "finetuned" / "action_recognition_3d").is_dir()
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["metric"] == "action_recognition_3d/top1" and best["step"] in (3, 6)
    # checkpoints: the last two kept, `latest` names the newest
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["latest", "step-000006", "step-000008"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000008"
    # pictures, routing, tensorboard, the resolved config
    for png in ("training_curve.png", "confusion_action_recognition_3d.png", "routing_map.png"):
        assert (out / "plots" / png).stat().st_size > 1000, png
    routing = json.loads((out / "routing.json").read_text())
    assert set(routing["routes"]) == set(model.config.tasks)
    assert all(len(layers) == 2 for r in routing["routes"].values() for layers in r.values())
    assert json.loads((out / "checkpoints" / "step-000008" / "routing.json").read_text()) == routing["routes"]
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert load_config(str(out / "config.yaml")).data == config.data
    # scoring the saved joint model again gives the numbers the run reported at its end
    with one_thread():
        again = evaluate_saved_model(load_config(str(path)), out / "model", quiet=True)
        assert train_main(["--config", str(path), "--eval-only", "--quiet"]) == 0  # train.py --eval-only
    by_cli = json.loads((out / "eval_metrics.json").read_text())
    for task in ("action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection"):
        assert again[task] == pytest.approx(final[task], rel=1e-6, abs=1e-9), task
        assert by_cli[task] == again[task]
    # a fresh start replaces a finished run, but refuses to replace an unfinished one (it may be resumed)
    (out / "checkpoints" / "step-000008" / "trainer_state.json").write_text(
        json.dumps({**json.loads((out / "checkpoints" / "step-000008" / "trainer_state.json").read_text()),
                    "finished": False}))
    with pytest.raises(ConfigError, match="unfinished run: pass --resume_from_checkpoint auto"):
        train(load_config(str(path)), quiet=True)
    assert (out / "model").is_dir()  # refused before anything was removed


@pytest.mark.demo
def test_demo_config_end_to_end(tmp_path):
    """The README's main job: every task on the synthetic data, offline, ending with a metrics table."""
    out = tmp_path / "demo"
    env = environment(UPS_CACHE_DIR=tmp_path / "cache")
    result = run([sys.executable, "train.py", "--config", "configs/demo.yaml", "--output_dir", out, "--quiet"],
                 env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final metrics (demo" in result.stdout
    final = json.loads((out / "final_metrics.json").read_text())
    assert set(final) == {"action_recognition_3d", "action_recognition_2d", "early_action_prediction",
                          "pose_estimation_2d3d", "motion_prediction", "temporal_action_detection"}
    assert all(np.isfinite(v) for metrics in final.values() for v in metrics.values())
    for task in final:
        assert task in result.stdout
    # it learned something on every kind of output (chance: 10 % top-1 over 10 classes)
    assert final["action_recognition_3d"]["top1"] > 30
    assert final["early_action_prediction"]["top1_mean"] > 20
    assert final["pose_estimation_2d3d"]["mpjpe_mm"] < 300  # an untrained model: about 500 mm
    assert (out / "data" / "ntu25_3d").is_dir() and (out / "model" / "model.safetensors").is_file()


def test_a_missing_tensorboard_is_said_and_the_run_logs_without_it(tmp_path, monkeypatch, capsys):
    import importlib.util

    from ups_toolkit.training.loop import make_accelerator

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    config = load_config(tiny_config(tmp_path, logging={"tensorboard": True, "plots": False}), [])
    accelerator = make_accelerator(config)
    assert "tensorboard is not installed" in capsys.readouterr().err
    assert config["logging"]["tensorboard"] is False and not accelerator.log_with
