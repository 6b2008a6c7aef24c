"""QuantileSketch against Apache DataSketches' kll_doubles_sketch, side by side.

One stream of 10M float64 values (standard normal, fixed seed) goes into both sketches through
their batch update (a numpy array in). Memory is made equal by serialized size: DataSketches
runs at its default k = 200, and ours at the largest k whose serialized bytes on this very
stream do not exceed theirs. Reported:

- sketch_rank_error: our largest |true rank of quantile(q) - q| over q = 0.01 .. 0.99;
- datasketches_rank_error: the same for theirs (get_quantile, inclusive);
- vs_datasketches: our batch-update throughput / theirs (best of 3 runs each);
- the k, bytes and throughputs behind those.

Run alone, it prints `name=value` pairs on its last line.
"""

from __future__ import annotations

import time

import numpy as np

from layerscope.stats import QuantileSketch

N = 10_000_000
THEIR_K = 200
QS = np.arange(1, 100) / 100


def _max_rank_error(values: np.ndarray, sorted_data: np.ndarray) -> float:
    lo = np.searchsorted(sorted_data, values, side="left") / sorted_data.size
    hi = np.searchsorted(sorted_data, values, side="right") / sorted_data.size
    return float(np.maximum(0.0, np.maximum(lo - QS, QS - hi)).max())


def _best_time(build, data: np.ndarray, repeats: int = 3) -> tuple[float, object]:
    best, sketch = float("inf"), None
    for _ in range(repeats):
        sketch = build()
        start = time.perf_counter()
        sketch.update(data)
        best = min(best, time.perf_counter() - start)
    return best, sketch


def _ours(k: int, data: np.ndarray) -> QuantileSketch:
    sketch = QuantileSketch(k=k)
    sketch.update(data)
    return sketch


def run() -> dict[str, float]:
    from datasketches import kll_doubles_sketch

    data = np.random.default_rng(20240601).standard_normal(N)
    sorted_data = np.sort(data)

    their_time, theirs = _best_time(lambda: kll_doubles_sketch(THEIR_K), data)
    their_bytes = len(theirs.serialize())

    # Equal memory: the largest k whose serialized size on this stream fits in theirs.
    lo, hi = 8, 4 * THEIR_K
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_ours(mid, data).serialize()) <= their_bytes:
            lo = mid
        else:
            hi = mid - 1
    our_k = lo
    our_time, ours = _best_time(lambda: QuantileSketch(k=our_k), data)
    our_bytes = len(ours.serialize())

    their_values = np.array([theirs.get_quantile(float(q), True) for q in QS])
    return {
        "sketch_rank_error": _max_rank_error(ours.quantile(QS), sorted_data),
        "datasketches_rank_error": _max_rank_error(their_values, sorted_data),
        "vs_datasketches": their_time / our_time,
        "sketch_rank_error_bound": ours.normalized_rank_error,
        "sketch_k": float(our_k),
        "datasketches_k": float(THEIR_K),
        "sketch_bytes": float(our_bytes),
        "datasketches_bytes": float(their_bytes),
        "sketch_mitems_per_s": N / our_time / 1e6,
        "datasketches_mitems_per_s": N / their_time / 1e6,
    }


if __name__ == "__main__":
    results = run()
    print(" ".join(f"{name}={value:.6g}" for name, value in results.items()))
