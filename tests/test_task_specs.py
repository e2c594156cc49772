"""Task definitions (docs/design.md D5): the shipped task files, and errors that name the file and the key."""

import copy

import pytest
import yaml
from tiny_vocab_project import COORDINATES, TASKS, VOCABULARY, write_project, write_yaml

from ups_toolkit.errors import ConfigError
from ups_toolkit.tokenization import (
    build_codec,
    build_grammar,
    build_vocabulary,
    load_coordinate_spec,
    load_task,
    load_tasks,
    load_vocabulary_spec,
    max_target_length,
    task_paths,
)
from ups_toolkit.tokenization.specs import parse_task

SHIPPED = {
    "action_recognition_3d": "action",
    "action_recognition_2d": "action",
    "early_action_prediction": "action",
    "pose_estimation_2d3d": "coordinates",
    "motion_prediction": "coordinates",
    "temporal_action_detection": "segments",
    "retrieval": "none",
}


def test_shipped_tasks_load_with_their_grammars():
    tasks = {t.name: t for t in load_tasks()}
    assert {name: tasks[name].output.grammar for name in SHIPPED} == SHIPPED
    for task in tasks.values():
        assert task.input.frames == 64
        assert task.metrics and task.display_name
    assert tasks["retrieval"].has_decoder is False
    assert tasks["retrieval"].options["route_task"] == "action_recognition_3d"
    assert tasks["action_recognition_2d"].input.kinds == ("2d",)
    assert tasks["early_action_prediction"].options["obs_ratios"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    detection = tasks["temporal_action_detection"]
    assert detection.output.max_segments == 10 and detection.output.n_time_bins == 256
    assert detection.input.params == {"window": 256, "hop": 128}
    pose = tasks["pose_estimation_2d3d"]
    assert pose.output.axes == ("x", "y", "z") and pose.output.frames == 1 and pose.input.kinds == ("2d",)
    assert pose.output.ranges == {"x": (-1.0, 1.0), "y": (-1.0, 1.0), "z": (-1.0, 1.0)}


def test_target_lengths_match_the_design_table():
    tasks = {t.name: t for t in load_tasks()}
    assert max_target_length(tasks["action_recognition_3d"]) == 2
    assert max_target_length(tasks["temporal_action_detection"]) == 31
    assert max_target_length(tasks["retrieval"]) == 0
    vocab = build_vocabulary()
    pose = tasks["pose_estimation_2d3d"]
    assert build_grammar(pose, vocab, layout="h36m17").max_length == 52  # 3 * 17 * 1 + 1
    ntu_motion = tasks["motion_prediction"].with_overrides({"output": {"frames": 12}})
    assert build_grammar(ntu_motion, vocab, layout="ntu25").max_length == 901  # 3 * 25 * 12 + 1
    h36m_motion = tasks["motion_prediction"].with_overrides({"output": {"frames": 25}})
    assert build_grammar(h36m_motion, vocab, layout="h36m17").max_length == 3 * 17 * 25 + 1


def test_synthetic_demo_tasks_are_expressible():
    """The demo trains every task on the synthetic NTU-25 / H36M-17 data with the `synthetic` label set."""
    vocab = build_vocabulary()
    tasks = {t.name: t for t in load_tasks()}
    for name in ("action_recognition_3d", "action_recognition_2d", "early_action_prediction",
                 "temporal_action_detection"):
        codec = build_codec(tasks[name], vocab, label_set="synthetic")
        assert codec.label_set == "synthetic"
    for name in ("pose_estimation_2d3d", "motion_prediction", "action_recognition_2d", "action_recognition_3d"):
        assert {"ntu25", "h36m17"} <= set(tasks[name].input.layouts)


def test_every_task_file_has_a_label_set_and_end_prompt_where_it_decodes():
    coordinates, vocabulary = load_coordinate_spec(), load_vocabulary_spec()
    for task in load_tasks():
        if task.output.grammar in ("action", "segments"):
            assert task.output.label_sets
        if task.has_decoder:
            assert (task.eot_prompt or coordinates.eot_prompt).format(task=task.display_name).endswith("ends here")
    assert vocabulary.label_sets[0] == "ntu60"


def test_any_label_set_of_the_vocabulary_serves_a_task_and_a_foreign_layout_is_refused():
    vocab = build_vocabulary()
    task = load_task("action_recognition_3d")
    # a task file does not enumerate datasets: Kinetics classes work with the 3D task (its list names defaults only)
    assert "kinetics400" not in task.output.label_sets
    codec = build_codec(task, vocab, label_set="kinetics400")
    assert codec.num_classes == 400 and build_codec(task, vocab).label_set == task.output.label_sets[0]
    with pytest.raises(ConfigError, match="label set 'no_such_set'"):
        build_codec(task, vocab, label_set="no_such_set")
    pose = load_task("pose_estimation_2d3d")
    with pytest.raises(ConfigError, match="does not accept layout 'coco17'"):
        build_grammar(pose, vocab, layout="coco17")
    with pytest.raises(ConfigError, match="encoder-only"):
        build_grammar(load_task("retrieval"), vocab)


def test_unknown_task_lists_the_task_files():
    with pytest.raises(ConfigError, match="unknown task 'juggling'.*action_recognition_3d"):
        load_task("juggling")


def _mutate(task: dict, path: str, value):
    """Set (or delete, value=...) a dotted key in a copy of a task dict."""
    data = copy.deepcopy(task)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


BAD_TASKS = [
    # (task, dotted key to change, new value or ... to delete, key the error must name)
    ("recognise", "display_name", ..., "display_name"),
    ("recognise", "metric", ["top1"], "metric"),  # typo of `metrics`
    ("recognise", "output.grammar", "sentence", "output.grammar"),
    ("recognise", "output.label_sets", [], "output.label_sets"),
    ("recognise", "input.kind", "4d", "input.kind"),
    ("recognise", "input.layouts", ["ntu25", "smpl24"], "input.layouts[1]"),
    ("recognise", "input.frames", 0, "input.frames"),
    ("recognise", "input.window", 16, "input.window"),  # not a setting of whole_sequence
    ("recognise", "eot_prompt", "the end", "eot_prompt"),  # no {task}
    ("lift", "output.ranges.y", [0.5, -2.0], "output.ranges.y"),
    ("lift", "output.ranges", {"x": [-1, 1], "y": [-1, 1]}, "output.ranges.z"),
    ("lift", "output.axes", ["x", "w"], "output.axes[1]"),
    ("lift", "output.space", "pixels", "output.space"),
    ("lift", "output.range_percentiles", [99.9, 0.1], "output.range_percentiles"),
    ("lift", "output.max_segments", 3, "output.max_segments"),  # a segments key on a coordinates task
    ("lift", "input.border", "mirror", "input.border"),
    ("detect", "output.n_time_bins", 9, "output.n_time_bins"),  # more than the 8 temporal tokens
    ("detect", "input.hop", ..., "input.hop"),
    ("detect", "output.sorted_starts", "yes", "output.sorted_starts"),
    ("fetch", "eot_prompt", "{task} ends here", "eot_prompt"),  # encoder-only
    ("fetch", "options.knn_k", 0, "options.knn_k"),
]


@pytest.mark.parametrize("task, key, value, named", BAD_TASKS, ids=[f"{t}:{k}" for t, k, _, _ in BAD_TASKS])
def test_malformed_task_names_file_and_key(tmp_path, task, key, value, named):
    root = write_project(tmp_path, tasks={task: _mutate(TASKS[task], key, value)})
    with pytest.raises(ConfigError) as e:
        load_task(task, roots=[root])
    message = str(e.value)
    assert f"tasks/{task}.yaml" in message, message
    assert f"key '{named}'" in message, message


def test_observed_prefix_needs_observation_ratios(tmp_path):
    task = _mutate(TASKS["recognise"], "input.sampling", "observed_prefix")
    root = write_project(tmp_path, tasks={"recognise": task})
    with pytest.raises(ConfigError, match=r"recognise\.yaml: key 'options\.obs_ratios'"):
        load_task("recognise", roots=[root])
    task["options"] = {"obs_ratios": [0.5, 0.2]}
    write_yaml(root / "tasks" / "recognise.yaml", task)
    with pytest.raises(ConfigError, match="increasing"):
        load_task("recognise", roots=[root])


def test_task_name_must_match_file_name(tmp_path):
    root = write_project(tmp_path, tasks={"recognise": {**TASKS["recognise"], "name": "recognize"}})
    with pytest.raises(ConfigError, match=r"recognise\.yaml: key 'name'"):
        load_task("recognise", roots=[root])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    root = write_project(tmp_path)
    (root / "tasks" / "recognise.yaml").write_text("name: recognise\ninput: [unclosed\nmetrics: []\n")
    with pytest.raises(ConfigError, match=r"recognise\.yaml:\d+: invalid YAML"):
        load_task("recognise", roots=[root])


def test_route_task_must_be_a_loaded_decoder_task(tmp_path):
    root = write_project(tmp_path, tasks={**TASKS, "fetch": _mutate(TASKS["fetch"], "options.route_task", "dance")})
    with pytest.raises(ConfigError, match=r"fetch\.yaml: key 'options\.route_task'"):
        load_tasks(["fetch", "recognise"], roots=[root])
    assert load_tasks(["fetch", "recognise"], roots=[write_project(tmp_path / "ok")])[0].name == "fetch"


@pytest.mark.parametrize("file, change, named", [
    ("coordinates", {"axes": {"x": "The horizontal coordinate"}}, "axes.x"),
    ("coordinates", {"n_bins": 1}, "n_bins"),
    ("coordinates", {"temporal": {"n_bins": 8}}, "temporal.prompt"),
    ("coordinates", {"eot_prompt": "{name} ends here"}, "eot_prompt"),
    ("vocabulary", {"label_sets": "gym"}, "label_sets"),
    ("vocabulary", {"aliases": {"squat": "squat down"}}, "aliases.squat"),
    ("vocabulary", {"special_tokens": {"pad": "<pad>", "task": "<t>", "eot": "<eot:{name}>"}}, "special_tokens.task"),
])
def test_malformed_tokenizer_files_name_file_and_key(tmp_path, file, change, named):
    base = COORDINATES if file == "coordinates" else VOCABULARY
    root = write_project(tmp_path, **{file: {**base, **change}})
    with pytest.raises(ConfigError) as e:
        build_vocabulary(load_tasks(["recognise"], roots=[root]), roots=[root])
    assert f"tokenizers/{file}.yaml" in str(e.value) and f"key '{named}'" in str(e.value), str(e.value)


def test_overrides_are_validated_again():
    task = load_task("motion_prediction")
    assert task.with_overrides({"input": {"observed_frames": 60}}).input.params["observed_frames"] == 60
    with pytest.raises(ConfigError, match="key 'output.frames'"):
        task.with_overrides({"output": {"frames": 0}})


def test_adding_a_task_needs_only_data_files(tmp_path):
    """Add a task by defining tokens: a new task file and label set in a user folder, no code change."""
    root = tmp_path / "my_project"
    write_yaml(root / "tokenizers" / "labels" / "body_parts.yaml",
               {"name": "body_parts", "classes": ["left arm", "right arm", "left leg", "right leg", "head", "torso"]})
    write_yaml(root / "tasks" / "body_part_in_motion.yaml", {
        "name": "body_part_in_motion",
        "display_name": "body part in motion",
        "input": {"kind": "3d", "layouts": ["ntu25"], "frames": 64, "sampling": "whole_sequence"},
        "output": {"grammar": "action", "label_sets": ["body_parts"]},
        "metrics": ["top1_accuracy"],
    })
    assert "body_part_in_motion" in task_paths(roots=[root])
    tasks = load_tasks(roots=[root])  # the shipped tasks plus the new one
    vocab = build_vocabulary(tasks, roots=[root])
    task = next(t for t in tasks if t.name == "body_part_in_motion")
    assert vocab.prompts[vocab.task_token(task.name)] == "body part in motion"
    assert vocab.prompts[vocab.eot_token(task.name)] == "body part in motion ends here"
    ids = vocab.label_set_ids("body_parts")
    assert [vocab.prompts[i] for i in ids] == ["left arm", "right arm", "left leg", "right leg", "head", "torso"]
    codec, grammar = build_codec(task, vocab), build_grammar(task, vocab)
    target = codec.encode(4)
    assert codec.decode(target) == 4
    assert grammar.masks(target[None])[0, range(2), target].all()
    assert grammar.allowed([[]])[0].sum() == 6


def test_shipped_files_are_plain_yaml_mappings():
    for path in task_paths().values():
        assert isinstance(yaml.safe_load(path.read_text()), dict)
        parse_task(yaml.safe_load(path.read_text()), path, expected_name=path.stem)
