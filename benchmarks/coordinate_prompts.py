"""How well do ordinal prompts embed as coordinates? The statistics of docs/design.md D3, for any text encoder.

For each coordinate axis (and the temporal family) the n prompts "The {ordinal} horizontal coordinate", ... are
embedded like the vocabulary (pooling, L2-normalised) and summarised:

- adjacent-bin cosine: cos(t_k, t_k+1), mean / min / max over k;
- NN within +-w: share of bins whose nearest other bin (cosine) lies within w bins;
- linear-fit RMS: a least-squares fit k ~ [t_k, 1] over all bins, RMS residual in bins (in-sample; NaN when
  n <= d + 1, where any table fits exactly);
- effective dims: principal components needed for 99 % of the variance of the centred table.

    python -m benchmarks.coordinate_prompts                                   # MiniLM from its PyPI package
    python -m benchmarks.coordinate_prompts --text-encoder FacebookAI/roberta-base --pooling mean
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ups_toolkit.tokenization import OFFLINE_TEXT_ENCODER, embed_prompts, load_coordinate_spec, ordinal_words


def prompt_statistics(table: np.ndarray, window: int = 5, variance: float = 0.99) -> dict[str, float]:
    """Statistics of an (n, d) table of L2-normalised embeddings of consecutive bins."""
    n = len(table)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    adjacent = np.sum(unit[:-1] * unit[1:], axis=1)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    nearest = sim.argmax(axis=1)
    index = np.arange(n)
    design = np.hstack([table, np.ones((n, 1))])
    coef, *_ = np.linalg.lstsq(design, index.astype(np.float64), rcond=None)
    # with n <= d + 1 bins any table fits exactly: the in-sample RMS says nothing, report NaN
    rms = float(np.sqrt(np.mean((design @ coef - index) ** 2))) if n > design.shape[1] else float("nan")
    singular = np.linalg.svd(table - table.mean(0), compute_uv=False)
    explained = np.cumsum(singular**2) / np.sum(singular**2)
    return {
        "adjacent_cos_mean": float(adjacent.mean()),
        "adjacent_cos_min": float(adjacent.min()),
        "adjacent_cos_max": float(adjacent.max()),
        "nn_within_window": float(np.mean(np.abs(nearest - index) <= window)),
        "linear_fit_rms_bins": rms,
        "effective_dims": int(np.searchsorted(explained, variance) + 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-encoder", default=OFFLINE_TEXT_ENCODER)
    parser.add_argument("--pooling", default="mean", choices=["mean", "cls"])
    parser.add_argument("--n-bins", type=int, default=None, help="default: coordinates.yaml n_bins")
    parser.add_argument("--window", type=int, default=5, help="NN-within-window half width, bins")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)

    spec = load_coordinate_spec()
    n_bins = args.n_bins or spec.n_bins
    families = {f'{axis}: "{template}"': [template.format(ordinal=ordinal_words(k + 1)) for k in range(n_bins)]
                for axis, template in spec.axis_prompts.items()}
    families[f'time: "{spec.temporal_prompt}"'] = [spec.temporal_prompt.format(ordinal=ordinal_words(k + 1))
                                                   for k in range(spec.n_time_bins)]
    prompts = [p for family in families.values() for p in family]
    start = time.perf_counter()
    result = embed_prompts(prompts, text_encoder=args.text_encoder, pooling=args.pooling, cache_dir=args.cache_dir)
    print(f"text encoder {args.text_encoder} ({args.pooling} pooling, d = {result.table.shape[1]}): "
          f"{len(prompts)} prompts embedded in {time.perf_counter() - start:.1f} s"
          f"{' (from cache)' if result.from_cache else ''}")
    print(f"| family | n | adjacent cos mean / min / max | NN within ±{args.window} | linear-fit RMS (bins) "
          f"| effective dims (99 %) |")
    print("|---|---|---|---|---|---|")
    row = 0
    for name, family in families.items():
        s = prompt_statistics(result.table[row : row + len(family)], window=args.window)
        row += len(family)
        print(f"| {name} | {len(family)} | {s['adjacent_cos_mean']:.3f} / {s['adjacent_cos_min']:.3f} / "
              f"{s['adjacent_cos_max']:.3f} | {100 * s['nn_within_window']:.1f} % | {s['linear_fit_rms_bins']:.1f} "
              f"| {s['effective_dims']} |")


if __name__ == "__main__":
    main()
