"""DSTE encoder (docs/design.md D6): parameter counts, token orders, layer arithmetic, layouts, padding, checkpoints."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ups_toolkit.errors import ConfigError, DataFormatError
from ups_toolkit.models.dste import DSTE, DSTEConfig, DSTLayer
from ups_toolkit.models.usdrl_weights import load_usdrl_weights, map_usdrl_state_dict
from ups_toolkit.skeleton import get_layout, layout_names


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny tensors: a second thread only adds contention

def small_config(**changes):
    base = dict(d_model=32, num_heads=2, num_frames=8, drop_path=0.0)
    return DSTEConfig(**{**base, **changes})


def make(config, seed=0):
    torch.manual_seed(seed)
    return DSTE(config).eval()


def meta_count(config):
    with torch.device("meta"):
        return DSTE(config).num_parameters()


# ---------------------------------------------------------------- parameter counts (D6 table and closed form)

def closed_form(d, in_t=150, in_s=192, t=64, s=50):
    return 54 * d * d + (in_t + in_s + 84 + s) * d + 4 * (t * t + t + s * s + s)


@pytest.mark.parametrize("d, expected", [(1024, 57_137_368), (512, 14_426_328), (256, 3_687_640),
                                         (128, 972_504), (64, 278_488)])
def test_parameter_count_matches_reference(d, expected):
    assert closed_form(d) == expected
    assert meta_count(DSTEConfig(d_model=d, num_heads=1)) == expected


def test_paper_preset_is_parameter_exact_per_module():
    with torch.device("meta"):
        model = DSTE(DSTEConfig.from_preset("paper"))
    count = lambda m: sum(p.numel() for p in m.parameters())
    emb = model.embeddings["ntu25"]
    assert model.num_parameters() == 57_137_368
    assert count(emb.temporal) + count(emb.spatial) == 2_455_552
    assert emb.spatial_pe.numel() == 51_200
    layer = model.temporal_layers[0]
    assert (count(layer), count(model.spatial_layers[0])) == (13_659_264, 13_656_044)
    assert (count(layer.attn), count(layer.ca), count(layer.dsa)) == (4_198_400, 5_251_072, 4_209_792)


def test_every_size_is_a_constructor_argument():
    config = DSTEConfig(d_model=48, num_heads=3, num_frames=20, max_spatial_tokens=40, temporal_layers=3,
                        spatial_layers=1, layouts=("h36m17",))
    model = make(config)
    assert (len(model.temporal_layers), len(model.spatial_layers)) == (3, 1)
    assert model.temporal_layers[0].dsa.token_mix1.weight.shape == (20, 20)
    assert model.spatial_layers[0].dsa.token_mix1.weight.shape == (40, 40)
    out = model(torch.randn(2, 20, 2, 17, 3), "h36m17")
    assert out.temporal.shape == (2, 20, 48) and out.spatial.shape == (2, 40, 48)
    # closed form with 3 + 1 layers: embeddings + per-layer 13d² + 19d + 2L² + 2L
    d, in_t, in_s = 48, 2 * 17 * 3, 20 * 3
    expected = 2 * d * d + (in_t + in_s + 8 + 34) * d + 3 * (13 * d * d + 19 * d + 2 * 400 + 40) \
        + (13 * d * d + 19 * d + 2 * 1600 + 80)
    assert model.num_parameters() == expected


def test_config_rejects_inconsistent_sizes():
    with pytest.raises(ConfigError, match="needs 50 spatial tokens"):
        DSTEConfig(max_spatial_tokens=40)
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        DSTEConfig(d_model=30, num_heads=4)
    assert DSTEConfig(max_spatial_tokens=25, layout_persons={"ntu25": 1}).num_spatial_tokens("ntu25") == 25
    with pytest.raises(ConfigError, match="layout_persons names 'coco17', which is not in layouts"):
        DSTEConfig(layout_persons={"coco17": 1})
    with pytest.raises(ConfigError, match="unknown layout"):
        DSTEConfig(layouts=("ntu26",))
    with pytest.raises(ConfigError, match="unknown DSTE preset"):
        DSTEConfig.from_preset("huge")


# ---------------------------------------------------------------- token orders and layer arithmetic

def test_token_orders_match_the_reference_feeder():
    """Temporal token = (person, joint, channel) of a frame; spatial token = (frame, channel) of a person-joint."""
    config = small_config(d_model=16)
    model = make(config)
    seen = {}
    emb = model.embeddings["ntu25"]
    emb.temporal[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("t", args[0]))
    emb.spatial[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("s", args[0]))
    x = torch.randn(2, 3, 8, 25, 2)  # the reference's (N, C, T, V, M)
    model(x.permute(0, 2, 4, 3, 1), "ntu25")
    # the reference feeder: jt = data.transpose(1, 3, 2, 0), js = data.transpose(3, 2, 1, 0) per sample
    assert torch.equal(seen["t"], x.permute(0, 2, 4, 3, 1).reshape(2, 8, 150))
    assert torch.equal(seen["s"], x.permute(0, 4, 3, 2, 1).reshape(2, 50, 24))


def naive_dst_layer(layer: DSTLayer, x: torch.Tensor, gap: int) -> torch.Tensor:
    """D6 written out branch by branch, with nn.MultiheadAttention and a k=1 Conv1d, as the reference computes it."""
    d = x.shape[-1]
    mha = nn.MultiheadAttention(d, layer.attn.num_heads, batch_first=True)
    mha.in_proj_weight.data.copy_(layer.attn.in_proj_weight)
    mha.in_proj_bias.data.copy_(layer.attn.in_proj_bias)
    mha.out_proj.load_state_dict(layer.attn.out_proj.state_dict())
    mha.eval()
    attn = lambda z: mha(z, z, z)[0]
    dsa, ca = layer.dsa, layer.ca
    f = x.transpose(1, 2)
    h = dsa.token_mix2(torch.relu(dsa.token_mix1(f))) + f
    h[:, :, ::gap] = f[:, :, ::gap]
    h = h.transpose(1, 2)
    p1 = h + attn(dsa.norm1(h))
    p1 = p1 + dsa.mlp(dsa.norm2(p1))
    p2 = x + attn(dsa.norm1(x))
    p2 = p2 + dsa.mlp(dsa.norm2(p2))
    conv = F.conv1d(x.transpose(1, 2), ca.query_proj.weight[..., None], ca.query_proj.bias)
    q = x + torch.relu(conv).transpose(1, 2)
    r = x + attn(ca.norm1(q))
    return layer.alpha * ca.mlp(ca.norm2(r)) + (1 - layer.alpha) * (p1 + p2) / 2


@pytest.mark.parametrize("heads, gap, alpha", [(1, 4, 0.5), (4, 3, 0.25)])
def test_batched_layer_equals_the_branch_by_branch_arithmetic(heads, gap, alpha):
    torch.manual_seed(1)
    config = small_config(num_heads=heads, gap=gap, alpha=alpha)
    layer = DSTLayer(12, config).eval()
    for p in layer.parameters():  # random biases and LayerNorm affine too, so no term hides behind a zero
        nn.init.normal_(p, std=0.2)
    x = torch.randn(3, 12, 32)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), naive_dst_layer(layer, x, gap), atol=1e-5, rtol=1e-5)


def test_positions_added_before_every_layer():
    model = make(small_config(d_model=16))
    inputs = []
    for layer in [*model.temporal_layers, *model.spatial_layers]:
        layer.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    pose = torch.randn(1, 8, 2, 25, 3)
    out = model(pose, "ntu25")
    emb = model.embeddings["ntu25"]
    t0 = emb.temporal(pose.reshape(1, 8, 150))
    torch.testing.assert_close(inputs[0], t0 + model.temporal_pe)
    torch.testing.assert_close(inputs[1], model.temporal_layers[0](inputs[0]) + model.temporal_pe)
    torch.testing.assert_close(inputs[3], model.spatial_layers[0](inputs[2]) + emb.spatial_pe)
    torch.testing.assert_close(out.pooled, torch.cat([out.temporal.amax(1), out.spatial.amax(1)], -1))
    # sinusoid: sin on even channels, cos on odd, base 10000
    t, i = 5, 3
    assert model.temporal_pe[t, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(t / 10000 ** (2 * i / 16))).item(), abs=1e-6)
    assert model.temporal_pe[t, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(t / 10000 ** (2 * i / 16))).item(), abs=1e-6)


def test_reset_buffers_restores_positions_and_anchors():
    model = make(small_config(gap=3))
    pose = torch.randn(1, 8, 2, 25, 3)
    expected = model(pose, "ntu25").pooled
    with torch.no_grad():
        model.temporal_pe.zero_()
        for layer in [*model.temporal_layers, *model.spatial_layers]:
            layer.dsa.mixed_rows.fill_(7.0)
    model.reset_buffers()
    assert model.spatial_layers[0].dsa.mixed_rows[:7].tolist() == [0, 1, 1, 0, 1, 1, 0]
    assert torch.equal(model(pose, "ntu25").pooled, expected)


def test_drop_path_only_in_training():
    model = make(small_config(drop_path=0.5))
    pose = torch.randn(4, 8, 2, 25, 3)
    with torch.no_grad():
        assert torch.equal(model(pose, "ntu25").pooled, model(pose, "ntu25").pooled)
        model.train()
        torch.manual_seed(0)
        a = model(pose, "ntu25").pooled
        torch.manual_seed(1)
        assert not torch.allclose(a, model(pose, "ntu25").pooled)


# ---------------------------------------------------------------- layouts, padding

def test_shapes_for_every_registered_layout():
    names = layout_names()
    # two persons where 2·V fits in 50 slots (NTU-25 fills them all), one person for large mocap skeletons
    single = {name: 1 for name in names if 2 * get_layout(name).num_joints > 50}
    model = make(small_config(layouts=tuple(names), layout_persons=single))
    for name in names:
        v, slots = get_layout(name).num_joints, single.get(name, 2)
        for persons in range(1, slots + 1):
            for channels in (2, 3):
                out = model(torch.randn(3, 8, persons, v, channels), name)
                assert out.temporal.shape == (3, 8, 32)
                assert out.spatial.shape == (3, 50, 32)
                assert out.pooled.shape == (3, 64)
                assert out.spatial_padding_mask.shape == (3, 50)
                assert out.spatial_padding_mask.sum(1).tolist() == [50 - slots * v] * 3, name
                assert torch.all(out.spatial[out.spatial_padding_mask] == 0)
                assert torch.isfinite(out.pooled).all()
                assert out.routes.tolist() == [0, 0, 0, 0]


def test_mixed_layouts_in_consecutive_calls():
    model = make(small_config(layouts=("ntu25", "coco17", "h36m17")))
    ntu = torch.randn(2, 8, 2, 25, 3)
    first = model(ntu, "ntu25").pooled
    model(torch.randn(2, 8, 1, 17, 2), "coco17")
    model(torch.randn(2, 8, 1, 17, 3), "h36m17")
    assert torch.equal(model(ntu, "ntu25").pooled, first)
    # the layouts really have their own embeddings
    assert model.embeddings["coco17"].temporal[0].in_features == 2 * 17 * 3
    assert model.embeddings["coco17"].spatial_pe.shape == (1, 34, 32)


def test_missing_person_and_channel_are_zeros():
    model = make(small_config(layouts=("coco17",)))
    pose = torch.randn(2, 8, 1, 17, 2)
    padded = F.pad(pose, (0, 1, 0, 0, 0, 1))  # (x, y) → (x, y, 0), second person 0
    assert torch.equal(model(pose, "coco17").pooled, model(padded, "coco17").pooled)


def test_padding_does_not_change_real_tokens():
    """COCO-17 × 2 persons = 34 tokens, padded to 34 (none) or to 50 slots: the real tokens come out the same."""
    exact = make(small_config(layouts=("coco17",), max_spatial_tokens=34), seed=0)
    padded = make(small_config(layouts=("coco17",), max_spatial_tokens=50), seed=1)
    source = exact.state_dict()
    target = padded.state_dict()
    for key, value in source.items():
        if value.shape == target[key].shape:
            target[key] = value.clone()
        else:  # spatial token mixing (34, 34) / (34,): top-left block, the rest stays random
            target[key][tuple(slice(0, n) for n in value.shape)] = value
    padded.load_state_dict(target)
    pose = torch.randn(3, 8, 2, 17, 3)
    a, b = exact(pose, "coco17"), padded(pose, "coco17")
    torch.testing.assert_close(b.temporal, a.temporal, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b.spatial[:, :34], a.spatial, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.pooled, a.pooled, atol=1e-5, rtol=1e-5)
    assert torch.all(b.spatial[:, 34:] == 0) and b.spatial_padding_mask[:, 34:].all()
    assert not a.spatial_padding_mask.any()


def test_input_errors_name_the_problem():
    model = make(small_config(layouts=("ntu25",)))
    with pytest.raises(ValueError, match="9 frames, the encoder takes exactly 8"):
        model(torch.randn(1, 9, 2, 25, 3), "ntu25")
    with pytest.raises(ValueError, match="17 joints but layout 'ntu25' has 25"):
        model(torch.randn(1, 8, 2, 17, 3), "ntu25")
    with pytest.raises(ValueError, match="3 persons"):
        model(torch.randn(1, 8, 3, 25, 3), "ntu25")
    with pytest.raises(ConfigError, match="no layout 'coco17'"):
        model(torch.randn(1, 8, 1, 17, 3), "coco17")


def test_gradients_reach_every_parameter():
    model = make(small_config(layouts=("ntu25",)))
    model.train()
    model(torch.randn(2, 8, 2, 25, 3), "ntu25").pooled.square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


# ---------------------------------------------------------------- save / load

def test_safetensors_round_trip_gives_identical_outputs(tmp_path):
    from safetensors.torch import load_file, save_file

    config = small_config(layouts=("ntu25", "coco17"))
    model = make(config, seed=0)
    save_file(model.state_dict(), tmp_path / "encoder.safetensors")
    other = make(config, seed=1)
    other.load_state_dict(load_file(tmp_path / "encoder.safetensors"))
    pose = torch.randn(2, 8, 1, 17, 3)
    assert torch.equal(other(pose, "coco17").spatial, model(pose, "coco17").spatial)


# ---------------------------------------------------------------- USDRL reference state dicts

def documented_reference_shapes(d, in_t=150, in_s=192, t=64, s=50):
    """The keys of the reference DSTE as docs/design.md D6 lists them, with their shapes (not derived from our code)."""
    shapes = {"spe": (1, s, d), "tpe.pe": (1, 200, d)}
    for stream, width in (("t", in_t), ("s", in_s)):
        shapes.update({f"ske_emb.{stream}_embedding.0.weight": (d, width), f"ske_emb.{stream}_embedding.0.bias": (d,),
                       f"ske_emb.{stream}_embedding.1.weight": (d,), f"ske_emb.{stream}_embedding.1.bias": (d,),
                       f"ske_emb.{stream}_embedding.3.weight": (d, d), f"ske_emb.{stream}_embedding.3.bias": (d,)})
    for layer, length in (("t_tr", t), ("t_tr1", t), ("s_tr", s), ("s_tr1", s)):
        for branch in ("CA", "DSA"):
            shapes.update({f"{layer}.{branch}.attn.in_proj_weight": (3 * d, d),
                           f"{layer}.{branch}.attn.in_proj_bias": (3 * d,),
                           f"{layer}.{branch}.attn.out_proj.weight": (d, d),
                           f"{layer}.{branch}.attn.out_proj.bias": (d,)})
            for norm in ("norm1", "norm2"):
                shapes.update({f"{layer}.{branch}.{norm}.weight": (d,), f"{layer}.{branch}.{norm}.bias": (d,)})
            shapes.update({f"{layer}.{branch}.mlp.fc1.weight": (2 * d, d), f"{layer}.{branch}.mlp.fc1.bias": (2 * d,),
                           f"{layer}.{branch}.mlp.fc2.weight": (d, 2 * d), f"{layer}.{branch}.mlp.fc2.bias": (d,)})
        shapes.update({f"{layer}.CA.conv1.weight": (d, d, 1), f"{layer}.CA.conv1.bias": (d,)})
        for mix in ("wt1", "wt2"):
            shapes.update({f"{layer}.DSA.{mix}.weight": (length, length), f"{layer}.DSA.{mix}.bias": (length,)})
    return shapes


def fake_reference_state_dict(d, seed=0, prefix="module.backbone."):
    """Random tensors under the documented keys; CA and DSA attention share values, as one module does."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in documented_reference_shapes(d).items():
        twin = key.replace(".DSA.attn.", ".CA.attn.")
        state[key] = state[twin] if twin in state else torch.randn(shape, generator=g)
    return {prefix + k: v for k, v in state.items()}


