"""The UPS model (docs/design.md D3, D5-D8): config, forward and loss for every task grammar, constrained decoding (own
cached loop and transformers ``generate()``), routing, gradients, the Hugging Face round trip and checkpoint errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_ups_model import random_pose, random_text_table, shipped_vocabulary, tiny_config, tiny_model

from ups_toolkit.errors import ConfigError, UPSError
from ups_toolkit.tokenization import build_codec, build_grammar, build_vocabulary, collate_targets, load_tasks

REPO = Path(__file__).resolve().parents[1]

# (task, layout, channels, persons) for one batch of every task with a decoder
TASK_INPUTS = {
    "action_recognition_2d": ("coco17", 2, 1),
    "action_recognition_3d": ("ntu25", 3, 2),
    "early_action_prediction": ("h36m17", 3, 1),
    "motion_prediction": ("h36m17", 3, 1),
    "pose_estimation_2d3d": ("h36m17", 2, 1),
    "temporal_action_detection": ("ntu25", 3, 2),
}


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny tensors: a second thread only adds contention


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0).eval()


def pose_for(task, n=3, seed=0):
    layout, channels, persons = TASK_INPUTS[task]
    return random_pose(n, layout, channels, persons, seed=seed), layout


def targets_for(model, task, n=3, seed=0):
    """(N, L) labels built with the task's codec, as the training side builds them."""
    vocab, spec = model.vocabulary, model.task_spec(task)
    layout = TASK_INPUTS[task][0]
    codec = model.codec(task, layout=layout)
    rng = np.random.default_rng(seed)
    if spec.output.grammar == "action":
        rows = [codec.encode(int(rng.integers(codec.num_classes))) for _ in range(n)]
    elif spec.output.grammar == "coordinates":
        rows = [codec.encode(rng.uniform(-0.9, 0.9, size=codec.shape)) for _ in range(n)]
    else:  # a different number of segments per row: mixed target lengths in one batch
        rows = [codec.encode([{"label": int(rng.integers(codec.class_ids.size)), "start": 10 * s, "end": 10 * s + 5}
                              for s in range(i)]) for i in range(n)]
    batch = collate_targets(rows, bos_id=vocab.task_token(task), eot_id=vocab.eot_token(task))
    return {k: torch.as_tensor(v) for k, v in batch.items()}


def boost_memory(model, factor=30.0):
    """Make the decoder depend strongly on the encoder memory, so different poses decode differently."""
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.cross_attn.out.weight.mul_(factor)


# ---- config ----------------------------------------------------------------------------------------------------------


def test_config_follows_the_transformers_5_conventions():
    config = tiny_config()
    assert config.model_type == "ups" and config.is_encoder_decoder and config.tie_word_embeddings is False
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 32, 4)
    assert config.encoder["d_model"] == 64 and config.encoder["num_tasks"] == len(config.tasks) == 7
    assert "preset" not in config.encoder  # stored resolved: a later preset change cannot alter a saved model
    # longest grammar: motion prediction on NTU-25, 3 x 25 joints x 10 frames + EOT
    assert config.max_target_length == 751
    assert config.task_specs["pose_estimation_2d3d"]["output"]["grammar"] == "coordinates"
    restored = type(config)(**json.loads(config.to_json_string()))
    assert restored.to_dict() == config.to_dict()


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="max_target_length 52 is shorter than the longest grammar .*751"):
        tiny_config(max_target_length=52)
    with pytest.raises(ConfigError, match="encoder: unknown key 'width'"):
        tiny_config(encoder={"width": 3})
    with pytest.raises(ConfigError, match="label_smoothing 1.0 must lie in"):
        tiny_config(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="pooled_feature 'sum' is not one of none, memory, bos"):
        tiny_config(pooled_feature="sum")
    with pytest.raises(ConfigError, match="logits 'l2' is not one of dot, cosine"):
        tiny_config(logits="l2")
    with pytest.raises(ConfigError, match="task_specs names 'lift'"):
        tiny_config(task_specs={"lift": {}})


def test_task_specs_carry_resolved_ranges():
    spec = load_tasks(["pose_estimation_2d3d"])[0]
    resolved = spec.with_overrides({"output": {"ranges": {"x": [-0.5, 0.5], "y": [-1.0, 0.2], "z": [-0.4, 0.6]}}})
    config = tiny_config(tasks=["pose_estimation_2d3d"], task_specs={"pose_estimation_2d3d": resolved})
    assert config.task_spec("pose_estimation_2d3d").output.ranges["y"] == (-1.0, 0.2)
    assert config.max_target_length == 76  # NTU-25 is an accepted layout: 3 x 25 + 1


