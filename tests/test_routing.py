"""Dynamic routing (docs/design.md D7): straight-through Gumbel gates, annealing, per-task routes, H = 1 ≡ DSTE."""

import json

import pytest
import torch

from ups_toolkit.models.dste import DSTE, DSTEConfig, DSTLayer
from ups_toolkit.models.routing import (
    RoutedLayer,
    TaskRouter,
    expand_to_blocks,
    gumbel_temperature,
    straight_through_gumbel,
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny tensors: a second thread only adds contention

def config(**changes):
    base = dict(d_model=32, num_heads=2, num_frames=8, drop_path=0.0, task_dim=16)
    return DSTEConfig(**{**base, **changes})


def make(cfg, seed=0):
    torch.manual_seed(seed)
    return DSTE(cfg).eval()


POSE = torch.randn(2, 8, 2, 25, 3, generator=torch.Generator().manual_seed(7))


def test_expand_to_blocks_renames_only_layer_keys():
    state = {"temporal_layers.0.attn.in_proj_bias": torch.ones(3), "embeddings.ntu25.spatial_pe": torch.zeros(2)}
    expanded = expand_to_blocks(state, ["temporal_layers.0"], 2)
    assert sorted(expanded) == ["embeddings.ntu25.spatial_pe", "temporal_layers.0.blocks.0.attn.in_proj_bias",
                                "temporal_layers.0.blocks.1.attn.in_proj_bias"]


def test_temperature_anneals_exponentially_then_stays():
    assert gumbel_temperature(0, 1000) == pytest.approx(1.0)
    assert gumbel_temperature(500, 1000) == pytest.approx(0.1 ** 0.5)
    assert gumbel_temperature(1000, 1000) == pytest.approx(0.1)
    assert gumbel_temperature(5000, 1000) == pytest.approx(0.1)
    assert gumbel_temperature(250, 1000, start=2.0, end=0.5) == pytest.approx(2.0 * 0.25 ** 0.25)
    with pytest.raises(ValueError, match="positive"):
        gumbel_temperature(0, 10, end=0.0)


def test_straight_through_gates_are_one_hot_with_softmax_gradient():
    torch.manual_seed(0)
    scores = torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.0, -1.0]], requires_grad=True)
    gates = straight_through_gumbel(scores, temperature=0.5)
    assert set(gates.detach().flatten().tolist()) == {0.0, 1.0}
    assert gates.detach().sum(-1).tolist() == [1.0, 1.0]
    weights = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    (gates * weights).sum().backward()
    # gradient of a softmax: every score gets some, and each row's gradients sum to 0
    assert torch.all(scores.grad != 0)
    torch.testing.assert_close(scores.grad.sum(-1), torch.zeros(2), atol=1e-6, rtol=0)


def test_gumbel_samples_follow_the_softmax():
    torch.manual_seed(0)
    scores = torch.log(torch.tensor([0.7, 0.2, 0.1])).expand(4000, 3)
    picks = straight_through_gumbel(scores, temperature=1.0).argmax(-1)
    frequency = torch.bincount(picks, minlength=3).float() / 4000
    torch.testing.assert_close(frequency, torch.tensor([0.7, 0.2, 0.1]), atol=0.03, rtol=0)


def routed(seed=0, blocks=3, tasks=4):
    return make(config(num_blocks=blocks, num_tasks=tasks), seed)


def test_inference_route_is_deterministic_and_runs_one_block():
    model = routed()
    calls = []
    for layer in [*model.temporal_layers, *model.spatial_layers]:
        for h, block in enumerate(layer.blocks):
            block.register_forward_hook(lambda m, i, o, h=h: calls.append(h))
    first = model(POSE, "ntu25", task_id=2)
    assert len(calls) == 4  # one block per layer
    assert calls == first.routes.tolist()
    for _ in range(3):
        again = model(POSE, "ntu25", task_id=2)
        assert torch.equal(again.routes, first.routes) and torch.equal(again.pooled, first.pooled)
    assert first.routes.tolist() == model.router.scores(2).argmax(-1).tolist()
    calls.clear()
    model.train()
    model(POSE, "ntu25", task_id=2)
    assert len(calls) == 4 * 3  # training runs every block


def steer(model, task_routes):
    """Block embeddings = basis vectors; task m's embedding points at the blocks of its wanted route."""
    router = model.router
    layers, blocks, dim = router.block_embeddings.shape
    with torch.no_grad():
        router.block_embeddings.zero_()
        for layer in range(layers):
            for h in range(blocks):
                router.block_embeddings[layer, h, layer * blocks + h] = 1.0
        router.task_embeddings.zero_()
        for task, route in task_routes.items():
            for layer, h in enumerate(route):
                router.task_embeddings[task, layer * blocks + h] = 1.0


