"""Grammar-constrained decoding masks (docs/design.md D5), for every grammar and every shipped task."""

import numpy as np
import pytest
from tiny_vocab_project import TASKS, write_project

from ups_toolkit.tokenization import build_codec, build_grammar, build_vocabulary, load_tasks


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = write_project(tmp_path_factory.mktemp("project"))
    tasks = {t.name: t for t in load_tasks(sorted(TASKS), roots=[root])}
    return build_vocabulary(list(tasks.values()), roots=[root]), tasks


def ids_of(mask_row) -> list[int]:
    return np.flatnonzero(mask_row).tolist()


def greedy_decode(grammar, rng, batch=16):
    """Constrained greedy decoding on random logits: argmax over the allowed set until every row ends."""
    prefix = np.zeros((batch, 0), dtype=np.int64)
    for _ in range(grammar.max_length):
        logits = rng.normal(size=(batch, grammar.vocab_size))
        allowed = grammar.allowed(prefix)
        assert allowed.any(axis=1).all() and not allowed[:, 0].any()  # something allowed, PAD never
        step = np.where(allowed, logits, -np.inf).argmax(axis=1)
        step[grammar.finished(prefix)] = 0  # finished rows are padded
        prefix = np.concatenate([prefix, step[:, None]], axis=1)
    assert grammar.finished(prefix).all()
    return prefix


def test_action_grammar(tiny):
    vocab, tasks = tiny
    grammar = build_grammar(tasks["recognise"], vocab, label_set="gym")
    eot = vocab.eot_token("recognise")
    assert ids_of(grammar.allowed([[]])[0]) == sorted(vocab.label_set_ids("gym").tolist())
    assert ids_of(grammar.allowed([[vocab.action_token("jump")]])[0]) == [eot]
    assert ids_of(grammar.allowed([[vocab.action_token("jump"), eot]])[0]) == [eot]  # finished: EOT only
    assert grammar.max_length == 2


def test_coordinate_grammar(tiny):
    vocab, tasks = tiny
    grammar = build_grammar(tasks["lift"], vocab, num_joints=2)
    eot = vocab.eot_token("lift")
    assert grammar.max_length == 7
    states = grammar.states(np.zeros((1, 9), dtype=np.int64))[0]
    axis_rows = [ids_of(grammar.table[s]) for s in states[:6]]
    for p, row in enumerate(axis_rows):
        axis = "xyz"[p % 3]
        assert row == list(range(vocab.coordinate_offset(axis), vocab.coordinate_offset(axis) + vocab.n_bins))
    assert ids_of(grammar.table[states[6]]) == [eot]  # EOT exactly at p = 3 * J * F
    assert eot not in axis_rows[0] + axis_rows[5]


def test_segment_grammar(tiny):
    vocab, tasks = tiny
    grammar = build_grammar(tasks["detect"], vocab)  # 8 bins, N = 3
    t0, eot = vocab.time_offset, vocab.eot_token("detect")
    wave = vocab.action_token("wave")
    time = lambda *bins: [t0 + b for b in bins]
    assert ids_of(grammar.allowed([[]])[0]) == time(*range(8)) + [eot]  # T_START or EOT
    assert ids_of(grammar.allowed([time(3)])[0]) == time(3, 4, 5, 6, 7)  # T_END >= T_START
    assert ids_of(grammar.allowed([time(3, 5)])[0]) == sorted(vocab.label_set_ids("yard").tolist())
    # next boundary: starts sorted, T_START >= 3, or EOT
    assert ids_of(grammar.allowed([time(3, 5) + [wave]])[0]) == time(3, 4, 5, 6, 7) + [eot]
    full = time(0, 1) + [wave] + time(2, 2) + [wave] + time(6, 7) + [wave]
    assert ids_of(grammar.allowed([full])[0]) == [eot]  # after N segments: EOT only
    assert grammar.max_length == 10
    with pytest.raises(ValueError, match="temporal tokens"):
        grammar.allowed([[wave]])  # a prefix the grammar never produces