# ---- forward and loss ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASK_INPUTS))
def test_forward_shapes_and_finite_loss_for_every_task(model, task):
    pose, layout = pose_for(task)
    batch = targets_for(model, task)
    out = model(pose=pose, layout=layout, task=task, labels=batch["labels"])
    n, length = batch["labels"].shape
    assert out.logits.shape == (n, length, len(model.vocabulary))
    assert out.encoder_pooled.shape == (n, 2 * 64) and out.routes.shape == (n, 4)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    # decoder inputs built inside = [BOS] + labels[:-1]: what the collate builds, up to the (unweighted) positions
    # after EOT, which see EOT here and PAD there
    explicit = model(pose=pose, layout=layout, task=task, labels=batch["labels"],
                     decoder_input_ids=batch["decoder_input_ids"], label_weights=batch["label_weights"])
    real = batch["label_weights"] > 0
    assert torch.allclose(explicit.logits[real], out.logits[real], atol=1e-5)
    assert torch.allclose(explicit.loss, out.loss)


@pytest.mark.parametrize("task", ["action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection"])
def test_loss_is_weighted_cross_entropy_over_the_grammar_allowed_tokens(model, task):
    pose, layout = pose_for(task)
    batch = targets_for(model, task)
    labels, weights = batch["labels"], batch["label_weights"]
    out = model(pose=pose, layout=layout, task=task, labels=labels)
    spec = model.task_spec(task)
    grammar = build_grammar(spec, model.vocabulary, layout=layout)
    allowed = torch.as_tensor(grammar.masks(labels.numpy()))  # (N, L, V), independent of the model's own tables
    assert not allowed[..., 0].any()  # PAD is never allowed
    log_p = out.logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
    real = weights > 0
    nll = -log_p[real].gather(-1, labels[real][:, None]).squeeze(-1)
    assert torch.allclose(out.loss, (nll * weights[real]).sum() / weights.sum(), atol=1e-5)


def test_a_disallowed_token_never_gets_probability(model):
    task, (pose, layout) = "action_recognition_3d", pose_for("action_recognition_3d")
    batch = targets_for(model, task)
    vocab = model.vocabulary
    outside = int(vocab.label_set_ids("kinetics400")[0])  # an action, but not of the NTU-60 label set
    assert outside not in set(vocab.label_set_ids("ntu60").tolist())
    before = model(pose=pose, layout=layout, task=task, labels=batch["labels"]).loss
    with torch.no_grad():
        model.decoder.vocab.bias[outside] += 1e4
        model.decoder.vocab.bias[vocab.coordinate_offset("x")] += 1e4
    try:
        after = model(pose=pose, layout=layout, task=task, labels=batch["labels"]).loss
        assert torch.allclose(before, after, atol=1e-5)  # the boosted tokens are outside the softmax
        predicted = model.predict(pose, layout, task)["tokens"]
        generated = model.generate(pose=pose, layout=layout, task=task)
        for tokens in (predicted, generated[:, 1:]):
            assert set(tokens[:, 0].tolist()) <= set(vocab.label_set_ids("ntu60").tolist())
            assert (tokens[:, 1] == vocab.eot_token(task)).all()
        # the full-vocabulary ablation sees them
        model.config.loss_over = "vocabulary"
        full = model(pose=pose, layout=layout, task=task, labels=batch["labels"]).loss
        assert full > after + 1e3
    finally:
        model.config.loss_over = "grammar"
        with torch.no_grad():
            model.decoder.vocab.bias.zero_()


