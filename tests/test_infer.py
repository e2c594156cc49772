"""``python infer.py``: every task end to end on a small model trained here, the outputs, the pictures, the errors.

One model per test session: ``train.py`` on a copy of ``configs/demo.yaml`` cut down to a few steps, the small
synthetic data and a tiny offline text encoder. ``action_recognition_2d`` is left out of that run, so the model has a
task it was not trained for. Successful runs call the CLI's ``main`` in this process (torch is imported once);
errors and the lazy start run ``infer.py`` in a subprocess, as a user would.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO

FUTURE = 3
TRAINED_TASKS = ["action_recognition_3d", "early_action_prediction", "pose_estimation_2d3d", "motion_prediction",
                 "temporal_action_detection"]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A finished training run (config.yaml, model/, data/) of the demo config on tiny data, 5 steps."""
    from tiny_text_encoder import build_tiny_roberta

    from ups_toolkit.tokenization import build_vocabulary

    root = tmp_path_factory.mktemp("infer")
    encoder = build_tiny_roberta(root / "text_encoder", [p for p in build_vocabulary().prompts if p is not None])
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    del config["tasks"]["action_recognition_2d"]
    for settings in config["tasks"].values():
        settings["max_eval_items"] = 2
    # motion prediction: 3 future frames (154 tokens instead of 613) keep the test fast; 80 ms is frame 2 at 30 fps
    config["tasks"]["motion_prediction"]["overrides"]["output"]["frames"] = FUTURE
    config["evaluation"] = {"horizons_ms": [80.0]}
    config.update(output_dir=str(root / "run"), training={"steps": len(TRAINED_TASKS), "log_every": 5},
                  logging={"tensorboard": False, "plots": False})
    config["synthetic"]["num_per_class"] = 2
    config["vocabulary"] = {"text_encoder": str(encoder), "cache_dir": str(root / "embeddings")}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run([sys.executable, "train.py", "--config", str(path), "--quiet"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


def infer(capsys, *argv):
    """Run the CLI in this process; returns (exit code, stdout, stderr)."""
    from ups_toolkit.inference.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def infer_subprocess(*argv):
    return subprocess.run([sys.executable, "infer.py", *map(str, argv)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def results(folder):
    return json.loads((folder / "results.json").read_text())


# ----------------------------------------------------------------------------------------------------------------------
# every task


def test_recognition_reproduces_the_evaluation_and_draws(run_dir, tmp_path, capsys):
    out = tmp_path / "rec"
    data = run_dir / "data" / "ntu25_3d"
    code, stdout, err = infer(capsys, "--task", "action_recognition_3d", "--model", run_dir / "model", "--input", data,
                              "--split", "test", "--limit", 2, "--out", out, "--visualize")
    assert code == 0, err
    doc = results(out)
    assert doc["label_set"] == "synthetic" and doc["model_layout"] == "ntu25"
    assert doc["transforms"] == [{"type": "PreNormalize3D"}]  # the deterministic part of the demo's transforms
    records = doc["results"]
    assert [r["sample_id"] for r in records] == [line.split()[1] for line in stdout.splitlines() if line[:1] == "["]
    for r in records:
        probs = [row["probability"] for row in r["top_k"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert r["prediction"] == r["top_k"][0]["label"] and "ground_truth" in r
    # the evaluation of train.py scored the same two test sequences (max_eval_items 2): same top-1
    final = json.loads((run_dir / "final_metrics.json").read_text())
    top1 = 100 * np.mean([r["correct"] for r in records])
    assert top1 == pytest.approx(final["action_recognition_3d"]["top1"])
    # pictures: an animation of each input, the top-k bars, the routing map
    from PIL import Image

    for r in records:
        stem = f"{r['index']:03d}_{r['sample_id']}"
        gif = Image.open(out / f"{stem}.gif")
        assert gif.format == "GIF" and gif.n_frames > 10
        assert (out / f"{stem}_topk.png").stat().st_size > 5000
    assert Image.open(out / "routing_map.png").size[0] > 300


def test_plain_arrays_give_the_same_answer_as_the_prepared_dataset(run_dir, tmp_path, capsys):
    from ups_toolkit.data.prepared import load_prepared

    sample = load_prepared(run_dir / "data" / "ntu25_3d", "test")[0]
    keypoint = np.asarray(sample["keypoint"])
    np.save(tmp_path / "clip.npy", keypoint)
    (tmp_path / "clip.json").write_text(json.dumps({"keypoint": keypoint.tolist()}))
    (tmp_path / "folder").mkdir()
    np.savez(tmp_path / "folder" / "clip.npz", keypoint=keypoint, label="squat")
    runs = {}
    for name, extra in (("prepared", ["--input", run_dir / "data" / "ntu25_3d", "--split", "test", "--limit", 1]),
                        ("arrays", ["--input", tmp_path / "clip.npy", tmp_path / "clip.json", "--layout", "ntu25"]),
                        ("converter", ["--input", tmp_path / "folder", "--format", "arrays", "--layout", "ntu25",
                                       "--class-names", "synthetic"])):
        code, _, err = infer(capsys, "--task", "action_recognition_3d", "--model", run_dir / "model", *extra,
                             "--out", tmp_path / name, "--top-k", 3)
        assert code == 0, err
        runs[name] = results(tmp_path / name)["results"]
    assert len(runs["arrays"]) == 2 and runs["converter"][0]["ground_truth"] == "squat"
    expected = runs["prepared"][0]["top_k"]
    for record in runs["arrays"] + runs["converter"]:
        assert [(k["label"], k["index"]) for k in record["top_k"]] == [(k["label"], k["index"]) for k in expected]
        assert [k["probability"] for k in record["top_k"]] == pytest.approx([k["probability"] for k in expected],
                                                                             abs=1e-5)


def test_inference_examples_are_the_evaluation_examples(run_dir):
    """The encoder input of inference is built by the training code: equal to the evaluation example."""
    from ups_toolkit.data.prepared import load_prepared
    from ups_toolkit.inference.examples import InferenceExamples, adapt_to_model
    from ups_toolkit.inference.recipe import find_run_config, read_model_info, task_recipe
    from ups_toolkit.skeleton.transforms import deterministic_part
    from ups_toolkit.data.task_examples import TaskExamples, load_split

    info = read_model_info(run_dir / "model")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    for task, item in (("pose_estimation_2d3d", 3), ("early_action_prediction", 1)):
        recipe = task_recipe(task, info, find_run_config(info.path))
        settings = {**config["tasks"][task], "max_eval_items": None}
        split = load_split(settings["eval"], recipe.spec, "eval")
        reference = TaskExamples(recipe.spec, split, settings, train=False,
                                 transforms=deterministic_part(settings["transforms"]))
        rows = load_prepared(settings["eval"]["path"], "test")
        samples = [{**rows[i], "keypoint": np.asarray(rows[i]["keypoint"]), "layout": str(rows[i]["layout"])}
                   for i in range(len(rows))]
        samples, layout = adapt_to_model(samples, recipe, info.persons)
        ratios = settings["eval_obs_ratios"] if task == "early_action_prediction" else None
        ours = InferenceExamples(recipe, samples, layout, obs_ratios=ratios)
        expected = reference.example(item, None)
        got = ours.example(ours.items.index(reference.items[item]), None)
        np.testing.assert_array_equal(got["pose"], expected["pose"])


def test_early_prediction_at_chosen_ratios(run_dir, tmp_path, capsys):
    out = tmp_path / "early"
    code, stdout, err = infer(capsys, "--task", "early_action_prediction", "--model", run_dir / "model", "--input",
                              run_dir / "data" / "ntu25_3d", "--split", "test", "--limit", 1, "--observe", 0.2, 0.5,
                              "--out", out, "--visualize", "--max-figures", 1)
    assert code == 0, err
    (record,) = results(out)["results"]
    n = record["frames"]
    assert [(o["ratio"], o["observed_frames"]) for o in record["observed"]] == [(0.2, math.ceil(0.2 * n)),
                                                                               (0.5, math.ceil(0.5 * n))]
    assert "observed 20%" in stdout and "observed 50%" in stdout
    assert (out / f"000_{record['sample_id']}_topk.png").is_file()


def test_pose_estimation_lifts_every_frame_and_matches_the_evaluation(run_dir, tmp_path, capsys):
    from ups_toolkit.data.prepared import load_prepared

    out = tmp_path / "pose"
    code, stdout, err = infer(capsys, "--task", "pose_estimation_2d3d", "--model", run_dir / "model", "--input",
                              run_dir / "data" / "h36m17_2d", "--split", "test", "--limit", 1, "--out", out,
                              "--visualize")
    assert code == 0, err
    (record,) = results(out)["results"]
    arrays = np.load(out / "coordinates.npz")
    pose = arrays[record["arrays"]["keys"]["pose_3d"]]
    assert pose.shape == (record["frames"], 17, 3) and np.isfinite(pose).all()
    assert list(arrays["sample_ids"]) == [record["sample_id"]]
    # evaluation scored frames 0 and 10 of this sequence (eval_frame_stride 10, max_eval_items 2), flip-averaged
    truth = np.asarray(load_prepared(run_dir / "data" / "h36m17_3d", "test")[0]["keypoint"], np.float64)[:, 0]
    truth = truth - truth[:, :1]
    mpjpe = 1000 * np.mean([np.linalg.norm(pose[f] - truth[f], axis=-1).mean() for f in (0, 10)])
    final = json.loads((run_dir / "final_metrics.json").read_text())
    assert mpjpe == pytest.approx(final["pose_estimation_2d3d"]["mpjpe_mm"], rel=1e-4)
    assert (out / f"000_{record['sample_id']}_lifting.png").stat().st_size > 10000
    assert "3D pose of every frame" in stdout


def test_pose_estimation_maps_coco_keypoints_and_needs_the_image_size(run_dir, tmp_path, capsys):
    from ups_toolkit.data.prepared import load_prepared
    from ups_toolkit.skeleton import get_layout

    # COCO-17 2D keypoints of a synthetic clip: H36M joints in COCO order where both have them (pixels)
    h36m = np.asarray(load_prepared(run_dir / "data" / "h36m17_2d", "test")[1]["keypoint"])[:40, 0]
    coco, h = get_layout("coco17"), get_layout("h36m17")
    pairs = {"left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder", "left_elbow": "left_elbow",
             "right_elbow": "right_elbow", "left_wrist": "left_wrist", "right_wrist": "right_wrist",
             "left_hip": "left_hip", "right_hip": "right_hip", "left_knee": "left_knee", "right_knee": "right_knee",
             "left_ankle": "left_ankle", "right_ankle": "right_ankle"}
    keypoint = np.repeat(h36m[:, h.index("head")][:, None], coco.num_joints, axis=1)  # face joints at the head
    for c, name in pairs.items():
        keypoint[:, coco.index(c)] = h36m[:, h.index(name)]
    np.save(tmp_path / "coco.npy", keypoint)
    argv = ["--task", "pose_estimation_2d3d", "--model", run_dir / "model", "--input", tmp_path / "coco.npy",
            "--layout", "coco17", "--out", tmp_path / "out"]
    code, _, err = infer(capsys, *argv)
    assert code == 2 and "--img-shape" in err and len(err.strip().splitlines()) == 1
    code, _, err = infer(capsys, *argv, "--img-shape", 1080, 1920)
    assert code == 0, err
    (record,) = results(tmp_path / "out")["results"]
    assert (record["layout"], record["model_layout"]) == ("coco17", "h36m17")
    assert np.load(tmp_path / "out" / "coordinates.npz")["s0000_pose_3d"].shape == (40, 17, 3)


def test_motion_prediction_future_frames_against_the_truth(run_dir, tmp_path, capsys):
    from ups_toolkit.data.prepared import load_prepared
    from ups_toolkit.metrics.motion import horizon_frame_indices

    out = tmp_path / "motion"
    data = run_dir / "data" / "h36m17_3d"
    # evaluation scored the window at frame 0 of the first two test sequences of at least 30 + 12 frames
    usable = [i for i, kp in enumerate(load_prepared(data, "test")["keypoint"]) if len(kp) >= 30 + FUTURE][:2]
    code, stdout, err = infer(capsys, "--task", "motion_prediction", "--model", run_dir / "model", "--input", data,
                              "--split", "test", "--index", *usable, "--start", 0, "--out", out, "--visualize",
                              "--max-figures", 1)
    assert code == 0, err
    records = results(out)["results"]
    arrays = np.load(out / "coordinates.npz")
    final = json.loads((run_dir / "final_metrics.json").read_text())["motion_prediction"]
    for r in records:
        assert (r["observed_start"], r["observed_frames"], r["future_frames"]) == (0, 30, FUTURE)
        keys = r["arrays"]["keys"]
        observed, future = arrays[keys["observed"]], arrays[keys["future"]]
        assert observed.shape == (30, 17, 3) and future.shape == (FUTURE, 17, 3)
        assert arrays[keys["ground_truth"]].shape == (FUTURE, 17, 3) and len(r["mpjpe_mm"]) == FUTURE
    (k,) = horizon_frame_indices(30.0, (80,))
    assert np.mean([r["mpjpe_mm"][k] for r in records]) == pytest.approx(final["mpjpe@80ms"], abs=0.02)
    assert (out / f"000_{records[0]['sample_id']}_motion.png").is_file()
    assert f"predicted {FUTURE} future frames" in stdout
    # by default the model observes the last 30 frames and predicts beyond the end of the input
    from ups_toolkit.kinds.motion_prediction import motion_starts

    clips = [{"keypoint": np.zeros((n, 1, 17, 3))} for n in (30, 75)]
    assert motion_starts(clips, 30, None) == [0, 45] and motion_starts(clips, 30, 0) == [0, 0]


def test_detection_merges_sliding_windows(run_dir, tmp_path, capsys):
    from ups_toolkit.kinds.segments import window_starts

    out = tmp_path / "det"
    code, stdout, err = infer(capsys, "--task", "temporal_action_detection", "--model", run_dir / "model", "--input",
                              run_dir / "data" / "untrimmed", "--split", "test", "--limit", 1, "--out", out,
                              "--visualize")
    assert code == 0, err
    (record,) = results(out)["results"]
    assert record["windows"] == len(window_starts(record["frames"], 256, 128))
    assert record["ground_truth_segments"] and "ground truth:" in stdout
    for seg in record["segments"]:
        assert 0 <= seg["start"] < seg["end"] <= record["frames"] and 0 <= seg["score"] <= 1
    assert (out / f"000_{record['sample_id']}_timeline.png").stat().st_size > 5000


def test_retrieval_finds_neighbours_in_a_gallery(run_dir, tmp_path, capsys):
    from ups_toolkit.data.prepared import load_prepared

    data = run_dir / "data" / "ntu25_3d"
    out = tmp_path / "ret"
    code, stdout, err = infer(capsys, "--task", "retrieval", "--model", run_dir / "model", "--input", data,
                              "--split", "test", "--limit", 2, "--gallery", data, "--gallery-split", "test",
                              "--out", out, "--visualize", "--max-figures", 1, "--top-k", 4)
    assert code == 0, err
    doc = results(out)
    assert doc["model_task"] == "action_recognition_3d" and doc["gallery"]["size"] == len(load_prepared(data, "test"))
    for r in doc["results"]:
        cosines = [n["cosine"] for n in r["neighbours"]]
        assert len(cosines) == 4 and cosines == sorted(cosines, reverse=True)
        assert r["sample_id"] not in [n["sample_id"] for n in r["neighbours"]]  # the query itself is left out
    d = json.loads((run_dir / "model" / "config.json").read_text())["encoder"]["d_model"]
    assert np.load(out / "coordinates.npz")["s0001_feature"].shape == (2 * d,)  # g = [max_t y_t; max_s y_s]
    assert (out / f"000_{doc['results'][0]['sample_id']}_neighbours.png").is_file()


def test_a_model_folder_copied_alone_infers_every_task(run_dir, tmp_path, capsys):
    """The model folder needs nothing else: no run config.yaml, no training data (preprocessing.json)."""
    import shutil

    alone = tmp_path / "somewhere" / "my_model"
    shutil.copytree(run_dir / "model", alone)
    saved = json.loads((alone / "preprocessing.json").read_text())["tasks"]
    assert sorted(saved) == sorted(TRAINED_TASKS)
    assert saved["action_recognition_3d"]["transforms"] == [{"type": "PreNormalize3D"}]
    assert saved["action_recognition_3d"]["layouts"] == ["ntu25"] and saved["action_recognition_3d"]["channels"] == [3]
    names = saved["action_recognition_3d"]["label_names"]
    config = json.loads((alone / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(names))] == names and names[0] != "LABEL_0"
    run_config = yaml.safe_load((run_dir / "config.yaml").read_text())  # only to find each task's test data
    for task in TRAINED_TASKS:
        data = run_config["tasks"][task]["eval"]["path"]
        out = tmp_path / task
        code, stdout, err = infer(capsys, "--task", task, "--model", alone, "--input", data, "--split", "test",
                                  "--limit", 1, "--out", out)
        assert code == 0, (task, err)
        doc = results(out)
        assert doc["run_config"] == str(alone / "preprocessing.json") and not doc["notes"], task
        if saved[task]["label_names"] and "prediction" in doc["results"][0]:
            assert doc["results"][0]["prediction"] in saved[task]["label_names"]


def test_a_config_that_disagrees_with_the_saved_preprocessing_is_refused(run_dir, tmp_path):
    run_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    run_config["tasks"]["action_recognition_3d"]["label_set"] = "ntu60"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(run_config))
    data = run_dir / "data" / "ntu25_3d"
    result = infer_subprocess("--task", "action_recognition_3d", "--model", run_dir / "model", "--input", data,
                              "--split", "test", "--limit", 1, "--config", other)
    assert result.returncode == 2, result.stderr
    assert "key 'tasks.action_recognition_3d.label_set' is 'ntu60', but the model was trained with 'synthetic'" \
        in result.stderr
    run_config["tasks"]["action_recognition_3d"]["label_set"] = None
    run_config["tasks"]["action_recognition_3d"]["eval_transforms"] = []
    other.write_text(yaml.safe_dump(run_config))
    result = infer_subprocess("--task", "action_recognition_3d", "--model", run_dir / "model", "--input", data,
                              "--split", "test", "--limit", 1, "--config", other)
    assert result.returncode == 2 and "key 'tasks.action_recognition_3d.eval_transforms' gives []" in result.stderr


# ----------------------------------------------------------------------------------------------------------------------
# errors: one line on stderr, exit status 2, no traceback


def _bad_model_folders(run_dir, tmp_path):
    import shutil

    truncated = tmp_path / "truncated"
    shutil.copytree(run_dir / "model", truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    garbled = tmp_path / "garbled"
    shutil.copytree(run_dir / "model", garbled)
    (garbled / "config.json").write_text("{not json")
    return truncated, garbled


def test_errors_are_one_clear_line(run_dir, tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 25, 3), np.float32))
    nan = np.ones((20, 25, 3), np.float32)
    nan[3, 4, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "penn.npy", np.ones((20, 13, 3), np.float32))
    np.save(tmp_path / "ok.npy", np.ones((20, 25, 3), np.float32))
    truncated, garbled = _bad_model_folders(run_dir, tmp_path)
    model, clip = run_dir / "model", tmp_path / "nan.npy"
    cases = [
        (["--task", "jump_around", "--model", model, "--input", clip, "--layout", "ntu25"],
         "unknown task 'jump_around'"),
        (["--task", "action_recognition_2d", "--model", model, "--input", clip, "--layout", "ntu25"],
         "was not trained for task 'action_recognition_2d'"),
        (["--task", "action_recognition_3d", "--model", model, "--input", tmp_path / "penn.npy", "--layout", "penn13"],
         "layout mismatch"),
        (["--task", "action_recognition_3d", "--model", model, "--input", tmp_path / "empty.npy", "--layout", "ntu25"],
         "empty"),
        (["--task", "action_recognition_3d", "--model", model, "--input", clip, "--layout", "ntu25"], "NaN"),
        (["--task", "action_recognition_3d", "--model", tmp_path / "nowhere", "--input", clip, "--layout", "ntu25"],
         "no such folder"),
        (["--task", "action_recognition_3d", "--model", garbled, "--input", clip, "--layout", "ntu25"],
         "not valid JSON"),
        (["--task", "action_recognition_3d", "--model", truncated, "--input", tmp_path / "ok.npy", "--layout", "ntu25"],
         "truncated"),
    ]
    for argv, expected in cases:
        result = infer_subprocess(*argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (argv, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (argv, result.stderr)
        assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_short_motion_input_and_misplaced_options(run_dir, tmp_path, capsys):
    np.save(tmp_path / "short.npy", np.ones((12, 17, 3), np.float32))
    model = run_dir / "model"
    for argv, expected in [
        (["--task", "motion_prediction", "--input", tmp_path / "short.npy", "--layout", "h36m17"],
         "observes 30 frames"),
        (["--task", "action_recognition_3d", "--input", tmp_path / "short.npy", "--layout", "h36m17", "--observe",
          0.3], "--observe is for early prediction"),
        (["--task", "retrieval", "--input", tmp_path / "short.npy", "--layout", "h36m17"], "--gallery"),
        (["--task", "action_recognition_3d", "--input", tmp_path / "short.npy", "--layout", "h36m17", "--visualize"],
         "--out"),
    ]:
        code, _, err = infer(capsys, "--model", model, *argv)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_help_and_early_errors_do_not_import_torch(run_dir):
    code = ("import sys\nfrom ups_toolkit.inference.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets'}))")
    for argv in (["--help"], ["--task", "x"], ["--task", "nope", "--model", str(run_dir / "model"), "--input", "a"]):
        result = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True)
        assert result.stdout.strip().splitlines()[-1] == "[]", (argv, result.stdout, result.stderr)
