"""Remember the digit at index K (data: ``seqnets.data.remember``).

Inside a trained network: whether its final state separates the digit to report (the state's
first two principal components), and how cleanly the digit stays held as later digits arrive
(the trained readout and a linear probe after every step). A user's own input is digit lists
such as ``[6,8,0,2]``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf
from torch import nn

from seqnets.data.remember import NUM_DIGITS, encode_digits, make_remember_batch
from seqnets.errors import ConfigError
from seqnets.scoring import evaluating, forward_batch, readout_by_step
from seqnets.tasks.analysis import BIDIRECTIONAL_NOTE, fixed_generator, json_number
from seqnets.tasks.base import Task
from seqnets.tasks.inside_figures import remember_hold_figure, remember_pca_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from seqnets.models.module import SequenceModule


class Remember(Task):
    name = "remember"
    title = "Remember the digit at index K"
    report_module = "seqnets.tasks.remember.report"
    demo_module = "seqnets.tasks.remember.demo"
    setting_keys = ("K",)

    def predict(self, module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
        return predict_digits(module, datamodule, value)

    def inside(
        self, module: SequenceModule, datamodule: Any, generator: torch.Generator
    ) -> tuple[dict[str, Any], dict[str, Figure]]:
        """The final state's principal components, coloured by the digit at K, and the digit
        held step by step, to the longest of 20, the evaluation and the training lengths."""
        model, k = module.backbone.describe(), datamodule.K
        numbers: dict[str, Any] = {}
        figures: dict[str, Figure] = {}
        states = remember_states(module, datamodule.make(2000, generator))
        states["K"] = k
        figures["remember_pca"] = remember_pca_figure(
            states, f"{model}: final state, digit at K={k}"
        )
        # The points are for the figure; metrics.json keeps the summary.
        numbers["pca"] = {key: v for key, v in states.items() if key not in ("points", "digit")}
        steps = max(20, datamodule.max_eval_len, datamodule.max_len)
        train_lengths = (datamodule.min_len, datamodule.max_len)
        hold = hold_accuracy(module, k, steps, 2000, generator, train_lengths)
        numbers["hold"] = hold
        if hold["note"] is None:
            figures["remember_hold"] = remember_hold_figure(hold, f"{model}: digit at K={k} held")
        return numbers, figures

    def demo_score(self) -> str:
        return "test/acc"


# -- a user's own digit lists ------------------------------------------------------------------
def parse_sequences(value: Any, k: int) -> list[Any]:
    """``[6,8,0]``, ``[[6,8,0],[1,2,3,4]]``, ``"680"`` or ``"6,8,0"`` -> digit lists; a bad one
    becomes its error message (a non-digit, or shorter than K)."""
    if OmegaConf.is_list(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, int | str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"input={value!r} is not allowed: give a digit list such as [6,8,0,2]")
    if not any(isinstance(v, list | str) for v in value):
        value = [value]  # one flat list of digits
    sequences: list[Any] = []
    for item in value:
        digits = re.findall(r"[^,\s]+", item) if isinstance(item, str) and "," in item else item
        digits = list(digits) if isinstance(digits, str) else digits
        digits = digits if isinstance(digits, list) else [digits]
        parsed = [int(d) if str(d).isdigit() and len(str(d)) == 1 else None for d in digits]
        if not parsed or None in parsed:
            sequences.append(f"{item!r} is not allowed: every element must be a digit 0-9")
        elif len(parsed) < k:
            sequences.append(
                f"{item!r} is not allowed: it has {len(parsed)} digits, fewer than K={k} "
                f"(the network answers the digit at index K)"
            )
        else:
            sequences.append(parsed)
    return sequences


def predict_digits(module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
    """The digit at index K of each list, with the true one."""
    k = datamodule.K
    sequences = parse_sequences(value, k)
    good = [s for s in sequences if isinstance(s, list)]
    preds: list[int] = []
    if good:
        logits, _ = forward_batch(module, datamodule, encode_digits(good))
        preds = module.objective.predict(logits).cpu().tolist()
    rows, answers = [], iter(preds)
    for sequence in sequences:
        if isinstance(sequence, str):
            rows.append({"error": sequence})
            continue
        pred, true = next(answers), sequence[k - 1]
        text = f"{sequence} -> {pred} (true {true})"
        if len(sequence) > datamodule.max_len:
            text += f"; longer than the training lengths (up to {datamodule.max_len})"
        rows.append({"sequence": sequence, "K": k, "pred": pred, "true": true, "text": text})
    return {"rows": rows}


# -- inside: the digit held ------------------------------------------------------------
# Ridge penalty of the linear probe; states are bounded (tanh), so one fixed value serves.
PROBE_RIDGE = 1e-2


def remember_states(module: SequenceModule, batch: dict[str, torch.Tensor]) -> dict:
    """The final state (the features the readout sees) of every sequence in ``batch``
    (``x``, ``lengths``, ``y`` = the digit at index K), projected onto its first two
    principal components.

    If the network keeps the digit at K and little else, the ten digits form ten clusters
    even in two dimensions; ``centroid_acc_2d`` (nearest digit centroid in the plane) puts a
    number on how cleanly. ``points`` holds one [pc1, pc2] per sequence, for the figure.
    """
    with evaluating(module):
        x = batch["x"].to(module.device, torch.float32)
        _, final = module.backbone(x, batch.get("lengths"))
        pred = module.objective.predict(module.readout(final)).cpu()
    digits = batch["y"].cpu()
    features = final.double().cpu()
    centred = features - features.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ vh[:2].T
    if points.shape[1] < 2:  # a one-unit state has one component
        points = torch.cat([points, torch.zeros_like(points)], dim=1)
    variance = singular.pow(2)
    total = float(variance.sum())
    ratio = [json_number(v / total) if total > 0 else None for v in variance[:2]]
    ratio += [0.0] * (2 - len(ratio))
    present = [d for d in range(NUM_DIGITS) if bool((digits == d).any())]
    centroids = torch.stack([points[digits == d].mean(0) for d in present])
    nearest = torch.tensor(present)[torch.cdist(points, centroids).argmin(1)]
    return {
        "n": len(digits),
        "acc": float((pred == digits).float().mean()),
        "explained_variance_ratio": ratio,
        "centroids": {
            str(d): [float(v) for v in c] for d, c in zip(present, centroids, strict=True)
        },
        "centroid_acc_2d": float((nearest == digits).float().mean()),
        "points": [[float(a), float(b)] for a, b in points.tolist()],
        "digit": digits.tolist(),
    }


def _probe_accuracy(features: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy of a ridge-regression probe (one-hot targets) fitted on the first half and
    scored on the second: does the state still hold the digit, readable by *some* linear
    map, even where the trained readout no longer finds it?"""
    half = features.shape[0] // 2
    design = torch.cat([features.double(), features.new_ones(features.shape[0], 1).double()], 1)
    onehot = nn.functional.one_hot(targets, NUM_DIGITS).double()
    fit, test = design[:half], design[half:]
    gram = fit.T @ fit + PROBE_RIDGE * torch.eye(design.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, fit.T @ onehot[:half])
    return float(((test @ weights).argmax(1) == targets[half:]).float().mean())


