"""Cached vs uncached decoding of a 52-token pose sequence, side by side in one run (issue 5 "Speed", goal >= 5x).

Usage::

    python benchmarks/decoding_speed.py [--threads 2] [--batches 1 32] [--repeats 5]

The model is the default UPS decoder (d_model 512, 3 pre-LN layers, 8 heads, FFN 2048) over the shipped vocabulary
with a random 384-wide text table (the width of the offline MiniLM encoder; the values do not affect timing) and a
"base" DSTE encoder. The task is ``pose_estimation_2d3d`` on H36M-17: 17 joints × 3 axes + EOT = 52 tokens under
the coordinate grammar. The encoder runs once per batch, outside the timing (its time is printed apart); timed is the
whole grammar-constrained greedy loop (:meth:`UPSForSeq2Seq.greedy_decode`, the loop ``predict`` uses):

- cached: one new token per step, self-attention keys/values appended to an ``EncoderDecoderCache``, cross-attention
  keys/values computed once at the first step;
- uncached: the whole prefix re-run at every step.

Both also go through transformers' ``generate()`` (``use_cache`` True / False in the GenerationConfig, the same
precomputed ``encoder_outputs``) as a second reading. Runs alternate cached / uncached (ABBA) on the same threads,
so load from other processes hits both alike.
Reported: median and minimum wall seconds per batch, median CPU seconds (all threads), tokens per second and the
ratio uncached/cached. The tokens of both modes are compared (they must be identical).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups_toolkit.models import UPSConfig, UPSForSeq2Seq  # noqa: E402
from ups_toolkit.tokenization import build_vocabulary  # noqa: E402

TASK, LAYOUT, D_TEXT = "pose_estimation_2d3d", "h36m17", 384


def build_model() -> UPSForSeq2Seq:
    vocab = build_vocabulary()
    torch.manual_seed(0)
    table = torch.randn(len(vocab), D_TEXT)
    table = table / table.norm(dim=1, keepdim=True)
    table[vocab.pad_id] = 0
    config = UPSConfig(encoder=dict(preset="base", layouts=[LAYOUT]), tasks=[TASK])  # decoder defaults of D8
    return UPSForSeq2Seq(config, vocabulary=vocab, text_embeddings=table).eval()


def timed(fn) -> tuple[float, float, torch.Tensor]:
    start, cpu_start = time.perf_counter(), time.process_time()
    tokens = fn()
    return time.perf_counter() - start, time.process_time() - cpu_start, tokens


def measure(model: UPSForSeq2Seq, batch: int, repeats: int) -> None:
    pose = torch.randn(batch, 64, 1, 17, 2, generator=torch.Generator().manual_seed(1))
    grammar = model.grammar(TASK, layout=LAYOUT)
    with torch.no_grad():
        model.encoder(pose, layout=LAYOUT, task=TASK)  # warm-up
        start = time.perf_counter()
        encoded = model.encoder(pose, layout=LAYOUT, task=TASK)
        print(f"encoder (not in the timings below) batch {batch:3d}: {time.perf_counter() - start:.3f} s", flush=True)
    configs = {use: model.generation_config_for(TASK, layout=LAYOUT, use_cache=use) for use in (True, False)}
    runners = {
        ("greedy_decode", True): lambda: model.greedy_decode(encoded, TASK, grammar, use_cache=True)[0],
        ("greedy_decode", False): lambda: model.greedy_decode(encoded, TASK, grammar, use_cache=False)[0],
        ("generate", True): lambda: model.generate(encoder_outputs=encoded, layout=LAYOUT, task=TASK,
                                                   generation_config=configs[True])[:, 1:],
        ("generate", False): lambda: model.generate(encoder_outputs=encoded, layout=LAYOUT, task=TASK,
                                                    generation_config=configs[False])[:, 1:],
    }
    for loop in ("greedy_decode", "generate"):
        cached, uncached = runners[(loop, True)], runners[(loop, False)]
        cached(), uncached()  # warm-up: allocator, kernels
        times = {True: [], False: []}
        cpu = {True: [], False: []}
        tokens = {}
        for r in range(repeats):
            order = (True, False) if r % 2 == 0 else (False, True)
            for use in order:
                wall, cpu_s, tokens[use] = timed(runners[(loop, use)])
                times[use].append(wall)
                cpu[use].append(cpu_s)
        same = torch.equal(tokens[True], tokens[False])
        length = tokens[True].shape[1]
        for use in (True, False):
            med = statistics.median(times[use])
            print(f"{loop:14s} batch {batch:3d}  {'cached  ' if use else 'uncached'}  median {med:7.3f} s  "
                  f"min {min(times[use]):7.3f} s  cpu {statistics.median(cpu[use]):7.3f} s  "
                  f"{batch * length / med:8.0f} tokens/s", flush=True)
        ratio = statistics.median(times[False]) / statistics.median(times[True])
        cpu_ratio = statistics.median(cpu[False]) / statistics.median(cpu[True])
        print(f"{loop:14s} batch {batch:3d}  {length} tokens, identical tokens: {same}; uncached / cached = "
              f"{ratio:.1f}x wall, {cpu_ratio:.1f}x cpu (goal >= 5x)", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model()
    decoder_params = sum(p.numel() for p in model.decoder.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; decoder d_model {model.config.d_model}, "
          f"{model.config.decoder_layers} layers, {model.config.decoder_heads} heads, FFN {model.config.ffn}, "
          f"{decoder_params:,} parameters, vocabulary {model.config.vocab_size} tokens", flush=True)
    for batch in args.batches:
        measure(model, batch, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