def test_documented_reference_keys_count_the_paper_backbone():
    shapes = documented_reference_shapes(1024)
    unique = {k: v for k, v in shapes.items() if ".DSA.attn." not in k and k != "tpe.pe"}
    assert sum(torch.Size(v).numel() for v in unique.values()) == 57_137_368


def test_reference_state_dict_maps_onto_every_encoder_key():
    model = make(DSTEConfig(d_model=32, num_heads=1, drop_path=0.0))
    state = fake_reference_state_dict(32)
    state.update({"module.fc.weight": torch.zeros(60, 64), "module.fc.bias": torch.zeros(60)})
    report = load_usdrl_weights(model, state)
    assert report.head_keys == ["fc.bias", "fc.weight"]
    assert report.kept_initialised == []
    assert sorted(report.loaded) == sorted(model.state_dict())
    ours = model.state_dict()
    ref = {k[len("module.backbone."):]: v for k, v in state.items() if k.startswith("module.backbone.")}
    assert torch.equal(ours["temporal_layers.1.ca.query_proj.weight"], ref["t_tr1.CA.conv1.weight"][..., 0])
    assert torch.equal(ours["spatial_layers.0.attn.in_proj_weight"], ref["s_tr.DSA.attn.in_proj_weight"])
    assert torch.equal(ours["spatial_layers.1.dsa.token_mix2.bias"], ref["s_tr1.DSA.wt2.bias"])
    assert torch.equal(ours["embeddings.ntu25.spatial.3.weight"], ref["ske_emb.s_embedding.3.weight"])
    assert torch.equal(ours["embeddings.ntu25.spatial_pe"], ref["spe"])


