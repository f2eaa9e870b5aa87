"""How much one fused kernel call saves over nine tiny backbones run one by one:
``PYTHONPATH=src python benchmarks/fused_kernel.py``.

The workload of a sweep of tiny models on the 'remember' task: batch 64, ragged lengths
3..10, 10 input features (random floats), nine members rnn/lstm/gru x hidden 2/5/10, one
thread. Each step is a forward and a backward (the members' summed loss) with the gradients
cleared. The two paths, (a) each member on its own, as a solo run runs it (the ragged batch
packed), and (b) :class:`FusedBackbones` (one call per cell, the batch unpacked on the CPU,
where PyTorch's LSTM runs through oneDNN), are timed interleaved round by round so that the
machine's drift hits both alike; each figure is the median over rounds. Then one network per
cell, packed against unpacked (a group of one): the unpacked call's own share. Prints ms per
step, the ratios, the CPU and the load average (the machine may be shared: compare figures taken at
a low load only).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.fused import FusedBackbones

Forward = Callable[[torch.Tensor, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]


def cpu_name() -> str:
    """The CPU's model name, as ``lscpu`` shows it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def step(forward: Forward, nets: list[RecurrentBackbone], x, lengths) -> None:
    results = forward(x, lengths)
    sum(out.square().sum() + final.sum() for out, final in results).backward()
    for net in nets:
        net.zero_grad(set_to_none=True)


def compare(nets: list[RecurrentBackbone], x, lengths, rounds: int, steps: int) -> tuple:
    """Median ms per step of (a) each net on its own and (b) the nets fused, interleaved."""
    paths: dict[str, Forward] = {
        "alone": lambda x, lengths: [net(x, lengths) for net in nets],
        "fused": FusedBackbones(nets),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for forward in paths.values():
        for _ in range(3):
            step(forward, nets, x, lengths)
    for _ in range(rounds):
        for name, forward in paths.items():
            start = time.perf_counter()
            for _ in range(steps):
                step(forward, nets, x, lengths)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return tuple(statistics.median(times[name]) for name in ("alone", "fused"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20, help="steps per round and path")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(64, 10, 10)
    lengths = torch.randint(3, 11, (64,))
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, 1 thread")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for num_layers in args.layers:
        nets = [
            RecurrentBackbone(10, cell=cell, hidden=hidden, num_layers=num_layers)
            for cell in ("rnn", "lstm", "gru")
            for hidden in (2, 5, 10)
        ]
        alone, fused = compare(nets, x, lengths, args.rounds, args.steps)
        print(
            f"num_layers={num_layers}: alone {alone:.2f} ms/step, fused {fused:.2f} ms/step, "
            f"alone/fused {alone / fused:.2f}x"
        )
    # One network of the nine's summed width per cell, as a group of one: what the unpacked
    # call alone buys over the packed one, with no fusion.
    for cell in ("rnn", "lstm", "gru"):
        net = RecurrentBackbone(10, cell=cell, hidden=17)
        packed, unpacked = compare([net], x, lengths, args.rounds, args.steps)
        print(
            f"{cell} h=17 alone: packed {packed:.2f} ms/step, unpacked {unpacked:.2f} ms/step, "
            f"packed/unpacked {packed / unpacked:.2f}x"
        )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
