"""Remember the digit at index K: sequences of random digits whose target is the K-th one."""

from __future__ import annotations

import torch

from seqnets.data.batching import Batch
from seqnets.data.synthetic import SyntheticDataModule, check_length_range
from seqnets.errors import ConfigError, check_int

NUM_DIGITS = 10


def make_remember_batch(
    n: int, min_len: int, max_len: int, k: int, generator: torch.Generator
) -> Batch:
    """``n`` one-hot digit sequences of lengths uniform in [min_len, max_len], padded with
    zero vectors to ``max_len``; ``y`` is the digit at position ``k`` (counted from 1)."""
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    digits = torch.randint(0, NUM_DIGITS, (n, max_len), generator=generator)
    return {"x": one_hot(digits, lengths), "y": digits[:, k - 1].clone(), "lengths": lengths}


def one_hot(digits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(n, steps) digits -> (n, steps, 10) one-hot by scatter, writing 0 instead of 1 past
    each sequence's end (zero padding)."""
    real = torch.arange(digits.shape[1]) < lengths[:, None]
    return torch.zeros(*digits.shape, NUM_DIGITS).scatter_(
        2, digits.unsqueeze(-1), real.unsqueeze(-1).to(torch.float32)
    )


def encode_digits(sequences: list[list[int]]) -> Batch:
    """Digit lists -> a batch as the task feeds them (one-hot, zero-padded, with lengths)."""
    lengths = torch.tensor([len(s) for s in sequences])
    digits = torch.zeros(len(sequences), int(lengths.max()), dtype=torch.long)
    for i, sequence in enumerate(sequences):
        digits[i, : len(sequence)] = torch.tensor(sequence)
    return {"x": one_hot(digits, lengths), "lengths": lengths}


def decode_digits(batch: Batch) -> list[list[int]]:
    """The digit lists a batch holds, padding removed."""
    digits = batch["x"].argmax(-1)
    return [d[:n].tolist() for d, n in zip(digits, batch["lengths"].tolist(), strict=True)]


class RememberDataModule(SyntheticDataModule):
    """Digit sequences of mixed lengths in one batch: the readout must see each true end."""

    name = "remember"
    num_features = NUM_DIGITS

    def __init__(
        self,
        K: int = 3,
        min_len: int = 3,
        max_len: int = 10,
        max_eval_len: int = 20,
        min_eval_len: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.min_len, self.max_len = check_length_range("task.min_len/max_len", min_len, max_len)
        self.K = check_int(
            "task.K",
            K,
            1,
            self.min_len,
            why=f"task.min_len={self.min_len}: every sequence must reach index K",
        )
        self.max_eval_len = check_int("task.max_eval_len", max_eval_len, self.K)
        # Sequences shorter than K have no digit at index K.
        self.min_eval_len = check_int(
            "task.min_eval_len",
            self.K if min_eval_len is None else min_eval_len,
            self.K,
            self.max_eval_len,
        )

    def make(self, n: int, generator: torch.Generator, length: int | None = None) -> Batch:
        low, high = (self.min_len, self.max_len) if length is None else (length, length)
        if low < self.K:
            raise ConfigError(f"length {low} is shorter than task.K={self.K}")
        return make_remember_batch(n, low, high, self.K, generator)

    def eval_lengths(self) -> list[int]:
        return list(range(self.min_eval_len, self.max_eval_len + 1))

    def describe(self, batch: Batch, preds: torch.Tensor) -> list[dict]:
        rows = []
        for seq, p, t in zip(
            decode_digits(batch), preds.tolist(), batch["y"].tolist(), strict=True
        ):
            text = f"{seq} -> {p} (true {t})"
            rows.append({"sequence": seq, "K": self.K, "pred": p, "true": t, "text": text})
        return rows
