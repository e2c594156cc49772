"""Speed of the toolkit's three hot paths, on the CPU always and on a GPU when there is one (issue 9 "Speed"):

    python benchmarks/throughput.py                     # CPU, 2 threads: ~5 minutes
    python benchmarks/throughput.py --quick             # smoke run
    python benchmarks/throughput.py --device cuda       # GPU: bf16 autocast, and the model FLOPs utilisation

1. **Training throughput** (sequences/s) of one optimizer step (forward, backward, AdamW) of the whole UPS model
   (DSTE encoder + decoder) at the ``small`` encoder preset (d 256) and the ``paper`` preset (d 1024, 57 M encoder
   parameters), default decoder (d 512, 3 layers), on 3D recognition batches (NTU-25, 64 frames, 2 persons, 2 target
   tokens) and on 2D->3D pose batches (H36M-17, 64 frames, 52 target tokens). FLOPs of a step are counted with
   ``torch.utils.flop_counter`` (matmuls and attention, forward and backward); the achieved FLOP/s is reported against
   the device's peak: on a GPU its dense bf16 peak (MFU; H100/H200 SXM 989 TFLOP/s, or ``--peak-tflops``), on the
   CPU the fp32 matmul rate measured here on a 2048^3 product at the same thread count ("of matmul peak").
2. **Decoding throughput per task** (sequences/s, tokens/s): batched, cached, grammar-constrained greedy decoding
   (``model.greedy_decode``, the loop evaluation and ``infer.py`` use) of the demo-size model for each of the six
   supervised tasks, batch 32, encoder excluded.
3. **Dataset read rate** (samples/s): random access into a prepared (Arrow) dataset, row by row, through
   ``load_prepared`` as training and evaluation read it -- the NW-UCLA conversion when ../shared/data is there
   (converted into a temporary folder), else the synthetic demo data.

Weights are random (values do not change the timing). Every figure is a median over ``--repeats`` runs after a
warm-up; other processes on the machine slow every number down alike.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups_toolkit.models import UPSConfig, UPSForSeq2Seq  # noqa: E402
from ups_toolkit.tokenization import build_vocabulary  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
D_TEXT = 384  # the offline MiniLM text encoder's width
GPU_PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, SXM data sheets
# task -> (layout, channels, label set); the encoder input of each task as the demo feeds it
TASKS = {
    "action_recognition_3d": ("ntu25", 3, "synthetic"),
    "action_recognition_2d": ("h36m17", 2, "synthetic"),
    "early_action_prediction": ("ntu25", 3, "synthetic"),
    "pose_estimation_2d3d": ("h36m17", 2, None),
    "motion_prediction": ("h36m17", 3, None),
    "temporal_action_detection": ("ntu25", 3, "synthetic"),
}


def build_model(encoder: dict, device: str, **decoder) -> UPSForSeq2Seq:
    vocab = build_vocabulary()
    torch.manual_seed(0)
    table = torch.nn.functional.normalize(torch.randn(len(vocab), D_TEXT), dim=1)
    table[vocab.pad_id] = 0
    config = UPSConfig(encoder=dict(encoder, layouts=["ntu25", "h36m17"], layout_persons={"h36m17": 1},
                                    max_persons=2), tasks=list(TASKS), **decoder)
    return UPSForSeq2Seq(config, vocabulary=vocab, text_embeddings=table).to(device)


def median_seconds(fn, repeats: int, device: str) -> float:
    fn()  # warm-up: allocator, kernels, grammar tables
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_matmul_peak(repeats: int = 5) -> float:
    """fp32 FLOP/s of a 2048^3 matrix product at the current thread count."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048 ** 3 / median_seconds(lambda: a @ b, repeats, "cpu")


def peak_flops(device: str, override_tflops: float | None) -> tuple[float, str]:
    if override_tflops:
        return override_tflops * 1e12, "given peak"
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        for key, tflops in GPU_PEAK_BF16_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"MFU vs {name} dense bf16 {tflops} TFLOP/s"
        return float("nan"), f"unknown peak for {name} (pass --peak-tflops)"
    rate = cpu_matmul_peak()
    return rate, f"of the measured fp32 matmul peak {rate / 1e9:.0f} GFLOP/s"


def example_batch(model, task: str, batch: int, device: str) -> tuple[torch.Tensor, str, torch.Tensor, str | None]:
    """(pose, layout, labels, label set): random inputs and valid target tokens (an untrained model's greedy decode)."""
    layout, channels, label_set = TASKS[task]
    from ups_toolkit.skeleton.layouts import get_layout

    joints, persons = get_layout(layout).num_joints, model.encoder.dste.config.persons(layout)
    g = torch.Generator().manual_seed(1)
    pose = torch.randn(batch, 64, persons, joints, channels, generator=g).to(device)
    with torch.no_grad():
        encoded = model.encode(pose, layout=layout, task=task)
        tokens, _ = model.greedy_decode(encoded, task, model.grammar(task, label_set, layout))
    return pose, layout, tokens, label_set


