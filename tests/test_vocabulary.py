"""The unified vocabulary (docs/design.md D3): family order, stable ids, deduplication, label-set maps, vocab.json."""

import json
import time

import numpy as np
import pytest
from tiny_vocab_project import LABEL_SETS, TASKS, VOCABULARY, write_project, write_yaml

from ups_toolkit.errors import ConfigError
from ups_toolkit.tokenization import (
    Vocabulary,
    build_vocabulary,
    load_tasks,
    load_vocabulary_spec,
    normalise_name,
    ordinal_words,
)

TINY_TASKS = sorted(TASKS)


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path / "project")


def tiny_vocab(root):
    return build_vocabulary(load_tasks(TINY_TASKS, roots=[root]), roots=[root])


@pytest.mark.parametrize("n, words", [
    (1, "first"), (2, "second"), (3, "third"), (4, "fourth"), (5, "fifth"), (8, "eighth"), (9, "ninth"),
    (11, "eleventh"), (12, "twelfth"), (13, "thirteenth"), (20, "twentieth"), (21, "twenty-first"),
    (42, "forty-second"), (99, "ninety-ninth"), (100, "one hundredth"), (101, "one hundred first"),
    (112, "one hundred twelfth"), (250, "two hundred fiftieth"), (999, "nine hundred ninety-ninth"),
    (1000, "one thousandth"), (1001, "one thousand first"), (2000, "two thousandth"),
])
def test_ordinal_words(n, words):
    assert ordinal_words(n) == words


def test_ordinal_words_are_unique_up_to_ten_thousand():
    words = [ordinal_words(n) for n in range(1, 10_001)]
    assert len(set(words)) == len(words)
    with pytest.raises(ValueError):
        ordinal_words(0)


@pytest.mark.parametrize("raw, key", [
    ("Squat", "squat"), ("squat_down", "squat down"), ("Squat-Down.", "squat down"), ("  jump   up ", "jump up"),
    ("ＪＵＭＰ", "jump"),  # full-width letters, NFKC
    ("Straße", "strasse"),  # casefold, not lower
    ("eat meal/snack", "eat meal/snack"),
    ("standing up (from sitting position)", "standing up (from sitting position)"),
    ("wave!?", "wave"),
])
def test_normalise_name(raw, key):
    assert normalise_name(raw) == key


def test_family_order_and_ids(project):
    vocab = tiny_vocab(project)
    sizes = vocab.family_sizes()
    assert list(sizes) == ["pad", "task", "action", "coord_x", "coord_y", "coord_z", "time", "eot"]
    # fetch is encoder-only: 3 decoder tasks; gym + yard = 6 classes, 4 distinct actions after dedup and aliases
    assert sizes == {"pad": 1, "task": 3, "action": 4, "coord_x": 10, "coord_y": 10, "coord_z": 10, "time": 8,
                     "eot": 3}
    assert len(vocab) == 49 and vocab.pad_id == 0 and vocab.prompts[0] is None
    assert vocab.tasks == ("detect", "lift", "recognise")  # sorted by name
    assert [vocab.task_token(t) for t in vocab.tasks] == [1, 2, 3]
    assert [vocab.eot_token(t) for t in vocab.tasks] == [46, 47, 48]
    assert vocab.prompts[1:4] == ["detection", "pose lifting", "action recognition"]
    assert vocab.prompts[46:] == ["detection ends here", "pose lifting is done", "action recognition ends here"]
    assert vocab.prompts[4:8] == ["Squat", "jump", "push up", "wave"]
    assert vocab.coordinate_offset("x") == 8 and vocab.coordinate_offset("z") == 28 and vocab.time_offset == 38
    assert vocab.prompts[8] == "The first horizontal coordinate"
    assert vocab.prompts[27] == "The tenth vertical coordinate"
    assert vocab.prompts[38] == "The first temporal position"
    assert list(vocab.family_of([0, 3, 4, 7, 8, 18, 37, 38, 45, 46])) == [
        "pad", "task", "action", "action", "coord_x", "coord_y", "coord_z", "time", "time", "eot"]
    with pytest.raises(ConfigError, match="fetch"):
        vocab.task_token("fetch")


def test_dedup_by_normalised_name_and_alias(project):
    vocab = tiny_vocab(project)
    gym, yard = vocab.label_set_ids("gym"), vocab.label_set_ids("yard")
    # "Squat" (gym) and "squat_down" (yard, alias of squat) share one token, as do "jump" and "Jump."
    assert gym[0] == yard[0] == vocab.action_token("squat") == vocab.action_token("SQUAT DOWN")
    assert gym[1] == yard[1] == vocab.action_token("jump")
    assert len({*gym.tolist(), *yard.tolist()}) == 4
    assert vocab.keys[gym[0]] == "action:squat" and vocab.prompts[gym[0]] == "Squat"  # first spelling met
    with pytest.raises(KeyError):
        vocab.action_token("cartwheel")


def test_alias_met_first_takes_the_canonical_prompt(tmp_path):
    root = write_project(tmp_path, vocabulary={**VOCABULARY, "label_sets": ["yard", "gym"]})
    vocab = tiny_vocab(root)
    squat = vocab.label_set_ids("yard")[0]
    assert vocab.prompts[squat] == "squat" and vocab.label_set_ids("gym")[0] == squat


