"""Target encoding and decoding (docs/design.md D4, D5): quantisation, codecs, decoder inputs and padding."""

import numpy as np
import pytest
import torch
from tiny_vocab_project import TASKS, write_project

from ups_toolkit.tokenization import (
    CoordinateQuantizer,
    Segment,
    build_codec,
    build_vocabulary,
    collate_targets,
    decoder_input,
    load_task,
    load_tasks,
    quantisation_floor,
    ranges_from_percentiles,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = write_project(tmp_path_factory.mktemp("project"))
    tasks = {t.name: t for t in load_tasks(sorted(TASKS), roots=[root])}
    return build_vocabulary(list(tasks.values()), roots=[root]), tasks


# ---- quantisation --------------------------------------------------------------------------------------------------


def test_round_trip_error_is_at_most_half_a_bin_on_every_axis():
    """Property test: random ranges, bin counts and coordinates inside the range."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        lo = rng.uniform(-5, 5, size=3)
        hi = lo + rng.uniform(1e-3, 10, size=3)
        n_bins = int(rng.integers(2, 3000))
        q = CoordinateQuantizer(lo, hi, n_bins)
        x = rng.uniform(lo, hi, size=(500, 3))
        x[:3] = [lo, hi, (lo + hi) / 2]  # the ends and the middle
        bins, clipped = q.quantise(x)
        assert not clipped.any() and bins.min() >= 0 and bins.max() <= n_bins - 1
        error = np.abs(q.dequantise(bins) - x)
        assert np.all(error <= q.delta / 2 * (1 + 1e-9) + 1e-12)


def test_values_outside_the_range_are_clipped_and_counted():
    q = CoordinateQuantizer([-1.0, 0.0], [1.0, 4.0], 1000)
    x = np.array([[-1.5, 2.0], [1.0 + 1e-9, 4.5], [0.0, -0.001], [7.0, 100.0]])
    bins, clipped = q.quantise(x)
    assert clipped.tolist() == [[True, False], [True, True], [False, True], [True, True]]
    assert bins.tolist() == [[0, 500], [999, 999], [500, 0], [999, 999]]  # clamped to the ends, never wrapped
    with pytest.raises(ValueError, match="NaN"):
        q.quantise(np.array([[np.nan, 0.0]]))


def test_quantisation_floor_is_0_4803_delta_on_uniform_data():
    rng = np.random.default_rng(1)
    q = CoordinateQuantizer([-1.0] * 3, [1.0] * 3, 1000)  # the 2 m span of docs/design.md D4: delta = 2.0 mm
    values = rng.uniform(-1.0, 1.0, size=(400_000, 3))
    floor = quantisation_floor(values, q)
    delta = q.delta[0]
    assert delta == pytest.approx(2.002e-3, rel=1e-3)
    assert floor["mean_euclidean_error"] / delta == pytest.approx(0.4803, abs=0.002)
    assert floor["rms_axis_error"] / delta == pytest.approx(np.sqrt(1 / 12), abs=0.002)
    assert floor["clip_rate"] == 0.0
    assert 1000 * floor["mean_euclidean_error"] == pytest.approx(0.96, abs=0.01)  # mm


def test_expectation_dequantisation_numpy_and_torch():
    q = CoordinateQuantizer([-1.0, 0.0, 2.0], [1.0, 4.0, 3.0], 11)
    probs = np.zeros((2, 3, 11))
    probs[0, :, 3] = 1.0  # one-hot: the bin value
    probs[1, :, 4] = probs[1, :, 6] = 0.5  # symmetric: the midpoint = bin 5
    expected = np.array([q.dequantise([3, 3, 3]), q.dequantise([5, 5, 5])])
    assert np.allclose(q.expectation(probs), expected)
    logits = torch.tensor(np.log(np.clip(probs, 1e-30, None)), dtype=torch.float64, requires_grad=True)
    soft = q.expectation_from_logits(logits)
    assert np.allclose(soft.detach().numpy(), expected, atol=1e-9)
    soft.sum().backward()  # differentiable for an L1 loss on soft-argmax coordinates
    assert logits.grad is not None


def test_ranges_from_percentiles():
    rng = np.random.default_rng(2)
    values = np.stack([rng.uniform(-2, 2, 100_000), rng.normal(0, 1, 100_000), np.full(100_000, 0.3)], axis=1)
    ranges = ranges_from_percentiles(values, ("x", "y", "z"), (0.1, 99.9))
    assert ranges["x"][0] == pytest.approx(-2.0, abs=0.02) and ranges["x"][1] == pytest.approx(2.0, abs=0.02)
    assert ranges["y"][1] == pytest.approx(3.09, abs=0.1)  # 99.9th percentile of N(0, 1)
    assert ranges["z"][0] < 0.3 < ranges["z"][1]  # a constant axis still gets a non-empty range


# ---- codecs ----------------------------------------------------------------------------------------------------------


def test_action_codec(tiny):
    vocab, tasks = tiny
    codec = build_codec(tasks["recognise"], vocab, label_set="yard")
    target = codec.encode(2)
    assert target.tolist() == [vocab.action_token("wave"), vocab.eot_token("recognise")]
    assert codec.decode(target) == 2
    assert codec.decode([vocab.action_token("push up")]) == -1  # an action of another label set
    logits = np.zeros((2, len(vocab)))
    logits[0, vocab.label_set_ids("yard")] = [0.5, 0.9, 0.5]
    logits[1, vocab.label_set_ids("yard")] = [0.1, 0.1, 0.1]
    assert codec.topk(logits, 3).tolist() == [[1, 0, 2], [0, 1, 2]]  # ties -> lower class index
    with pytest.raises(ValueError):
        codec.encode(3)


def test_coordinate_codec_round_trip_and_families(tiny):
    vocab, tasks = tiny
    codec = build_codec(tasks["lift"], vocab, layout="h36m17")
    assert codec.length == 3 * 17 + 1 and codec.shape == (1, 17, 3)
    rng = np.random.default_rng(3)
    lo, hi = codec.quantizer.lo, codec.quantizer.hi
    pose = rng.uniform(lo, hi, size=(4, 1, 17, 3))
    tokens = codec.encode(pose)
    assert tokens.shape == (4, 52) and (tokens[:, -1] == vocab.eot_token("lift")).all()
    families = vocab.family_of(tokens[:, :-1]).reshape(4, 17, 3)
    assert (families[..., 0] == "coord_x").all() and (families[..., 2] == "coord_z").all()
    decoded = codec.decode(tokens)
    assert decoded.shape == (4, 1, 17, 3)
    assert np.all(np.abs(decoded - pose) <= codec.quantizer.delta / 2 + 1e-12)
    assert codec.clip_rate == 0.0
    pose[0, 0, 0] = [5.0, 0.0, 1.0]  # x far outside [-1, 1]
    _, n_clipped = codec.encode(pose, return_clipped=True)
    assert n_clipped == 1 and codec.clip_rate == pytest.approx(1 / (2 * 4 * 51))
    bad = tokens[0].copy()
    bad[1] = bad[0]  # an X bin where a Y bin belongs
    with pytest.raises(ValueError, match="position 1 .* axis 'y'"):
        codec.decode(bad)


def test_segment_codec(tiny):
    vocab, tasks = tiny
    codec = build_codec(tasks["detect"], vocab)  # window 8, 8 temporal bins (bin = frame), N = 3, label set yard
    t0, eot = vocab.time_offset, vocab.eot_token("detect")
    yard = vocab.label_set_ids("yard")
    segments = [{"label": 2, "start": 5, "end": 8}, {"label": 0, "start": 0, "end": 3}]
    tokens = codec.encode(segments)
    # sorted by start; T_END holds the last frame (end - 1)
    assert tokens.tolist() == [t0 + 0, t0 + 2, yard[0], t0 + 5, t0 + 7, yard[2], eot]
    assert codec.decode(tokens) == [Segment(0, 0, 3), Segment(2, 5, 8)]
    probs = np.linspace(0.1, 0.7, len(tokens))
    assert [s.score for s in codec.decode(tokens, probs)] == pytest.approx([probs[2], probs[5]])
    assert codec.encode([]).tolist() == [eot]  # a window without actions
    many = [(1, s, s + 1) for s in range(5)]
    assert len(codec.encode(many)) == 3 * 3 + 1 and codec.n_truncated == 2  # at most N, the rest counted
    with pytest.raises(ValueError, match="outside the window"):
        codec.encode([(0, 4, 9)])
    with pytest.raises(ValueError, match="empty"):
        codec.encode([(0, 4, 4)])


def test_segment_codec_with_coarser_bins(tiny, tmp_path):
    vocab, tasks = tiny
    task = tasks["detect"].with_overrides({"input": {"window": 32, "hop": 16}})
    codec = build_codec(task, vocab)  # 8 bins over 32 frames: 4 frames per bin
    tokens = codec.encode([(1, 4, 11)])
    assert (tokens[:2] - vocab.time_offset).tolist() == [1, 2]  # frames 4 and 10
    assert codec.decode(tokens) == [Segment(1, 4, 12)]  # back to bin edges


def test_shipped_pose_task_codec_has_52_tokens_for_h36m():
    vocab = build_vocabulary()
    codec = build_codec(load_task("pose_estimation_2d3d"), vocab, layout="h36m17")
    assert codec.encode(np.zeros((1, 17, 3))).shape == (52,)
    assert codec.quantizer.delta[0] == pytest.approx(2 / 999)


# ---- decoder inputs and padding ------------------------------------------------------------------------------------


def test_decoder_input_is_bos_plus_shifted_target():
    assert decoder_input([7, 8, 9], bos_id=2).tolist() == [2, 7, 8]


def test_collate_targets_pads_with_zero_weight():
    batch = collate_targets([[5, 6, 9], [9]], bos_id=1, eot_id=9, eot_weight=0.1)
    assert batch["labels"].tolist() == [[5, 6, 9], [9, 0, 0]]
    assert batch["decoder_input_ids"].tolist() == [[1, 5, 6], [1, 0, 0]]
    assert np.allclose(batch["label_weights"], [[1, 1, 0.1], [0.1, 0, 0]])
    assert collate_targets([[9]], bos_id=1, eot_id=9, length=4)["labels"].shape == (1, 4)
    with pytest.raises(ValueError):
        collate_targets([[5, 9]], bos_id=1, eot_id=9, length=1)
