"""The adding problem (Hochreiter and Schmidhuber, 1997): a sequence of (value, marker) pairs,
values uniform in [0, 1), exactly two of them marked; the target is the sum of the two marked
values. One marker falls in the first half of the sequence and one in the second (as in Le et
al., 2015), so the first marked value must be held for about half the sequence on average.
Always answering 1.0, the mean sum, scores a mean squared error of 2/12 = 0.167: the bar a
network must go well below to have learned anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqnets.data.batching import Batch
from seqnets.data.synthetic import SyntheticDataModule, check_length_range, length_range
from seqnets.errors import check_int


def make_adding_batch(
    n: int, lengths: torch.Tensor, generator: torch.Generator, steps: int | None = None
) -> Batch:
    """``n`` sequences of the given ``lengths`` (one per sequence), zero-padded to ``steps``
    (default: the longest): ``x`` (n, steps, 2) holds (value, marker), ``y`` the sum of the two
    marked values, ``lengths`` each sequence's length."""
    steps = steps or int(lengths.max())
    values = torch.rand(n, steps, generator=generator)
    half = (lengths // 2).clamp(min=1)
    first = (torch.rand(n, generator=generator) * half).long()
    second = half + (torch.rand(n, generator=generator) * (lengths - half)).long()
    rows = torch.arange(n)
    markers = torch.zeros(n, steps)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    real = torch.arange(steps) < lengths[:, None]
    values = values * real
    y = values[rows, first] + values[rows, second]
    return {"x": torch.stack([values, markers], dim=-1), "y": y, "lengths": lengths}


def encode_sequence(values: Sequence[float], marked: Sequence[int]) -> Batch:
    """One user's sequence as the task feeds it: ``values`` with the positions in ``marked``
    (counted from 0) marked."""
    x = torch.zeros(1, len(values), 2)
    x[0, :, 0] = torch.tensor([float(v) for v in values])
    x[0, list(marked), 1] = 1.0
    y = x[0, :, 0][list(marked)].sum().reshape(1)
    return {"x": x, "y": y, "lengths": torch.tensor([len(values)])}


class AddingDataModule(SyntheticDataModule):
    """Training batches of one length each, drawn from the training range (no padding);
    validation and test sets spread over the training lengths; the length study at
    ``min_eval_len``, ``min_eval_len + eval_step``, ... up to ``max_eval_len``."""

    name = "adding"
    num_features = 2

    def __init__(
        self,
        train_len: int | Sequence[int] = (40, 60),
        min_eval_len: int = 10,
        max_eval_len: int = 400,
        eval_step: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        # Two markers, one in each half: two steps at least.
        self.min_len, self.max_len = length_range("task.train_len", train_len)
        check_int("task.train_len (min)", self.min_len, 2)
        self.min_eval_len, self.max_eval_len = check_length_range(
            "task.min_eval_len/max_eval_len", min_eval_len, max_eval_len, minimum=2
        )
        self.eval_step = check_int("task.eval_step", eval_step, 1)

    def make(self, n: int, generator: torch.Generator, length: int | None = None) -> Batch:
        if length is not None:
            return make_adding_batch(n, torch.full((n,), length), generator)
        lengths = torch.randint(self.min_len, self.max_len + 1, (n,), generator=generator)
        return make_adding_batch(n, lengths, generator, self.max_len)

    def train_batch(self, generator: torch.Generator) -> Batch:
        length = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=generator))
        batch = make_adding_batch(
            self.batch_size, torch.full((self.batch_size,), length), generator
        )
        del batch["lengths"]  # one length: nothing to pack
        return batch

    def eval_lengths(self) -> list[int]:
        return list(range(self.min_eval_len, self.max_eval_len + 1, self.eval_step))

    def describe(self, batch: Batch, preds: torch.Tensor) -> list[dict]:
        rows = []
        lengths = batch.get("lengths")
        for i in range(batch["x"].shape[0]):
            n = int(lengths[i]) if lengths is not None else batch["x"].shape[1]
            values, markers = batch["x"][i, :n].unbind(-1)
            marked = markers.nonzero().flatten().tolist()
            pred, true = float(preds[i]), float(batch["y"][i])
            shown = " and ".join(f"{float(values[j]):.3f} at step {j + 1}" for j in marked)
            rows.append(
                {
                    "length": n,
                    "marked": marked,
                    "pred": pred,
                    "true": true,
                    "text": f"{n} steps, marked {shown}: {pred:.3f} (true {true:.3f})",
                }
            )
        return rows
