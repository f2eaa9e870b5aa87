"""A task written outside the package, as a user would write one (README, "Adding a task"):
the parity of a bit string. Its DataModule says how to make sequences; its Task says how a
user's input is read. ``tests/conf/task/parity.yaml`` names both by ``_target_``, and nothing
in ``src/seqnets/`` knows it exists."""

from __future__ import annotations

from typing import Any

import torch

from seqnets.data.batching import Batch
from seqnets.data.synthetic import SyntheticDataModule
from seqnets.scoring import predict_batch
from seqnets.tasks.base import Task


class ParityDataModule(SyntheticDataModule):
    """Bit strings of lengths ``min_len..max_len``; the label is the parity of their ones."""

    name = "parity"
    num_features = 1

    def __init__(
        self,
        min_len: int = 2,
        max_len: int = 8,
        min_eval_len: int = 2,
        max_eval_len: int = 12,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.min_len, self.max_len = min_len, max_len
        # The range ``python -m seqnets.evaluate lengths=[min,max]`` changes.
        self.min_eval_len, self.max_eval_len = min_eval_len, max_eval_len

    def make(self, n: int, generator: torch.Generator, length: int | None = None) -> Batch:
        low, high = (length, length) if length else (self.min_len, self.max_len)
        lengths = torch.randint(low, high + 1, (n,), generator=generator)
        bits = torch.randint(0, 2, (n, high), generator=generator)
        bits *= torch.arange(high) < lengths[:, None]
        return {"x": bits[..., None].float(), "y": bits.sum(1) % 2, "lengths": lengths}

    def eval_lengths(self) -> list[int]:
        return list(range(self.min_eval_len, self.max_eval_len + 1))

    def describe(self, batch: Batch, preds: torch.Tensor) -> list[dict]:
        return [
            {"text": f"{''.join(str(int(b)) for b in x[:n, 0])} -> {int(p)} (true {int(y)})"}
            for x, n, p, y in zip(batch["x"], batch["lengths"], preds, batch["y"], strict=True)
        ]


class Parity(Task):
    name = "parity"
    title = "Parity of a bit string"
    setting_keys = ("max_len",)

    def predict(self, module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
        rows = []
        for text in value if isinstance(value, list | tuple) else [value]:
            text = str(text)
            if not text or set(text) - {"0", "1"}:
                rows.append({"error": f"{text!r} is not allowed: give a bit string like 0110"})
                continue
            bits = torch.tensor([[[float(b)] for b in text]])
            batch = {"x": bits, "y": torch.tensor([text.count("1") % 2])}
            pred = int(predict_batch(module, datamodule, batch)[0])
            rows.append({"bits": text, "pred": pred, "text": f"{text} -> {pred}"})
        return {"rows": rows}