@pytest.mark.parametrize("task", sorted(TASK_INPUTS))
@pytest.mark.parametrize("logits", ["dot", "cosine"])
def test_training_forward_scores_only_the_grammar_tokens_with_the_loss_and_gradients_of_all(task, logits):
    # forward(labels=...) projects and scores only the tokens the grammar allows somewhere (speed, issue 14); the
    # loss and every gradient equal those of scoring the whole vocabulary table and masking it
    model = tiny_model(seed=4, logits=logits).train()
    with torch.no_grad():  # non-zero residual and bias, so their gradients are compared too
        model.decoder.vocab.residual.normal_(0, 0.1)
        model.decoder.vocab.bias.normal_(0, 0.1)
    pose, layout = pose_for(task)
    labels = targets_for(model, task)["labels"]
    grammar = model.grammar(task, layout=layout)
    tokens = torch.as_tensor(grammar.tokens)

    def run(restricted):
        torch.manual_seed(0)  # the same Gumbel route and dropout masks in both runs
        model.zero_grad(set_to_none=True)
        if restricted:
            out = model(pose=pose, layout=layout, task=task, labels=labels)
        else:
            encoded = model.encoder(pose, layout=layout, task=task)
            hidden = model(encoder_outputs=encoded, layout=layout, task=task,
                           decoder_input_ids=torch.cat([model._bos(task, len(labels), "cpu"), labels[:, :-1]], 1)
                           ).decoder_hidden_state
            out = model.decoder.logits(hidden)  # every token
            out = type("Out", (), {"loss": model.loss(out, labels, task=task, layout=layout), "logits": out})
        out.loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast, fast_grads = run(True)
    full, full_grads = run(False)
    assert torch.allclose(fast.loss, full.loss, atol=1e-5)
    assert torch.allclose(fast.logits[..., tokens], full.logits[..., tokens].detach(), atol=1e-5)
    outside = torch.ones(model.config.vocab_size, dtype=torch.bool)
    outside[tokens] = False
    assert torch.isneginf(fast.logits[..., outside]).all()  # never allowed by this grammar: not computed
    assert fast_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        assert torch.allclose(fast_grads[name], grad, atol=1e-6, rtol=1e-4), name


def test_grammar_tensors_states_equal_the_grammar_states(model):
    for task in sorted(TASK_INPUTS):
        layout = TASK_INPUTS[task][0]
        grammar = model.grammar(task, layout=layout)
        labels = targets_for(model, task)["labels"]
        states = model._grammar_tensors(grammar, "cpu").states(labels)
        assert torch.equal(states, torch.as_tensor(grammar.states(labels.numpy()))), task


@pytest.mark.parametrize("loss_over", ["grammar", "vocabulary"])
def test_label_smoothing_spreads_over_the_tokens_the_softmax_covers(loss_over):
    task = "action_recognition_3d"
    pose, layout = pose_for(task)
    labels = targets_for(tiny_model(seed=5), task)["labels"]
    plain = tiny_model(seed=5, loss_over=loss_over).eval()
    smooth = tiny_model(seed=5, loss_over=loss_over, label_smoothing=0.2).eval()
    out = smooth(pose=pose, layout=layout, task=task, labels=labels)
    assert torch.allclose(plain(pose=pose, layout=layout, task=task, labels=labels).logits, out.logits)
    first = out.logits[:, 0]
    if loss_over == "grammar":
        label_set = smooth.vocabulary.label_set_ids("ntu60").tolist()
        first = first[:, torch.as_tensor(label_set)]
        targets = torch.tensor([label_set.index(int(token)) for token in labels[:, 0]])
        eot_term = torch.zeros(len(labels))  # one allowed token (EOT): exactly 0, smoothed or not
    else:
        targets = labels[:, 0]
        eot_term = F.cross_entropy(out.logits[:, 1], labels[:, 1], reduction="none", label_smoothing=0.2)
    action_term = F.cross_entropy(first, targets, reduction="none", label_smoothing=0.2)
    # (1 - ε)·CE + ε·mean CE over the covered tokens is torch's smoothing with ε spread uniformly over them
    assert torch.allclose(out.loss, (action_term + eot_term).sum() / (2 * len(labels)), atol=1e-5)


def test_full_vocabulary_loss_and_eot_weight():
    model = tiny_model(seed=1, loss_over="vocabulary", eot_weight=0.0).eval()
    task = "action_recognition_3d"
    pose, layout = pose_for(task)
    batch = targets_for(model, task)
    out = model(pose=pose, layout=layout, task=task, labels=batch["labels"])
    # eot_weight 0: only the ACTION position counts, over the whole vocabulary
    assert torch.allclose(out.loss, F.cross_entropy(out.logits[:, 0], batch["labels"][:, 0]), atol=1e-5)


def test_a_target_the_grammar_forbids_is_reported(model):
    task, (pose, layout) = "action_recognition_3d", pose_for("action_recognition_3d")
    labels = targets_for(model, task)["labels"]
    labels[1, 0] = model.vocabulary.coordinate_offset("x")
    with pytest.raises(UPSError, match=r"labels row 1 position 0 holds token \d+ \('coord_x:0'\).*action grammar"):
        model(pose=pose, layout=layout, task=task, labels=labels)