def hold_accuracy(
    module: SequenceModule,
    k: int,
    steps: int = 20,
    n: int = 2000,
    generator: torch.Generator | None = None,
    train_lengths: tuple[int, int] | None = None,
) -> dict:
    """How cleanly the digit at index ``k`` (from 1) stays held as later digits arrive.

    ``n`` sequences of ``steps`` digits are read once; the trained readout applied to the
    top layer's output at step t is exactly the network's answer for the sequence cut after
    t digits (unidirectional backbones only), scored against the digit at ``k`` for
    t = k..steps. ``probe_acc`` is a linear probe fitted per step on half the sequences.
    Bidirectional backbones get ``note`` and None instead.
    """
    if module.backbone.bidirectional:
        return {"note": BIDIRECTIONAL_NOTE, "K": k, "steps": None, "readout_acc": None}
    if not 1 <= k <= steps:
        raise ValueError(f"k={k} must lie in 1..steps={steps}")
    batch = make_remember_batch(n, steps, steps, k, fixed_generator(generator))
    outputs, logits = readout_by_step(module, batch["x"])
    outputs = outputs[:, k - 1 :].cpu()
    preds = module.objective.predict(logits[:, k - 1 :]).cpu()
    digits = batch["y"]
    return {
        "note": None,
        "K": k,
        "n": n,
        "steps": list(range(k, steps + 1)),
        "readout_acc": (preds == digits[:, None]).float().mean(0).tolist(),
        "probe_acc": [_probe_accuracy(outputs[:, t], digits) for t in range(outputs.shape[1])],
        "train_lengths": list(train_lengths) if train_lengths else None,
    }
