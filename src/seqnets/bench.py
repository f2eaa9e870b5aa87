"""How fast the synthetic tasks make data: ``python -m seqnets.bench`` (``make bench``).

Prints sequences per second for whole-batch generation of each task, to set beside a run's
training speed (``steps_trained`` and ``train_time_s`` in its ``metrics.json``).
"""

from __future__ import annotations

import argparse
import time

import torch

from seqnets.data.binary_add import make_binary_add_batch
from seqnets.data.remember import make_remember_batch


def rate(make, batch_size: int, seconds: float) -> float:
    """Sequences per second made by ``make(batch_size, generator)``, best of short bursts."""
    generator = torch.Generator().manual_seed(0)
    make(batch_size, generator)  # warm-up
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < 0.2:
            make(batch_size, generator)
            calls += 1
        best = max(best, calls * batch_size / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 16384])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = {
        "remember (len 3..10, K=3)": lambda n, g: make_remember_batch(n, 3, 10, 3, g),
        "binary_add (L=10)": lambda n, g: make_binary_add_batch(n, 10, g),
        "binary_add (L=100)": lambda n, g: make_binary_add_batch(n, 100, g),
    }
    print(f"torch {torch.__version__}, {args.threads} threads; sequences per second")
    print(f"{'task':<28}" + "".join(f"{f'batch {b}':>16}" for b in args.batch_sizes))
    for name, make in tasks.items():
        cells = [rate(make, b, args.seconds) for b in args.batch_sizes]
        print(f"{name:<28}" + "".join(f"{c:>16,.0f}" for c in cells))


if __name__ == "__main__":
    main()