def test_route_and_output_change_with_the_task_embedding():
    model = routed()
    steer(model, {0: [0, 0, 0, 0], 1: [2, 1, 0, 2]})
    a, b = model(POSE, "ntu25", task_id=0), model(POSE, "ntu25", task_id=1)
    assert a.routes.tolist() == [0, 0, 0, 0] and b.routes.tolist() == [2, 1, 0, 2]
    assert not torch.allclose(a.pooled, b.pooled)
    with torch.no_grad():  # move task 0 towards block 1 of the first temporal layer
        model.router.task_embeddings[0, 1] = 5.0
    assert model(POSE, "ntu25", task_id=0).routes.tolist() == [1, 0, 0, 0]
    routes = model.routes(["recognition", "retrieval", "detection", "prediction"])
    assert routes["retrieval"]["temporal"][0]["block"] == 2
    assert [layer["block"] for layer in routes["retrieval"]["spatial"]] == [0, 2]
    assert json.loads(json.dumps(routes)) == routes
    for stream in routes["recognition"].values():
        for layer in stream:
            assert sum(layer["probabilities"]) == pytest.approx(1.0) and len(layer["probabilities"]) == 3


def test_gradients_reach_block_and_task_embeddings():
    model = routed()
    model.train()
    assert model.anneal_routing(500, 1000) == pytest.approx(0.1 ** 0.5) == model.router.temperature
    assert make(config()).anneal_routing(500, 1000) is None
    model(POSE, "ntu25", task_id=1).pooled.square().sum().backward()
    block_grad = model.router.block_embeddings.grad
    task_grad = model.router.task_embeddings.grad
    assert block_grad is not None and task_grad is not None
    assert torch.all(block_grad.abs().sum(-1) > 0)  # every (layer, block) score got a gradient
    assert task_grad[1].abs().sum() > 0
    assert torch.all(task_grad[[0, 2, 3]] == 0)  # other tasks were not in the batch
    # every block's weights too: their outputs enter the gated sum
    for layer in [*model.temporal_layers, *model.spatial_layers]:
        for block in layer.blocks:
            assert block.ca.mlp.fc2.weight.grad is not None


def test_frozen_route_in_training_matches_inference():
    model = routed()
    expected = model(POSE, "ntu25", task_id=3)
    model.train()
    model.router.frozen = True  # drop_path is 0, so training arithmetic equals inference here
    out = model(POSE, "ntu25", task_id=3)
    assert torch.equal(out.routes, expected.routes)
    torch.testing.assert_close(out.pooled, expected.pooled, atol=0, rtol=0)


def test_one_block_is_no_routing():
    torch.manual_seed(0)
    layer = DSTLayer(8, config()).train()
    x = torch.randn(2, 8, 32)
    gates = straight_through_gumbel(torch.zeros(1, requires_grad=True), temperature=0.3)
    assert torch.equal(RoutedLayer([layer])(x, None, block=0, gates=gates), layer(x))
    # an encoder with H = 1 has no router and exactly the plain parameters
    plain = make(config(num_blocks=1, num_tasks=5))
    assert plain.router is None
    assert plain.num_parameters() == make(config()).num_parameters()
    assert torch.equal(plain(POSE, "ntu25", task_id=4).pooled, plain(POSE, "ntu25").pooled)
    assert plain.routes(["a"])["a"]["spatial"] == [{"block": 0, "probabilities": [1.0]}] * 2


@pytest.mark.parametrize("training", [False, True])
def test_pretrained_weights_copied_into_every_block_reproduce_the_plain_encoder(training):
    plain = make(config())
    model = routed(seed=1)
    router_before = model.router.block_embeddings.detach().clone()
    model.load_unrouted_state_dict(plain.state_dict())
    assert torch.equal(model.router.block_embeddings, router_before)
    model.train(training)
    expected = plain(POSE, "ntu25").pooled
    for task in range(4):
        torch.testing.assert_close(model(POSE, "ntu25", task_id=task).pooled, expected, atol=1e-6, rtol=1e-6)
    # the copies are independent tensors
    a = model.temporal_layers[0].blocks[0].attn.in_proj_weight
    assert a.data_ptr() != model.temporal_layers[0].blocks[1].attn.in_proj_weight.data_ptr()


def test_routed_parameter_count_and_safetensors_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    with torch.device("meta"):
        paper_routed = DSTE(DSTEConfig.from_preset("paper", num_blocks=2, num_tasks=6))
    layers = 2 * 13_659_264 + 2 * 13_656_044
    assert paper_routed.num_parameters() == 57_137_368 + layers + 4 * 2 * 256 + 6 * 256

    model = routed()
    save_file(model.state_dict(), tmp_path / "routed.safetensors")
    other = routed(seed=5)
    other.load_state_dict(load_file(tmp_path / "routed.safetensors"))
    assert torch.equal(other(POSE, "ntu25", task_id=1).pooled, model(POSE, "ntu25", task_id=1).pooled)


def test_task_id_errors():
    model = routed()
    with pytest.raises(ValueError, match="routes between 3 blocks: pass task_id"):
        model(POSE, "ntu25")
    with pytest.raises(ValueError, match="task_id 4 is outside 0..3"):
        model(POSE, "ntu25", task_id=4)
    with pytest.raises(ValueError, match="2 task names for 4 tasks"):
        model.routes(["a", "b"])
    with pytest.raises(ValueError, match="at least one block"):
        TaskRouter([("temporal", 0)], num_blocks=0, num_tasks=1)