def test_unsorted_segment_grammar_only_constrains_the_end(tiny):
    vocab, tasks = tiny
    grammar = build_grammar(tasks["detect"].with_overrides({"output": {"sorted_starts": False}}), vocab)
    t0, eot = vocab.time_offset, vocab.eot_token("detect")
    prefix = [t0 + 5, t0 + 6, vocab.action_token("wave")]
    assert ids_of(grammar.allowed([prefix])[0]) == list(range(t0, t0 + 8)) + [eot]


@pytest.mark.parametrize("task_name", ["recognise", "lift", "detect"])
def test_greedy_constrained_decoding_always_yields_a_decodable_target(tiny, task_name):
    vocab, tasks = tiny
    task = tasks[task_name]
    grammar = build_grammar(task, vocab, num_joints=3) if task_name == "lift" else build_grammar(task, vocab)
    codec = build_codec(task, vocab, num_joints=3) if task_name == "lift" else build_codec(task, vocab)
    decoded = greedy_decode(grammar, np.random.default_rng(4))
    for row in decoded:
        result = codec.decode(row)
        if task_name == "recognise":
            assert result >= 0
        elif task_name == "detect":
            assert all(s.start < s.end for s in result)
            assert [s.start for s in result] == sorted(s.start for s in result)
            # the decoded segments survive an encode -> decode round trip (encode re-sorts ties by end, label)
            again = codec.decode(codec.encode(result))
            assert sorted((s.start, s.end, s.label) for s in again) == sorted((s.start, s.end, s.label) for s in result)
        else:
            assert result.shape == (1, 3, 3)


def test_every_shipped_task_grammar_accepts_its_own_targets():
    """Teacher forcing: each position of an encoded target is allowed by that position's mask; PAD never is."""
    vocab = build_vocabulary()
    rng = np.random.default_rng(5)
    for task in load_tasks():
        if not task.has_decoder:
            with pytest.raises(Exception, match="encoder-only"):
                build_grammar(task, vocab)
            continue
        layout = "h36m17" if "h36m17" in task.input.layouts else None
        grammar = build_grammar(task, vocab, layout=layout)
        codec = build_codec(task, vocab, layout=layout)
        assert not grammar.table[:, vocab.pad_id].any()
        if task.output.grammar == "action":
            targets = [codec.encode(c) for c in range(codec.num_classes)]
        elif task.output.grammar == "coordinates":
            lo, hi = codec.quantizer.lo, codec.quantizer.hi
            targets = list(codec.encode(rng.uniform(lo - 0.1, hi + 0.1, size=(8, *codec.shape))))
        else:
            window = task.input.params["window"]
            targets = []
            for n in range(task.output.max_segments + 2):
                starts = np.sort(rng.integers(0, window - 1, size=n))
                targets.append(codec.encode([(int(rng.integers(0, codec.class_ids.size)), int(s),
                                              int(rng.integers(s + 1, window + 1))) for s in starts]))
        batch = np.zeros((len(targets), grammar.max_length), dtype=np.int64)
        for i, t in enumerate(targets):
            batch[i, : len(t)] = t
        states = grammar.states(batch)
        allowed = grammar.table[states, batch]
        real = np.arange(grammar.max_length) < np.array([len(t) for t in targets])[:, None]
        assert allowed[real].all(), task.name
        # EOT is allowed only where the grammar may end
        eot_allowed = grammar.table[states, vocab.eot_token(task.name)]
        if task.output.grammar != "segments":
            assert eot_allowed[real].tolist() == (np.arange(grammar.max_length) == grammar.max_length - 1)[
                None].repeat(len(targets), 0)[real].tolist()


def test_grammar_tokens_and_positional_states(tiny):
    vocab, specs = tiny
    for name, spec in specs.items():
        if spec.output.grammar == "none":  # encoder-only
            continue
        grammar = build_grammar(spec, vocab)
        assert np.array_equal(grammar.tokens, np.flatnonzero(grammar.table.any(axis=0)))
        assert vocab.pad_id not in grammar.tokens and grammar.eot_id in grammar.tokens
        positional = grammar.positional_states(grammar.max_length + 2)
        if grammar.name == "segments":
            assert positional is None  # the state depends on the tokens
            continue
        # a target that never ends: its states are the positional ones
        never_ends = np.full((1, grammar.max_length + 2), grammar.table[0].argmax(), dtype=np.int64)
        assert np.array_equal(grammar.states(never_ends)[0], positional)
