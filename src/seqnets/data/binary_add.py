"""Binary addition, least significant bit first: one input step and one sum bit per position."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqnets.data.batching import Batch
from seqnets.data.synthetic import (
    SAMPLE_OFFSET,
    SyntheticDataModule,
    check_length_range,
    length_range,
)
from seqnets.errors import check_int


def make_binary_add_batch(n: int, length: int, generator: torch.Generator) -> Batch:
    """``n`` pairs a, b uniform in [0, 2^(length-1)), so that a+b fits in ``length`` bits.

    Bits are drawn directly, so any length works (no int64 overflow at length 100); the sum's
    carries come from ``carries`` (carry-lookahead), not from a loop over positions.
    """
    bits = torch.randint(0, 2, (n, length, 2), generator=generator, dtype=torch.uint8)
    bits[:, -1] = 0  # the top bit of a and b is 0: a, b < 2^(length-1)
    total = (bits[..., 0] ^ bits[..., 1]).long()
    total[:, 1:] ^= carries(bits)[:, :-1]
    return {"x": bits.to(torch.float32), "y": total}


def make_mixed_binary_add_batch(n: int, low: int, high: int, generator: torch.Generator) -> Batch:
    """``n`` sums spread evenly over lengths ``low..high``, shortest first, zero-padded to
    ``high`` steps, with their ``lengths``."""
    lengths = list(range(low, high + 1))
    counts = [n // len(lengths) + (i < n % len(lengths)) for i in range(len(lengths))]
    x = torch.zeros(n, high, 2)
    y = torch.zeros(n, high, dtype=torch.long)
    start = 0
    for length, count in zip(lengths, counts, strict=True):
        part = make_binary_add_batch(count, length, generator)
        x[start : start + count, :length] = part["x"]
        y[start : start + count, :length] = part["y"]
        start += count
    sizes = torch.repeat_interleave(torch.tensor(lengths), torch.tensor(counts))
    return {"x": x, "y": y, "lengths": sizes}


def carries(bits: torch.Tensor) -> torch.Tensor:
    """The carry out of each position, (batch, steps) of 0/1, for bits laid out as the task
    feeds them: (batch, steps, 2), least significant first (0/1 as integers or floats).

    A position passes its incoming carry on when exactly one input bit is set (propagate) and
    otherwise sets it to its own AND (generate or kill); so the carry out of position i is the
    AND at the last non-propagating position at or before i, or 0 if there is none. Each such
    stop is encoded as 2*i + its AND, so a running maximum carries the last stop forward and
    its low bit is the carry (-1, no stop yet, clamps to carry 0). Also what analyses of a
    network's state compare against: after position i an adder need only remember this.
    """
    a, b = bits.round().long().unbind(-1)
    positions = torch.arange(0, 2 * a.shape[1], 2, device=a.device)
    stops = torch.where((a ^ b) == 0, positions + (a & b), -1)
    return stops.cummax(dim=1).values.clamp(min=0) & 1


def encode_sum(a: int, b: int) -> Batch:
    """One sum a+b as the task feeds it: least significant bit first, long enough for the sum
    (one bit more than the longer operand)."""
    length = max(a.bit_length(), b.bit_length(), 1) + 1
    bits = [[(a >> i) & 1, (b >> i) & 1] for i in range(length)]
    total = [((a + b) >> i) & 1 for i in range(length)]
    return {"x": torch.tensor([bits], dtype=torch.float32), "y": torch.tensor([total])}


def bits_to_int(bits: Sequence[int]) -> int:
    """Least-significant-first bits -> Python int (exact at any length)."""
    return sum(int(b) << i for i, b in enumerate(bits))


class BinaryAddDataModule(SyntheticDataModule):
    """Each training batch has one length (bucketing), drawn from the training range, so
    no step is padding; mixed-length evaluation sets carry ``lengths`` and are packed."""

    name = "binary_add"
    num_features = 2

    def __init__(
        self,
        train_len: int | Sequence[int] = 3,
        min_eval_len: int = 1,
        max_eval_len: int = 100,
        sample_len: int = 20,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.sample_len = check_int("task.sample_len", sample_len, 1)
        self.min_len, self.max_len = length_range("task.train_len", train_len)
        self.min_eval_len, self.max_eval_len = check_length_range(
            "task.min_eval_len/max_eval_len", min_eval_len, max_eval_len
        )

    def make(self, n: int, generator: torch.Generator, length: int | None = None) -> Batch:
        if length is not None:
            return make_binary_add_batch(n, length, generator)
        if self.min_len == self.max_len:
            return make_binary_add_batch(n, self.min_len, generator)
        return self._mixed(n, generator)

    def train_batch(self, generator: torch.Generator) -> Batch:
        length = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=generator))
        return make_binary_add_batch(self.batch_size, length, generator)

    def _mixed(self, n: int, generator: torch.Generator) -> Batch:
        """An evaluation set spread evenly over the training lengths, padded to the longest."""
        return make_mixed_binary_add_batch(n, self.min_len, self.max_len, generator)

    def sample_batch(self, n: int = 8) -> Batch:
        """Sums of ``sample_len`` bits, fixed for a given ``data_seed``: long enough to show
        whether the carry holds beyond the training length."""
        return self._fixed(n, SAMPLE_OFFSET, self.sample_len)

    def eval_lengths(self) -> list[int]:
        return list(range(self.min_eval_len, self.max_eval_len + 1))

    def describe(self, batch: Batch, preds: torch.Tensor) -> list[dict]:
        lengths = batch.get("lengths")
        rows = []
        for i in range(batch["x"].shape[0]):
            n = int(lengths[i]) if lengths is not None else batch["x"].shape[1]
            bits = batch["x"][i, :n].long()
            a, b = bits_to_int(bits[:, 0].tolist()), bits_to_int(bits[:, 1].tolist())
            pred = bits_to_int(preds[i, :n].tolist())
            true = bits_to_int(batch["y"][i, :n].tolist())
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "pred": pred,
                    "true": true,
                    "bits": n,
                    "text": f"{a} + {b} = {pred} ({true})",
                }
            )
        return rows