def test_task_errors(model):
    pose, layout = pose_for("action_recognition_3d")
    with pytest.raises(ConfigError, match="task 'lift' is not configured"):
        model(pose=pose, layout=layout, task="lift")
    with pytest.raises(ConfigError, match="'retrieval' is encoder-only"):
        model(pose=pose, layout=layout, task="retrieval")
    with pytest.raises(ConfigError, match="label set 'no_such_set' is not in this vocabulary"):
        model.predict(pose, layout, "action_recognition_3d", label_set="no_such_set")
    # a task file does not enumerate datasets: any label set of the vocabulary decodes (JHMDB's 21 classes here)
    assert model.predict(pose, layout, "action_recognition_3d", label_set="jhmdb", k=3)["topk_labels"].max() < 21


# ---- decoding --------------------------------------------------------------------------------------------------------


def test_predict_outputs_for_every_grammar(model):
    vocab = model.vocabulary
    n = 2
    pose, layout = pose_for("action_recognition_2d", n)
    out = model.predict(pose, layout, "action_recognition_2d", label_set="penn_action", k=3)
    classes = len(vocab.label_set_ids("penn_action"))
    assert out["tokens"].shape == (n, 2) and out["topk_labels"].shape == (n, 3) and out["topk_probs"].shape == (n, 3)
    assert ((out["topk_labels"] >= 0) & (out["topk_labels"] < classes)).all()
    assert (out["topk_probs"][:, :-1] >= out["topk_probs"][:, 1:]).all()
    top1_token = torch.as_tensor(vocab.label_set_ids("penn_action"))[out["topk_labels"][:, 0]]
    assert torch.equal(top1_token, out["tokens"][:, 0])  # greedy step 1 = top-1 of the label-set distribution

    for task, joints, frames in [("pose_estimation_2d3d", 17, 1), ("motion_prediction", 17, 10)]:
        pose, layout = pose_for(task, n)
        out = model.predict(pose, layout, task)
        assert out["tokens"].shape == (n, 3 * joints * frames + 1)
        assert (out["tokens"][:, -1] == vocab.eot_token(task)).all()
        assert out["coordinates"].shape == out["coordinates_expectation"].shape == (n, frames, joints, 3)
        ranges = model.task_spec(task).output.ranges
        for a, axis in enumerate("xyz"):
            lo, hi = ranges[axis]
            assert lo <= out["coordinates"][..., a].min() and out["coordinates"][..., a].max() <= hi
            assert lo <= out["coordinates_expectation"][..., a].min() <= hi

    pose, layout = pose_for("temporal_action_detection", n)
    out = model.predict(pose, layout, "temporal_action_detection")
    assert out["tokens"].shape[0] == n and out["tokens"].shape[1] <= 31 and len(out["segments"]) == n
    for segments in out["segments"]:
        for label, start, end, score in segments:
            assert 0 <= start < end <= 256 and 0 <= label < 51 and 0 < score <= 1


