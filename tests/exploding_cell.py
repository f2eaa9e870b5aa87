"""A cell that diverges on purpose, as a test's own code: a GRU whose final state turns NaN
from its ``AT + 1``-th training forward on. A sweep's grouped runs share their learning rate,
so a member is made to diverge by its network instead (``model.cell=`` names it)."""

from __future__ import annotations

from typing import Any

import torch

from seqnets.models.cells import GRU


class ExplodingGRU(GRU):
    AT = 7

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, x: Any, hx: torch.Tensor | None = None) -> tuple[Any, torch.Tensor]:
        outputs, state = super().forward(x, hx)
        if self.training:
            self.calls += 1
            if self.calls > self.AT:
                state = state * float("nan")
        return outputs, state
