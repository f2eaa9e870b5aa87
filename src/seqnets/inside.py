"""Inside the networks: what a trained network keeps in its state, as its task measures it.

Accuracy says whether a network solves a task; these analyses say *how*: whether one unit of
a binary adder simply is the carry, whether the digit a remember network must report stays
readable as later digits arrive, and from which MNIST row on a network already knows the
digit. Each task's analyses live with the task (``Task.inside``); this module holds what they
share and the entry point the test analysis and ``evaluate`` call. Each analysis takes a
trained :class:`SequenceModule` and plain tensors and returns
plain numbers (lists and dicts of Python floats and ints, ``None`` where a number is
undefined) so that they go into a run's ``metrics.json`` as strict JSON; the figures in
:mod:`seqnets.plots` are drawn from those numbers alone.

Per-step readouts (what the network would answer if the sequence ended at step t) rely on
the backbone being unidirectional: then the top layer's output at step t is exactly the
final state of the sequence cut after t. A bidirectional backbone's backward half has seen
the future at every step, so those analyses return a note instead of numbers that would
look meaningful but are not.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.figure import Figure

from seqnets.models.module import SequenceModule
from seqnets.scoring import evaluating

if TYPE_CHECKING:
    from seqnets.tasks.base import Task

# Below this standard deviation a unit counts as constant: its correlation is undefined
# (None), not the float32 rounding noise of a saturated unit.
CONSTANT_STD = 1e-6
BIDIRECTIONAL_NOTE = (
    "bidirectional backbone: at every step the backward direction has already read the "
    "whole sequence, so a per-step readout is not the answer for a shorter sequence; "
    "per-step numbers are left out"
)


def fixed_generator(generator: torch.Generator | None) -> torch.Generator:
    """A fixed seed when none is given, so that an analysis repeats exactly."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def json_number(value: float | torch.Tensor) -> float | None:
    """A strict-JSON number: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None


# -- per-step answers: remember and MNIST -------------------------------------------------
def readout_by_step(
    module: SequenceModule, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top layer's output at every step of ``x`` and the trained readout's logits on it:
    for a unidirectional backbone, what the network would answer had the sequence ended
    there (the answer after each digit, or after each MNIST row). Both on the module's device.
    """
    with evaluating(module):
        outputs, _ = module.backbone(x.to(module.device, torch.float32), lengths)
        return outputs, module.readout(outputs)


# -- one entry point -----------------------------------------------------------------------
def analyse(
    module: SequenceModule, datamodule: Any, seed: int = 0, task: Task | None = None
) -> tuple[dict, dict[str, Figure]]:
    """What the task measures inside the network (``Task.inside``), with a fixed seeded
    generator so that two calls give the same numbers, at sizes that take seconds on two CPU
    cores. Returns (numbers for ``metrics.json``, figures keyed by a short name); ``task``
    defaults to the module's own (from the config it was trained with).

    Figures whose numbers are undefined (per-step readouts of a bidirectional backbone) are
    left out of the figures dict; their numbers carry a ``note`` instead.
    """
    from seqnets.tasks import task_of_run

    task = task or task_of_run(module, datamodule)
    generator = torch.Generator().manual_seed(seed)
    numbers, figures = task.inside(module, datamodule, generator)
    return {"task": task.name, "model": module.backbone.describe(), "seed": seed} | numbers, figures