def test_reference_checkpoint_file_and_its_errors(tmp_path):
    model = make(DSTEConfig(d_model=32, num_heads=1, drop_path=0.0, layouts=("ntu25", "coco17")))
    path = tmp_path / "pretrain.pth.tar"
    state = fake_reference_state_dict(32)
    state["module.t_proj.0.weight"] = torch.zeros(4, 4)  # pretraining projector, not the encoder
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    report = load_usdrl_weights(model, path)
    assert report.head_keys == ["t_proj.0.weight"]
    assert report.kept_initialised and all(k.startswith("embeddings.coco17.") for k in report.kept_initialised)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataFormatError, match="corrupt.pth: cannot read checkpoint"):
        load_usdrl_weights(model, corrupt)
    with pytest.raises(DataFormatError, match="missing.pth: checkpoint file not found"):
        load_usdrl_weights(model, tmp_path / "missing.pth")

    wide = tmp_path / "wide.pth"
    torch.save({"state_dict": fake_reference_state_dict(48)}, wide)
    with pytest.raises(DataFormatError, match=r"wide.pth: checkpoint does not fit this DSTE: .*shape mismatches"):
        load_usdrl_weights(model, wide)

    broken = fake_reference_state_dict(32)
    broken["module.backbone.t_tr.DSA.attn.in_proj_bias"] = torch.ones(96)
    with pytest.raises(DataFormatError, match="differ; the reference shares one attention module"):
        map_usdrl_state_dict(broken)
    broken = fake_reference_state_dict(32)
    broken["module.backbone.t_tr.DSA.gamma"] = torch.ones(1)
    with pytest.raises(DataFormatError, match="unexpected key 't_tr.DSA.gamma'"):
        map_usdrl_state_dict(broken)
    broken = fake_reference_state_dict(32)
    del broken["module.backbone.s_tr1.CA.norm2.bias"]
    with pytest.raises(DataFormatError, match=r"missing 1 keys \(first: spatial_layers.1.ca.norm2.bias\)"):
        load_usdrl_weights(model, broken)


def _reference_module():
    location = os.environ.get("USDRL_REF")
    if not location:
        pytest.skip("USDRL_REF (a local copy of wengwanjiang/USDRL) not set")
    path = Path(location)
    path = path if path.suffix == ".py" else path / "model" / "DSTE.py"
    spec = importlib.util.spec_from_file_location("usdrl_reference_dste", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_classes_when_available():
    reference = _reference_module()
    torch.manual_seed(0)
    ref = reference.DSTE(150, 192, 32, 2, 2, 0.5, 4).eval()
    assert set(ref.state_dict()) == set(documented_reference_shapes(32))
    model = make(DSTEConfig(d_model=32, num_heads=2))
    load_usdrl_weights(model, {"module." + k: v for k, v in ref.state_dict().items()})
    x = torch.randn(2, 3, 64, 25, 2)
    with torch.no_grad():
        y_t, y_s = ref(x.permute(0, 2, 4, 3, 1).reshape(2, 64, 150), x.permute(0, 4, 3, 2, 1).reshape(2, 50, 192))
        out = model(x.permute(0, 2, 4, 3, 1), "ntu25")
    torch.testing.assert_close(out.temporal, y_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.spatial, y_s, atol=1e-5, rtol=0)