def training_throughput(args, device: str, peak: float) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    print(f"\n1. training step (forward + backward + AdamW), {device}"
          f"{', bf16 autocast' if device == 'cuda' else ', fp32'}")
    presets = [("small", args.batch_small), ("paper", args.batch_paper)] if not args.quick else [("tiny", 4)]
    for preset, batch in presets:
        model = build_model({"preset": preset}, device).train()
        params = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for task in ("action_recognition_3d", "pose_estimation_2d3d"):
            pose, layout, labels, label_set = example_batch(model, task, batch, device)

            def step():
                with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                    loss = model(pose=pose, layout=layout, task=task, labels=labels, label_set=label_set).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            step()
            with FlopCounterMode(display=False) as counter:
                step()
            flops = counter.get_total_flops()
            seconds = median_seconds(step, args.repeats, device)
            print(f"   {preset:5s} encoder, model {params / 1e6:5.1f} M params, {task:22s} batch {batch:3d}, "
                  f"{labels.shape[1]:2d} tokens: {seconds:7.3f} s/step  {batch / seconds:8.1f} sequences/s  "
                  f"{flops / 1e9:8.1f} GFLOP/step  {flops / seconds / 1e9:8.1f} GFLOP/s = "
                  f"{100 * flops / seconds / peak:5.1f} %", flush=True)
        del model, optimizer


def decoding_throughput(args, device: str) -> None:
    import yaml

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["model"]
    model = build_model(demo.pop("encoder"), device, **demo).eval()
    batch = 8 if args.quick else args.decode_batch
    print(f"\n2. decoding, demo-size model, batch {batch}, cached + grammar-constrained greedy, encoder excluded")
    for task in TASKS:
        pose, layout, _, label_set = example_batch(model, task, batch, device)
        grammar = model.grammar(task, label_set, layout)
        with torch.no_grad():
            encoded = model.encode(pose, layout=layout, task=task)
            tokens, _ = model.greedy_decode(encoded, task, grammar)
            seconds = median_seconds(lambda: model.greedy_decode(encoded, task, grammar), args.repeats, device)
        print(f"   {task:26s} {tokens.shape[1]:4d} tokens: {seconds:7.3f} s/batch  {batch / seconds:8.1f} "
              f"sequences/s  {batch * tokens.shape[1] / seconds:9.0f} tokens/s", flush=True)


def read_rate(args) -> None:
    import numpy as np

    from ups_toolkit.data.prepared import load_prepared

    source = REPO.parent / "shared" / "data" / "NW-UCLA"
    with tempfile.TemporaryDirectory(prefix="ups-read-rate-") as tmp:
        if source.is_dir():
            data, what = Path(tmp) / "nwucla", "NW-UCLA (1,484 sequences, 20 joints)"
            cmd = [sys.executable, "-m", "ups_toolkit.data", "convert", "nw-ucla", str(source), str(data), "--quiet"]
        else:
            data, what = Path(tmp) / "synthetic", "synthetic ntu25_3d"
            cmd = [sys.executable, "-m", "ups_toolkit.data", "synth", str(data), "--num-per-class", "20"]
        subprocess.run(cmd, check=True, cwd=REPO)
        if not (data / "dataset_dict.json").exists() and (data / "ntu25_3d").exists():
            data = data / "ntu25_3d"
        ds = load_prepared(data, split="all" if source.is_dir() else "train")
        order = np.random.default_rng(0).permutation(len(ds))[: (200 if args.quick else len(ds))]
        seconds = median_seconds(lambda: [ds[int(i)] for i in order], args.repeats, "cpu")
        print(f"\n3. dataset read, {what}: random access of {len(order)} samples: {len(order) / seconds:8.0f} "
              f"samples/s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-small", type=int, default=16)
    parser.add_argument("--batch-paper", type=int, default=4)
    parser.add_argument("--decode-batch", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for the utilisation")
    parser.add_argument("--quick", action="store_true", help="tiny encoder, small batches: a smoke run")
    parser.add_argument("--skip", nargs="*", default=[], choices=("training", "decoding", "read"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {name}")
    if "training" not in args.skip:
        peak, peak_note = peak_flops(args.device, args.peak_tflops)
        print(f"utilisation below: {peak_note}")
        training_throughput(args, args.device, peak)
    if "decoding" not in args.skip:
        decoding_throughput(args, args.device)
    if "read" not in args.skip:
        read_rate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