def test_one_label_set_needs_distinct_actions(tmp_path):
    root = write_project(tmp_path, label_sets={**LABEL_SETS, "gym": ["Squat", "jump", "squat."]})
    with pytest.raises(ConfigError) as e:
        tiny_vocab(root)
    assert "labels/gym.yaml" in str(e.value) and "classes[2]" in str(e.value) and "classes[0]" in str(e.value)
    root = write_project(tmp_path / "b", label_sets={**LABEL_SETS, "yard": ["squat", "squat down", "wave"]})
    with pytest.raises(ConfigError, match=r"yard\.yaml: key 'classes\[1\]'.*aliases"):
        tiny_vocab(root)


def test_conflicting_aliases_name_file_and_key(tmp_path):
    aliases = {"squat": ["squat down"], "crouch": ["squat_down"]}
    root = write_project(tmp_path, vocabulary={**VOCABULARY, "aliases": aliases})
    with pytest.raises(ConfigError) as e:
        tiny_vocab(root)
    assert "vocabulary.yaml" in str(e.value) and "aliases.crouch" in str(e.value)


def test_building_twice_gives_identical_vocabularies(project):
    a, b = tiny_vocab(project), tiny_vocab(project)
    assert a.keys == b.keys and a.prompts == b.prompts and a.sha256 == b.sha256 and a == b


def test_appending_a_label_set_keeps_task_and_action_ids(tmp_path):
    old = tiny_vocab(write_project(tmp_path / "old"))
    root = write_project(tmp_path / "new", label_sets={**LABEL_SETS, "park": ["run", "Wave", "jump"]},
                         vocabulary={**VOCABULARY, "label_sets": ["gym", "yard", "park"]})
    new = tiny_vocab(root)
    assert new.family_sizes()["action"] == 5  # only "run" is new
    for name in ("gym", "yard"):
        assert np.array_equal(new.label_set_ids(name), old.label_set_ids(name))
    for task in old.tasks:
        assert new.task_token(task) == old.task_token(task)
    # later families move up by one; the transfer map finds every old token by key
    assert new.coordinate_offset("x") == old.coordinate_offset("x") + 1
    m = new.transfer_map(old)
    assert (m >= 0).sum() == len(old) and m[new.action_token("run")] == -1
    assert all(old.keys[m[i]] == new.keys[i] for i in range(len(new)) if m[i] >= 0)


def test_save_and_load_round_trip(project, tmp_path):
    vocab = tiny_vocab(project)
    path = vocab.save(tmp_path)
    assert path.name == "vocab.json"
    again = Vocabulary.load(tmp_path)
    assert again == vocab and again.keys == vocab.keys and again.prompts == vocab.prompts
    assert np.array_equal(again.label_set_ids("yard"), vocab.label_set_ids("yard"))
    assert again.action_token("squat down") == vocab.action_token("squat")
    data = json.loads(path.read_text())
    data["prompts"][5] = "leap"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"vocab\.json: key 'sha256'"):
        Vocabulary.load(path)


def test_missing_label_set_names_the_file_and_who_asked(tmp_path):
    tasks = {**TASKS, "recognise": {**TASKS["recognise"],
                                    "output": {"grammar": "action", "label_sets": ["gym", "no_such_set"]}}}
    root = write_project(tmp_path, tasks=tasks)
    with pytest.raises(ConfigError) as e:
        tiny_vocab(root)
    message = str(e.value)
    assert "labels/no_such_set.yaml" in message and "recognise.yaml" in message and "output.label_sets" in message


def test_label_set_file_name_must_match_its_name_key(project):
    write_yaml(project / "tokenizers" / "labels" / "gym.yaml", {"name": "jim", "classes": ["squat"]})
    with pytest.raises(ConfigError, match=r"gym\.yaml: key 'name'"):
        tiny_vocab(project)


def test_full_shipped_vocabulary():
    """Every label set of tokenizers/vocabulary.yaml and every task file: 3 x 1000 bins, builds in about a second."""
    start = time.perf_counter()
    vocab = build_vocabulary()
    seconds = time.perf_counter() - start
    spec = load_vocabulary_spec()
    tasks = load_tasks()
    decoder_tasks = [t.name for t in tasks if t.has_decoder]
    sizes = vocab.family_sizes()
    assert set(spec.label_sets) <= set(vocab.label_set_names)
    assert sizes["coord_x"] == sizes["coord_y"] == sizes["coord_z"] == 1000 and sizes["time"] == 256
    assert sizes["task"] == sizes["eot"] == len(decoder_tasks) == 6 and "retrieval" not in vocab.tasks
    assert vocab.prompts[vocab.coordinate_offset("x")] == "The first horizontal coordinate"
    assert vocab.prompts[vocab.coordinate_offset("z") + 999] == "The one thousandth depth coordinate"
    assert vocab.prompts[vocab.eot_token("action_recognition_3d")] == "3D action recognition ends here"
    # NTU-60 is the first 60 classes of NTU-120: one token each
    assert np.array_equal(vocab.label_set_ids("ntu60"), vocab.label_set_ids("ntu120")[:60])
    for name in vocab.label_set_names:
        ids = vocab.label_set_ids(name)
        assert len(set(ids.tolist())) == len(ids) and set(vocab.family_of(ids)) == {"action"}
    assert len(set(vocab.prompts[1:])) == len(vocab) - 1  # every prompt distinct
    assert seconds < 10, f"vocabulary build took {seconds:.1f} s"
