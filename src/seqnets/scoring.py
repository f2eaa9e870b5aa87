"""Scoring a trained module outside the Trainer's loops: fixed samples and accuracy against
sequence length, for the test analysis of every run and for evaluating checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from seqnets.data.base import prepare_batch
from seqnets.data.batching import Batch
from seqnets.models.module import SequenceModule
from seqnets.runtime import Progress

log = logging.getLogger(__name__)


@contextmanager
def evaluating(module: SequenceModule) -> Iterator[SequenceModule]:
    """Eval mode and no gradients, then the module's mode as it was: scoring from a training
    callback must not leave dropout switched off."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


def forward_batch(module: SequenceModule, datamodule, batch: Batch) -> tuple[torch.Tensor, Batch]:
    """Logits and the batch as the model saw it, both on the module's device: the batch is
    moved and prepared (e.g. normalised) exactly as the Trainer prepares it."""
    batch = prepare_batch(datamodule, batch, module.device)
    with evaluating(module):
        return module(batch["x"], batch.get("lengths")), batch


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


def predict_batch(module: SequenceModule, datamodule, batch: Batch) -> torch.Tensor:
    """Hard predictions for ``batch``, on the CPU."""
    logits, _ = forward_batch(module, datamodule, batch)
    return module.objective.predict(logits).cpu()


def accuracy_by_length(
    module: SequenceModule, datamodule, lengths: list[int] | None = None
) -> list[dict]:
    """One row per length: the objective's metrics on ``datamodule.length_set(length)``.

    Lengths far beyond training show whether a rule (the carry, the index) was learned or
    only the training lengths were fitted.
    """
    rows = []
    # Scored by one process (rank zero under DDP) on whole sets: nothing to gather.
    metrics = module.objective.metrics(sync=False).to(module.device)
    lengths = lengths or datamodule.eval_lengths()
    what = f"scores against length ({len(lengths)} lengths)"
    progress = Progress(sum(lengths))
    log.info("%s: started", what)
    for length in lengths:
        logits, batch = forward_batch(module, datamodule, datamodule.length_set(length))
        preds = module.objective.predict(logits)
        metrics.reset()
        module.objective.update(metrics, preds, batch)
        scores = {name: float(value) for name, value in metrics.compute().items()}
        rows.append({"length": length, "samples": int(batch["x"].shape[0]), **scores})
        progress.advance(length)
        if progress.due(every=10.0):
            done = 100 * progress.done / progress.total
            log.info("%s: %.0f %% done, about %.0f s left", what, done, progress.left())
    return rows
