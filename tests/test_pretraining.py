"""USDRL pretraining (docs/design.md D10, §12.6): views, the pretraining model, encoder export, multi-process gathering
and the frozen-encoder evaluations."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from ups_toolkit.data.synthetic import generate_samples
from ups_toolkit.errors import ConfigError, DataFormatError
from ups_toolkit.models.dste import DSTE, DSTEConfig
from ups_toolkit.pretraining import (
    MGFDLoss,
    PretrainingViewDataset,
    USDRLPretrainingModel,
    ViewGenerator,
    collate_views,
    extract_features,
    knn1_accuracy,
    linear_probe,
    load_encoder,
    load_encoder_weights,
    save_encoder,
    semi_supervised_subset,
    usdrl_view_transforms,
)
from ups_toolkit.skeleton import get_layout
from ups_toolkit.skeleton.transforms import Resize, bone_features, build_transforms

T = 16  # frames of the tiny encoders


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny tensors: a second thread only adds contention


@pytest.fixture(scope="module")
def samples():
    return list(generate_samples("ntu25_3d", 2, 0))  # 10 classes × 2, T in [40, 120]


def tiny_encoder(seed=0, **changes):
    torch.manual_seed(seed)
    return DSTE(DSTEConfig(**{**dict(d_model=32, num_heads=2, num_frames=T, drop_path=0.0), **changes}))


def batch_of(generator, samples, epoch=0):
    return collate_views([generator(s, epoch, i) for i, s in enumerate(samples)])


# ---------------------------------------------------------------- views


def test_usdrl_views_are_a_config_of_registered_transforms():
    config = usdrl_view_transforms(num_frames=64)
    assert json.loads(json.dumps(config)) == config  # plain data: an experiment YAML can hold it
    pipeline = build_transforms(config)
    crop, choice = pipeline.transforms
    assert (type(crop).__name__, crop.size, crop.min_ratio, crop.max_ratio) == ("CropResize", 64, 0.1, 1.0)
    corruption, shear = choice.transforms
    assert choice.weights == [0.5, 0.5] and corruption.weights == [0.5, 0.5]
    assert [type(t).__name__ for t in corruption.transforms] == ["JointMask", "JointLinearMap"]
    assert [t.ratio for t in corruption.transforms] == [0.6, 0.6]
    assert (type(shear).__name__, shear.magnitude) == ("Shear", 1.0)


def test_views_are_deterministic_per_seed_epoch_and_index_and_differ_across_views(samples):
    generator = ViewGenerator(num_frames=T, seed=0)
    views = generator(samples[3], epoch=2, index=3)
    assert len(views) == 4 and all(set(v) == {"joint"} for v in views)
    assert all(v["joint"].shape == (T, 2, 25, 3) and v["joint"].dtype == np.float32 for v in views)
    again = ViewGenerator(num_frames=T, seed=0)(samples[3], epoch=2, index=3)
    assert all(np.array_equal(a["joint"], b["joint"]) for a, b in zip(views, again))
    for other in (ViewGenerator(num_frames=T, seed=1)(samples[3], 2, 3), generator(samples[3], 3, 3),
                  generator(samples[3], 2, 4)):
        assert all(not np.array_equal(a["joint"], b["joint"]) for a, b in zip(views, other))
    for k in range(4):
        for l in range(k + 1, 4):
            assert not np.array_equal(views[k]["joint"], views[l]["joint"])


def test_view_recipe_is_a_quarter_mask_a_quarter_linear_map_half_shear(samples):
    # a 64-frame clip at T = 64: every crop is the whole clip and the resize is exact, so only step 2 changes it
    sample = Resize(64)(samples[0])
    person = sample["keypoint"][:, 0]  # (T, V, C), every joint present
    assert np.all(np.any(person != 0, axis=(0, 2)))
    generator = ViewGenerator(num_frames=64, seed=0)
    counts = {"mask": 0, "linear": 0, "shear": 0}
    draws = 400
    for index in range(draws // 4):
        for view in generator(sample, 0, index):
            joints = view["joint"][:, 0]
            zero = np.all(joints == 0, axis=(0, 2))
            same = np.all(joints == person, axis=(0, 2))
            if zero.sum() == 15 and same.sum() == 10:
                counts["mask"] += 1
            elif same.sum() == 10:
                counts["linear"] += 1
            elif same.sum() == 0 and zero.sum() == 0:
                counts["shear"] += 1
    assert sum(counts.values()) == draws
    for name, p in (("mask", 0.25), ("linear", 0.25), ("shear", 0.5)):
        assert abs(counts[name] / draws - p) < 0.075, counts  # > 3 binomial standard deviations


def test_multimodal_views_carry_joint_bone_motion_and_all_three_on_the_fourth(samples):
    generator = ViewGenerator(num_frames=T, modalities=["joint", "bone", "motion"], seed=0)
    assert generator.plan == [("joint",), ("bone",), ("motion",), ("joint", "bone", "motion")]
    views = generator(samples[5], 0, 5)
    assert [tuple(v) for v in views] == generator.plan
    fused = views[3]
    # the three modalities of view 4 come from the same augmented joints
    assert np.allclose(fused["bone"], bone_features(fused["joint"], get_layout("ntu25")), atol=1e-6)
    assert np.allclose(fused["motion"][:-1], fused["joint"][1:] - fused["joint"][:-1], atol=1e-6)
    assert np.all(fused["motion"][-1] == 0)
    # view 2 is the bone of its own augmented joints, not of view 4's
    assert not np.allclose(views[1]["bone"], fused["bone"])
    assert ViewGenerator(num_frames=T, modalities=["joint", "motion"]).plan[:3] == [("joint",), ("motion",),
                                                                                   ("joint",)]
    with pytest.raises(ConfigError, match="modalities"):
        ViewGenerator(modalities=["joint", "depth"])
    with pytest.raises(ConfigError, match="produced 64 frames but num_frames is 16"):
        ViewGenerator(num_frames=T, transforms=usdrl_view_transforms(64))(samples[0], 0, 0)


def test_view_dataset_and_collate(samples):
    dataset = PretrainingViewDataset(samples[:6], ViewGenerator(num_frames=T, modalities=["joint", "bone"]))
    dataset.set_epoch(4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=PretrainingViewDataset.collate)
    batch = next(iter(loader))
    assert batch["index"].tolist() == [0, 1, 2]
    assert [tuple(v) for v in batch["views"]] == [("joint",), ("bone",), ("joint",), ("joint", "bone")]
    assert batch["views"][1]["bone"].shape == (3, T, 2, 25, 3)
    direct = dataset.generator(samples[1], 4, 1)
    assert np.array_equal(batch["views"][3]["bone"][1].numpy(), direct[3]["bone"])
    # persons are zero-padded to the most in the batch
    one_person = {**samples[0], "keypoint": samples[0]["keypoint"][:, :1]}
    mixed = collate_views([dataset.generator(one_person, 0, 0), dataset.generator(samples[1], 0, 1)])
    assert mixed[0]["joint"].shape == (2, T, 2, 25, 3) and torch.all(mixed[0]["joint"][0, :, 1] == 0)


# ---------------------------------------------------------------- model


def test_paper_model_parameter_counts():
    with torch.device("meta"):
        model = USDRLPretrainingModel(DSTE(DSTEConfig.from_preset("paper")))
    count = lambda module: sum(p.numel() for p in module.parameters())
    assert [count(model.projectors[g]) for g in "tsi"] == [10_500_096, 10_500_096, 16_793_600]
    assert model.num_parameters() == 94_931_160  # docs/design.md D6 table: the USDRL pretraining model


def test_projector_layout_and_init():
    encoder = tiny_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model = USDRLPretrainingModel(encoder, projector_hidden=48, projector_out=40, instance_out=80)
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in before.items())  # encoder left as given
    p_t, p_i = model.projectors["t"], model.projectors["i"]
    assert [type(m).__name__ for m in p_t] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU",
                                               "Linear"]
    assert (p_t[0].in_features, p_t[0].out_features, p_t[6].out_features) == (32, 48, 40)
    assert (p_i[0].in_features, p_i[6].out_features) == (64, 80)
    weights = torch.cat([m.weight.flatten() for g in "tsi" for m in model.projectors[g] if isinstance(m,
                                                                                                     torch.nn.Linear)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(torch.all(m.bias == 0) for g in "tsi" for m in model.projectors[g] if hasattr(m, "bias"))
    default = USDRLPretrainingModel(tiny_encoder())
    assert [default.projectors[g][6].out_features for g in "tsi"] == [64, 64, 128]  # 2d, 2d, 4d


def test_forward_runs_the_encoder_once_over_all_views_and_names_its_outputs(samples):
    model = USDRLPretrainingModel(tiny_encoder())
    views = batch_of(ViewGenerator(num_frames=T), samples[:6])
    calls = []
    model.encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    out = model(views, layout="ntu25")
    assert calls == [24]  # one pass over 4 × 6 sequences
    assert out.loss.dtype == torch.float32 and out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.pooled.shape == (4, 6, 64)
    assert {g: [tuple(z.shape) for z in zs] for g, zs in out.projections.items()} == {
        "t": [(6, 64)] * 4, "s": [(6, 64)] * 4, "i": [(6, 128)] * 4}
    assert out.loss.item() == pytest.approx(MGFDLoss()(out.projections).loss.item(), rel=1e-6)
    assert set(out.log_dict()) == {"loss", "sim", "vac", "xc"} | {f"{n}_{g}" for n in ("sim", "vac", "xc")
                                                                   for g in "tsi"}
    # plain tensors are accepted for one-modality runs
    tensors = [v["joint"] for v in views]
    assert model(tensors).loss.item() == pytest.approx(out.loss.item(), rel=1e-6)
    tpami = USDRLPretrainingModel(tiny_encoder(), loss=MGFDLoss(xc_weight=0.0))(views)
    assert tpami.mgfd.xc is None
    assert tpami.loss.item() == pytest.approx(5 * tpami.mgfd.sim.item() + tpami.mgfd.vac.item(), rel=1e-6)


def test_bad_batches_are_clear_errors(samples):
    model = USDRLPretrainingModel(tiny_encoder())
    one = batch_of(ViewGenerator(num_frames=T), samples[:1])
    with pytest.raises(ValueError, match=r"at least 2 samples per batch .*B = 1.*drop_last"):
        model(one)
    # the same sample four times with identical views: every projection row is equal
    same = [v["joint"].expand(4, -1, -1, -1, -1) for v in one]
    with pytest.raises(ValueError, match="identical"):
        model(same)
    with pytest.raises(ValueError, match="carry modalities"):
        USDRLPretrainingModel(tiny_encoder(), modalities=["joint", "bone"])(batch_of(ViewGenerator(num_frames=T),
                                                                                     samples[:2]))
    with pytest.raises(ConfigError, match="unrouted"):
        USDRLPretrainingModel(tiny_encoder(num_blocks=2, num_tasks=2))


def test_loss_is_finite_and_decreases_on_synthetic_data(samples):
    model = USDRLPretrainingModel(tiny_encoder())
    generator = ViewGenerator(num_frames=T, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    losses = []
    for step in range(30):
        out = model(batch_of(generator, samples, epoch=step))  # fresh views every step
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.95 * first, losses  # measured: 37.0 -> 33.3


def test_multimodal_model(samples):
    encoder = tiny_encoder(layouts=("ntu25", "coco17"))
    model = USDRLPretrainingModel(encoder, modalities=["joint", "bone", "motion"])
    # the DST stack on embedded tokens is the DSTE forward, with and without padded spatial tokens (coco17: 34 of 50)
    model.eval()
    for layout, pose in (("ntu25", torch.randn(3, T, 2, 25, 3)), ("coco17", torch.randn(3, T, 2, 17, 3))):
        expected = encoder(pose, layout)
        got = model.encode_embedded(*model.embed(pose, "joint", layout), layout)
        for name in ("temporal", "spatial", "pooled", "spatial_padding_mask"):
            assert torch.allclose(getattr(got, name), getattr(expected, name), atol=1e-6), name
    model.train()
    views = batch_of(ViewGenerator(num_frames=T, modalities=["joint", "bone", "motion"]), samples[:6])
    out = model(views)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name in ("modality_embeddings.bone.ntu25.temporal.0.weight", "modality_embeddings.motion.ntu25.spatial.3.weight",
                 "fusion.temporal.weight", "fusion.spatial.weight", "encoder.embeddings.ntu25.temporal.0.weight",
                 "encoder.spatial_layers.1.attn.in_proj_weight", "projectors.i.6.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.fusion["temporal"].bias is None


def test_encoder_export_loads_into_a_fresh_dste_with_identical_outputs(tmp_path, samples):
    model = USDRLPretrainingModel(tiny_encoder(seed=0, layouts=("ntu25", "coco17")))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(batch_of(ViewGenerator(num_frames=T), samples[:4])).loss.backward()
    optimizer.step()  # weights that differ from any fresh initialisation
    path = save_encoder(model, tmp_path / "run" / "encoder.safetensors")
    assert not (tmp_path / "run" / "encoder.safetensors.tmp").exists()

    pose = torch.randn(3, T, 2, 25, 3)
    expected = model.encoder.eval()(pose, "ntu25")
    fresh = load_encoder(path).eval()
    assert fresh.config == model.encoder.config
    assert torch.equal(fresh(pose, "ntu25").pooled, expected.pooled)
    other = tiny_encoder(seed=5, layouts=("ntu25", "coco17")).eval()
    report = load_encoder_weights(other, path)
    assert (report.kept_initialised, report.skipped) == ([], []) and len(report.loaded) == len(other.state_dict())
    assert torch.equal(other(pose, "ntu25").temporal, expected.temporal)

    # a routed encoder gets the weights in every block; its other layouts and the router keep their
    # initialisation, the file's layouts it lacks are skipped
    routed = tiny_encoder(seed=6, layouts=("ntu25", "h36m17"), num_blocks=2, num_tasks=2).eval()
    report = load_encoder_weights(routed, path)
    assert report.kept_initialised and all(k.startswith(("router.", "embeddings.h36m17."))
                                           for k in report.kept_initialised)
    assert report.skipped and all(k.startswith("embeddings.coco17.") for k in report.skipped)
    assert "temporal_layers.1.blocks.1.attn.in_proj_weight" in report.loaded
    assert torch.allclose(routed(pose, "ntu25", task_id=1).pooled, expected.pooled, atol=1e-6)

    with pytest.raises(DataFormatError, match=r"encoder\.safetensors.*shape mismatches"):
        load_encoder_weights(tiny_encoder(d_model=16, layouts=("ntu25", "coco17")), path)
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(DataFormatError, match=r"other\.safetensors: not an encoder export"):
        load_encoder(tmp_path / "other.safetensors")


# ---------------------------------------------------------------- two processes: gathered projections, one loss


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_views(rank, batch=3):
    g = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(batch, T, 2, 25, 3, generator=g) for _ in range(4)]


def _ddp_worker(rank, world, port, queue):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = USDRLPretrainingModel(tiny_encoder(seed=0))
        out = model(_rank_views(rank))
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        for grad in grads.values():  # what DDP does: average the parameter gradients over ranks
            dist.all_reduce(grad)
            grad /= world
        queue.put((rank, out.loss.item(), {g: [z.detach().numpy() for z in zs] for g, zs in out.projections.items()},
                   {n: g.numpy() for n, g in grads.items()}))
    finally:
        dist.destroy_process_group()


def test_two_ranks_gather_projections_and_reproduce_the_global_loss_and_gradient():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    workers = [ctx.Process(target=_ddp_worker, args=(rank, 2, port, queue)) for rank in range(2)]
    for w in workers:
        w.start()
    results = sorted(queue.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]

    # single process: each rank's half through its own projector BatchNorm, concatenated, one MG-FD
    model = USDRLPretrainingModel(tiny_encoder(seed=0))
    halves = [model(_rank_views(rank)).projections for rank in range(2)]  # no process group: nothing gathered
    global_z = {g: [torch.cat([halves[0][g][k], halves[1][g][k]]) for k in range(4)] for g in "tsi"}
    loss = MGFDLoss()(global_z).loss
    loss.backward()
    for rank, rank_loss, projections, grads in results:
        assert rank_loss == pytest.approx(loss.item(), rel=1e-5)
        assert all(np.allclose(projections[g][k], global_z[g][k].detach().numpy(), atol=1e-5)
                   for g in "tsi" for k in range(4))
        for name, p in model.named_parameters():
            assert np.allclose(grads[name], p.grad.numpy(), rtol=1e-4, atol=1e-6), name


# ---------------------------------------------------------------- evaluations


def test_extract_features_is_the_frozen_eval_mode_pooled_feature(samples):
    encoder = tiny_encoder(drop_path=0.3)
    encoder.train()
    features, labels = extract_features(encoder, samples[:7], batch_size=3)
    assert encoder.training  # mode restored
    assert features.shape == (7, 64) and features.dtype == np.float32
    assert labels.tolist() == [s["label"] for s in samples[:7]]
    encoder.eval()
    with torch.no_grad():
        direct = encoder(torch.from_numpy(Resize(T)(samples[4])["keypoint"][None]), "ntu25").pooled
    assert np.allclose(features[4], direct.numpy(), atol=1e-5)
    again, _ = extract_features(encoder, samples[:7], batch_size=7)
    assert np.allclose(again, features, atol=1e-5)  # DropPath off, batching irrelevant
    with pytest.raises(ConfigError, match="deterministic"):
        extract_features(encoder, samples[:2], transforms=[{"type": "CropResize", "size": T}])


def toy_features(seed, separable, n_train=400, n_test=200, k=4, d=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    y_train, y_test = rng.integers(0, k, n_train), rng.integers(0, k, n_test)
    x_train = centres[y_train] + rng.normal(size=(n_train, d))
    x_test = centres[y_test] + rng.normal(size=(n_test, d))
    if not separable:  # labels carry no information about the features
        y_train, y_test = rng.integers(0, k, n_train), rng.integers(0, k, n_test)
    return x_train, y_train, x_test, y_test


PROBE = dict(num_classes=4, lr=0.05, epochs=30, milestones=(20, 25), batch_size=64)


def test_linear_probe_learns_separable_features_and_stays_at_chance_on_random_labels():
    result = linear_probe(*toy_features(0, separable=True), **PROBE)
    assert result.top1 >= 95.0 and result.epochs == 30 and result.best_top1 is None
    chance = linear_probe(*toy_features(1, separable=False), **PROBE)
    assert 10.0 <= chance.top1 <= 40.0  # 25 % ± 3.5 standard deviations
    best = linear_probe(*toy_features(1, separable=False), report_best=True, eval_every=5, **PROBE)
    assert best.top1 == chance.top1  # same seed, same run; evaluating along the way changes nothing
    assert [e for e, _ in best.history] == [5, 10, 15, 20, 25, 30]
    assert best.best_top1 == max(a for _, a in best.history) >= best.top1
    assert "final epoch 30" in best.summary() and f"best epoch {best.best_epoch}" in best.summary()
    with pytest.raises(ValueError, match=r"labels outside \[0, 4\)"):
        x, y, xt, yt = toy_features(0, separable=True)
        linear_probe(x, np.where(y == 0, -1, y), xt, yt, **PROBE)


def test_knn1_on_toy_features():
    assert knn1_accuracy(*toy_features(2, separable=True)) >= 95.0
    assert 10.0 <= knn1_accuracy(*toy_features(3, separable=False)) <= 40.0


def test_semi_supervised_subset_is_a_seeded_random_fraction():
    subset = semi_supervised_subset(1000, 0.1, seed=0)
    assert len(subset) == 100 and np.all(np.diff(subset) > 0) and subset.min() >= 0 and subset.max() < 1000
    assert np.array_equal(subset, semi_supervised_subset(1000, 0.1, seed=0))
    assert not np.array_equal(subset, semi_supervised_subset(1000, 0.1, seed=1))
    assert len(semi_supervised_subset(1000, 0.01)) == 10 and len(semi_supervised_subset(50, 0.01)) == 1
    # not class-balanced: with 10 classes in blocks of 100, a 1 % draw rarely hits every class exactly once
    labels = np.repeat(np.arange(10), 100)
    per_class = [np.bincount(labels[semi_supervised_subset(1000, 0.01, seed=s)], minlength=10) for s in range(20)]
    assert any(counts.max() > 1 for counts in per_class)
    with pytest.raises(ValueError, match="fraction"):
        semi_supervised_subset(10, 0.0)