def test_coordinate_soft_argmax_matches_the_codec(model):
    task, (pose, layout) = "pose_estimation_2d3d", pose_for("pose_estimation_2d3d")
    labels = targets_for(model, task)["labels"]
    logits = model(pose=pose, layout=layout, task=task, labels=labels).logits
    codec = model.codec(task, layout=layout)
    expected = np.stack([
        codec.quantizer.expectation_from_logits(np.stack(
            [logits[i, p, off: off + codec.quantizer.n_bins].detach().numpy()
             for p, off in zip(range(codec.n_values), np.tile(codec.offsets, codec.n_values // 3))]).reshape(
            1, 17, 3, -1)) for i in range(len(labels))])
    got = model.coordinate_expectation(logits, task, layout)
    assert got.shape == (3, 1, 17, 3) and got.requires_grad
    assert np.allclose(got.detach().numpy(), expected, atol=1e-5)


def test_time_expectation_l1_measures_the_soft_argmax_distance_in_window_fractions(model):
    task = "temporal_action_detection"
    n_bins, offset = model.task_spec(task).output.n_time_bins, model.vocabulary.time_offset
    labels = torch.tensor([[offset + 10, offset + 30, model.vocabulary.eot_token(task)]])
    logits = torch.zeros(1, 3, model.config.vocab_size)
    logits[0, 0, offset + 10] = 60.0   # all mass on the target bin: distance 0
    logits[0, 1, offset + 20] = 60.0   # all mass 10 bins early
    logits[0, 1, offset - 1] = 500.0   # outside the temporal bins: ignored by the restricted soft-argmax
    logits[0, 2, offset + 5] = 500.0   # a non-temporal target position: not counted
    loss = model.time_expectation_l1(logits.requires_grad_(), labels, task)
    assert float(loss.detach()) == pytest.approx((0 + 10 / n_bins) / 2, abs=1e-5)
    # a gradient pushes the second position's mass towards bin 30
    flat = torch.zeros(1, 3, model.config.vocab_size, requires_grad=True)
    model.time_expectation_l1(flat, labels, task).backward()
    assert float(flat.grad[0, 1, offset + 30]) < 0 < float(flat.grad[0, 1, offset + 200])
    no_time = torch.tensor([[model.vocabulary.eot_token(task)] * 3])
    assert float(model.time_expectation_l1(flat, no_time, task)) == 0.0


@torch.no_grad()
def test_forward_returns_the_trained_loss_with_the_kinds_auxiliary_terms():
    """forward(labels=..., coordinates=...) = cross-entropy + auxiliary_weights[task] × the kind's term."""
    weights = {"pose_estimation_2d3d": 2.0, "temporal_action_detection": 0.5}
    weighted, plain = tiny_model(seed=0, auxiliary_weights=weights).eval(), tiny_model(seed=0).eval()
    task, (pose, layout) = "pose_estimation_2d3d", pose_for("pose_estimation_2d3d")
    labels = targets_for(plain, task)["labels"]
    coordinates = torch.rand(3, 1, 17, 3) - 0.5
    ce = plain(pose=pose, layout=layout, task=task, labels=labels, coordinates=coordinates)
    total = weighted(pose=pose, layout=layout, task=task, labels=labels, coordinates=coordinates)
    l1 = (plain.coordinate_expectation(ce.logits, task, layout) - coordinates).abs().mean()
    assert float(total.loss) == pytest.approx(float(ce.loss + 2.0 * l1), rel=1e-6) and float(l1) > 0
    with pytest.raises(ValueError, match="pass coordinates=..."):
        weighted(pose=pose, layout=layout, task=task, labels=labels)
    task, (pose, layout) = "temporal_action_detection", pose_for("temporal_action_detection")
    labels = targets_for(plain, task)["labels"]
    ce = plain(pose=pose, layout=layout, task=task, labels=labels)
    total = weighted(pose=pose, layout=layout, task=task, labels=labels)
    expected = ce.loss + 0.5 * plain.time_expectation_l1(ce.logits, labels, task)
    assert float(total.loss) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ConfigError, match="auxiliary_weights must be >= 0 and name configured tasks"):
        tiny_config(auxiliary_weights={"nope": 1.0})


@pytest.mark.parametrize("task", ["action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection"])
def test_cached_decoding_equals_uncached_decoding(task):
    model = tiny_model(seed=2).eval()
    boost_memory(model)
    pose, layout = pose_for(task, n=4, seed=3)
    cached = model.predict(pose, layout, task, use_cache=True)["tokens"]
    uncached = model.predict(pose, layout, task, use_cache=False)["tokens"]
    assert torch.equal(cached, uncached)
    gen = {use: model.generate(pose=pose, layout=layout, task=task,
                               generation_config=model.generation_config_for(task, layout=layout, use_cache=use))
           for use in (True, False)}
    assert torch.equal(gen[True], gen[False])
    with torch.no_grad():  # generate() also takes precomputed encoder outputs
        encoded = model.encoder(pose, layout=layout, task=task)
    assert torch.equal(model.generate(encoder_outputs=encoded, layout=layout, task=task), gen[True])
    # greedy generate() = our loop, token for token (generate returns BOS first and stops when every row ended)
    assert torch.equal(gen[True][:, 1:], cached[:, : gen[True].shape[1] - 1])
    assert gen[True].shape[1] - 1 == cached.shape[1]


def test_mixed_length_detection_batch_pads_after_eot():
    model = tiny_model(seed=3).eval()
    boost_memory(model)
    task = "temporal_action_detection"
    vocab, eot = model.vocabulary, model.vocabulary.eot_token(task)
    pose, layout = pose_for(task, n=6, seed=4)
    # Shift the EOT bias to the median margin of step 1: about half the rows end at once, the others go on.
    with torch.no_grad():
        first = model(pose=pose, layout=layout, task=task).logits[:, 0]
        time_ids = slice(vocab.time_offset, vocab.time_offset + 256)
        margin = first[:, time_ids].max(-1).values - first[:, eot]
        model.decoder.vocab.bias[eot] += margin.median() + 1e-3
    out = model.predict(pose, layout, task)
    tokens = out["tokens"]
    ended = (tokens == eot).float().argmax(1)
    assert (ended == 0).any() and (ended > 0).any()  # mixed lengths in one batch
    for row, stop in enumerate(ended.tolist()):
        assert (tokens[row, stop + 1:] == vocab.pad_id).all()
        assert len(out["segments"][row]) == stop // 3
        alone = model.predict(pose[row: row + 1], layout, task)
        assert torch.equal(alone["tokens"][0], tokens[row, : alone["tokens"].shape[1]])  # rows decode independently
    assert torch.equal(model.predict(pose, layout, task, use_cache=False)["tokens"], tokens)
    generated = model.generate(pose=pose, layout=layout, task=task)
    assert torch.equal(generated[:, 1:], tokens)


def test_beam_search_runs_under_the_grammar(model):
    task, (pose, layout) = "pose_estimation_2d3d", pose_for("pose_estimation_2d3d", n=2)
    beams = model.generate(pose=pose, layout=layout, task=task,
                           generation_config=model.generation_config_for(task, layout=layout, num_beams=3))
    codec = model.codec(task, layout=layout)
    assert beams.shape == (2, 53) and codec.decode(beams[:, 1:].numpy()).shape == (2, 1, 17, 3)


# ---- routing and gradients -------------------------------------------------------------------------------------------


def test_routing_is_deterministic_at_inference_and_follows_the_task_embedding():
    model = tiny_model(seed=4).eval()
    router = model.encoder.dste.router
    pose, layout = pose_for("action_recognition_3d")
    a = model.encode(pose, layout, "action_recognition_3d")
    b = model.encode(pose, layout, "action_recognition_3d")
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.routes, b.routes)
    ids = model.encoder.task_ids
    rec, pose_task = ids["action_recognition_3d"], ids["pose_estimation_2d3d"]
    with torch.no_grad():
        router.task_embeddings[pose_task] = -router.task_embeddings[rec]  # every score flips sign
    c = model.encode(pose, layout, "pose_estimation_2d3d")
    assert (c.routes != a.routes).all() and not torch.allclose(c.pooled, a.pooled)
    routes = model.routes()
    assert [r["block"] for r in routes["action_recognition_3d"]["temporal"]] == a.routes[:2].tolist()
    assert [r["block"] for r in routes["pose_estimation_2d3d"]["spatial"]] == c.routes[2:].tolist()
    # retrieval runs with the route of its options.route_task
    assert torch.equal(model.encode(pose, layout, "retrieval").pooled, a.pooled)
    assert routes["retrieval"] == routes["action_recognition_3d"]


def test_routing_temperature_anneals():
    model = tiny_model(seed=0)
    assert model.set_routing_temperature(0, 100) == pytest.approx(1.0)
    assert model.set_routing_temperature(50, 100) == pytest.approx(0.1 ** 0.5)
    assert model.encoder.dste.router.temperature == pytest.approx(0.1 ** 0.5)
    assert model.set_routing_temperature(500, 100) == pytest.approx(0.1)


def test_gradients_reach_block_and_task_embeddings_and_the_projection():
    model = tiny_model(seed=5).train()
    task, (pose, layout) = "pose_estimation_2d3d", pose_for("pose_estimation_2d3d")
    out = model(pose=pose, layout=layout, task=task, labels=targets_for(model, task)["labels"])
    out.loss.backward()
    router = model.encoder.dste.router
    task_id = model.encoder.task_ids[task]
    assert (router.block_embeddings.grad.abs().sum(-1) > 0).all()  # every block of every layer
    assert router.task_embeddings.grad[task_id].abs().sum() > 0
    others = [i for i in range(router.num_tasks) if i != task_id]
    assert router.task_embeddings.grad[others].abs().sum() == 0
    vocab = model.decoder.vocab
    assert vocab.projection.weight.grad.abs().sum() > 0 and vocab.residual.grad.abs().sum() > 0
    assert vocab.bias.grad.abs().sum() > 0 and not vocab.text_table.requires_grad


def test_frozen_vocabulary_reading_has_no_residual():
    model = tiny_model(seed=0, vocab_residual=False, logits="cosine")
    names = dict(model.named_parameters())
    assert "decoder.vocab.residual" not in names and names["decoder.vocab.logit_scale"].item() == 10.0


def test_text_table_is_the_given_one_and_the_vocabulary_is_checked():
    vocab = shipped_vocabulary()
    model = tiny_model(seed=0)
    assert torch.equal(model.decoder.vocab.text_table, random_text_table(vocab))
    assert model.config.vocab_sha256 == vocab.sha256 and model.config.d_text == 16
    from ups_toolkit.models import UPSForSeq2Seq

    with pytest.raises(ConfigError, match=r"text_embeddings has shape \(10, 16\)"):
        UPSForSeq2Seq(tiny_config(), vocabulary=vocab, text_embeddings=torch.zeros(10, 16))
    with pytest.raises(ConfigError, match="needs a vocabulary"):
        UPSForSeq2Seq(tiny_config())


# ---- a tiny model learns ---------------------------------------------------------------------------------------------


def test_tiny_model_overfits_a_few_recognition_samples():
    # Every piece in the loop: routed encoder (straight-through Gumbel, annealed), decoder, tied vocabulary
    # embeddings, grammar-restricted loss, then constrained decoding. 16 frames keep the test fast on a CPU.
    frames = 16
    model = tiny_model(seed=6, tasks=["action_recognition_3d"], encoder={"num_frames": frames}).train()
    task, layout, label_set = "action_recognition_3d", "ntu25", "synthetic"
    codec = build_codec(model.task_spec(task), model.vocabulary, label_set=label_set)
    classes = np.arange(6)  # one sample per class
    pose = torch.randn(len(classes), frames, 2, 25, 3, generator=torch.Generator().manual_seed(7))
    batch = collate_targets([codec.encode(c) for c in classes], bos_id=model.vocabulary.task_token(task),
                            eot_id=codec.eot_id)
    labels = torch.as_tensor(batch["labels"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    with torch.no_grad():
        before = model.predict(pose, layout, task, label_set=label_set, k=1)["topk_labels"][:, 0]
    steps = 100
    for step in range(steps):
        model.set_routing_temperature(step, steps)
        loss = model(pose=pose, layout=layout, task=task, labels=labels, label_set=label_set).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = model.predict(pose, layout, task, label_set=label_set, k=1)
    assert (before != torch.as_tensor(classes)).any()  # not right by chance before training
    assert out["topk_labels"][:, 0].tolist() == classes.tolist()
    assert loss.item() < 0.1


# ---- save / load -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny_model(seed=8).eval()
    boost_memory(model)
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(folder)
    return model, folder


def copy_checkpoint(folder, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_save_writes_weights_config_and_vocabulary(saved):
    model, folder = saved
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "vocab.json",
                                                 "generation_config.json"}
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as f:
        assert torch.equal(f.get_tensor("decoder.vocab.text_table"), model.decoder.vocab.text_table)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "ups" and config["vocab_sha256"] == model.vocabulary.sha256


def test_auto_model_round_trip_in_a_fresh_process(saved, tmp_path):
    model, folder = saved
    task, (pose, layout) = "pose_estimation_2d3d", pose_for("pose_estimation_2d3d", n=2)
    torch.save({"pose": pose}, tmp_path / "input.pt")
    script = f"""
import sys
import ups_toolkit.models
assert "torch" not in sys.modules and "transformers" not in sys.modules  # the package import stays light
import torch
from ups_toolkit.models import UPSForSeq2Seq  # first access: registers the Auto classes
from transformers import AutoModel, AutoModelForSeq2SeqLM
model = AutoModel.from_pretrained({str(folder)!r}).eval()
assert type(model) is UPSForSeq2Seq and type(AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r})) is UPSForSeq2Seq
pose = torch.load({str(tmp_path / 'input.pt')!r}, weights_only=True)["pose"]
with torch.no_grad():
    logits = model(pose=pose, layout={layout!r}, task={task!r}).logits
tokens = model.predict(pose, {layout!r}, {task!r})["tokens"]
torch.save({{"logits": logits, "tokens": tokens, "sha": model.vocabulary.sha256}}, {str(tmp_path / 'out.pt')!r})
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        logits = model(pose=pose, layout=layout, task=task).logits
    assert torch.equal(loaded["logits"], logits)
    assert torch.equal(loaded["tokens"], model.predict(pose, layout, task)["tokens"])
    assert loaded["sha"] == model.vocabulary.sha256


def test_from_pretrained_in_process_restores_vocabulary_and_outputs(saved):
    from ups_toolkit.models import UPSForSeq2Seq

    model, folder = saved
    loaded = UPSForSeq2Seq.from_pretrained(folder).eval()
    assert loaded.vocabulary == model.vocabulary
    task, (pose, layout) = "temporal_action_detection", pose_for("temporal_action_detection", n=2)
    assert loaded.predict(pose, layout, task)["segments"] == model.predict(pose, layout, task)["segments"]
    assert loaded.routes() == model.routes()
    # loading in bfloat16 rebuilds the encoder's computed buffers in that dtype too
    half = UPSForSeq2Seq.from_pretrained(folder, dtype=torch.bfloat16).eval()
    assert half.encoder.dste.temporal_pe.dtype == torch.bfloat16
    assert half.predict(pose, layout, task)["tokens"].shape[0] == 2


def test_a_model_saved_before_the_pooled_feature_option_loads_without_it(tmp_path):
    from ups_toolkit.models import UPSForSeq2Seq

    model = tiny_model(seed=9, pooled_feature="none").eval()
    folder = tmp_path / "old"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["pooled_feature"]  # as written before issue 14
    (folder / "config.json").write_text(json.dumps(config))
    loaded = UPSForSeq2Seq.from_pretrained(folder).eval()
    assert loaded.config.pooled_feature == "none" and loaded.decoder.pooled_proj is None
    task, (pose, layout) = "action_recognition_3d", pose_for("action_recognition_3d")
    assert torch.equal(loaded.predict(pose, layout, task)["tokens"], model.predict(pose, layout, task)["tokens"])
    assert UPSForSeq2Seq.from_pretrained(folder, pooled_feature="none").config.pooled_feature == "none"


def test_truncated_weights_are_reported(saved, tmp_path):
    from transformers import AutoModel

    folder = copy_checkpoint(saved[1], tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ConfigError, match=r"model\.safetensors: safetensors file truncated"):
        AutoModel.from_pretrained(folder)


def test_edited_vocabulary_is_reported(saved, tmp_path):
    from ups_toolkit.models import UPSForSeq2Seq

    folder = copy_checkpoint(saved[1], tmp_path)
    data = json.loads((folder / "vocab.json").read_text())
    data["prompts"][5] = "something else"
    (folder / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"vocab\.json: key 'sha256': the file was edited or corrupted"):
        UPSForSeq2Seq.from_pretrained(folder)


def test_vocabulary_of_another_model_is_reported(saved, tmp_path):
    from tiny_vocab_project import TASKS, write_project

    from ups_toolkit.models import UPSForSeq2Seq

    folder = copy_checkpoint(saved[1], tmp_path)
    root = write_project(tmp_path / "project")
    build_vocabulary(load_tasks(sorted(TASKS), roots=[root]), roots=[root]).save(folder / "vocab.json")
    with pytest.raises(ConfigError, match=r"vocab\.json: this vocabulary .* is not the one the model's text table "
                                          r"was built for"):
        UPSForSeq2Seq.from_pretrained(folder)


@pytest.mark.parametrize("missing", ["vocab.json", "model.safetensors", "config.json"])
def test_missing_file_is_reported(saved, tmp_path, missing):
    from ups_toolkit.models import UPSForSeq2Seq

    folder = copy_checkpoint(saved[1], tmp_path)
    (folder / missing).unlink()
    with pytest.raises(ConfigError, match=rf"{missing.replace('.', '[.]')}: missing"):
        UPSForSeq2Seq.from_pretrained(folder)


def test_config_of_another_model_type_is_reported(saved, tmp_path):
    from ups_toolkit.models import UPSForSeq2Seq

    folder = copy_checkpoint(saved[1], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config\.json: model_type is 'bert', not a UPS model"):
        UPSForSeq2Seq.from_pretrained(folder)


def test_weights_of_another_shape_are_reported(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    from ups_toolkit.models import UPSForSeq2Seq

    folder = copy_checkpoint(saved[1], tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["decoder.positions"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"model\.safetensors does not fit this model: missing keys "
                                          r"decoder\.positions"):
        UPSForSeq2Seq.from_pretrained(folder)
