"""Inside the networks: what a trained network keeps in its state, task by task.

Accuracy says whether a network solves a task; these analyses say *how*: whether one unit of
a binary adder simply is the carry, whether the digit a remember network must report stays
readable as later digits arrive, and from which MNIST row on a network already knows the
digit. Each analysis takes a trained :class:`SequenceModule` and plain tensors and returns
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
from collections.abc import Callable

import torch
from matplotlib.figure import Figure
from torch import nn

from seqnets import plots
from seqnets.data.binary_add import (
    carries,
    make_binary_add_batch,
    make_mixed_binary_add_batch,
)
from seqnets.data.remember import NUM_DIGITS, make_remember_batch
from seqnets.models.module import SequenceModule
from seqnets.scoring import evaluating

# Below this standard deviation a unit counts as constant: its correlation is undefined
# (None), not the float32 rounding noise of a saturated unit.
CONSTANT_STD = 1e-6
# Ridge penalty of the linear probe; states are bounded (tanh), so one fixed value serves.
PROBE_RIDGE = 1e-2
# Sums read at once by the carry analysis: bounds memory at about CHUNK * 100 steps * units.
CHUNK = 250
BIDIRECTIONAL_NOTE = (
    "bidirectional backbone: at every step the backward direction has already read the "
    "whole sequence, so a per-step readout is not the answer for a shorter sequence; "
    "per-step numbers are left out"
)


def _generator(generator: torch.Generator | None) -> torch.Generator:
    """A fixed seed when none is given, so that an analysis repeats exactly."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _float(value: float | torch.Tensor) -> float | None:
    """A strict-JSON number: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None


# -- binary addition: the carry ------------------------------------------------------------
def lstm_states(
    rnn: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step hidden and cell states of the top layer of ``rnn`` over ``x`` (batch, steps,
    features), ``lengths`` marking ragged sequences: two tensors of shape (batch, steps,
    hidden * directions), forward direction first and zero past each sequence's end, as the
    backbone's packed ``nn.LSTM`` lays out its outputs.

    ``nn.LSTM`` returns the cell state only after the last step, and the cell state is where
    an LSTM may keep the carry, so the LSTM equations are replayed here from the module's own
    weights (PyTorch's gate order i, f, g, o), layer by layer and direction by direction.
    Inter-layer dropout is not applied: this is an eval-mode analysis.
    """
    if rnn.proj_size:
        raise ValueError("lstm_states does not handle LSTMs with proj_size > 0")
    steps = x.shape[1]
    if lengths is None:
        real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    else:
        real = torch.arange(steps, device=x.device) < lengths.to(x.device)[:, None]
    directions = 2 if rnn.bidirectional else 1
    layer_input = x
    for layer in range(rnn.num_layers):
        hs, cs = [], []
        for direction in range(directions):
            suffix = f"l{layer}{'_reverse' if direction else ''}"
            w_ih = getattr(rnn, f"weight_ih_{suffix}")
            w_hh = getattr(rnn, f"weight_hh_{suffix}")
            gates_in = layer_input @ w_ih.T
            if rnn.bias:
                gates_in = gates_in + getattr(rnn, f"bias_ih_{suffix}")
                gates_in = gates_in + getattr(rnn, f"bias_hh_{suffix}")
            h_seq, c_seq = _lstm_direction(gates_in, w_hh, real, reverse=bool(direction))
            hs.append(h_seq)
            cs.append(c_seq)
        layer_input, cells = torch.cat(hs, dim=-1), torch.cat(cs, dim=-1)
    return layer_input, cells


def _lstm_direction(
    gates_in: torch.Tensor, w_hh: torch.Tensor, real: torch.Tensor, reverse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM layer in one direction, from its input-side gate pre-activations.

    The state changes only at real steps, so that reading right to left each sequence starts
    from a zero state at its own last step, as a packed sequence does."""
    batch, steps, _ = gates_in.shape
    hidden = w_hh.shape[1]
    h = gates_in.new_zeros(batch, hidden)
    c = gates_in.new_zeros(batch, hidden)
    h_seq = gates_in.new_zeros(batch, steps, hidden)
    c_seq = gates_in.new_zeros(batch, steps, hidden)
    for t in reversed(range(steps)) if reverse else range(steps):
        i, f, g, o = (gates_in[:, t] + h @ w_hh.T).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        step_real = real[:, t, None]
        h = torch.where(step_real, h_new, h)
        c = torch.where(step_real, c_new, c)
        h_seq[:, t], c_seq[:, t] = h * step_real, c * step_real
    return h_seq, c_seq


def unit_labels(module: SequenceModule) -> list[str]:
    """Names of the state units the carry analysis looks at, in feature order: ``h0``..
    for hidden units, ``c0``.. for LSTM cell units, with an ``r`` (``hr0``) for the
    backward direction of a bidirectional backbone."""
    backbone = module.backbone
    directions = ["", "r"][: backbone.num_directions]
    kinds = ["h", "c"] if backbone.cell == "lstm" else ["h"]
    return [f"{k}{d}{i}" for k in kinds for d in directions for i in range(backbone.hidden)]


def carry_states(
    module: SequenceModule, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-step states of the top layer over sums ``x`` (batch, steps, 2), zero-padded past
    ``lengths`` when given (ragged sums are packed, as in training).

    Returns CPU tensors: ``h`` (batch, steps, output_size), ``c`` likewise for an LSTM
    (absent otherwise), ``carry`` (batch, steps), the true carry out of each position (what
    the state after reading that position must hold), ``pred``, the network's sum bits,
    ``prob``, each bit's probability of being 1, and ``real`` (batch, steps), True at the
    positions inside each sum.
    """
    steps = x.shape[1]
    real = torch.ones(x.shape[:2], dtype=torch.bool)
    if lengths is not None:
        lengths = lengths.cpu()
        real = torch.arange(steps) < lengths[:, None]
    with evaluating(module):
        x = x.to(module.device, torch.float32)
        outputs, _ = module.backbone(x, lengths)
        states = {"h": outputs.float().cpu()}
        if module.backbone.cell == "lstm":
            states["c"] = lstm_states(module.backbone.rnn, x, lengths)[1].float().cpu()
        logits = module.readout(outputs)
        states["pred"] = module.objective.predict(logits).cpu()
        states["prob"] = torch.sigmoid(logits.squeeze(-1)).float().cpu()  # each bit's P(1)
    states["carry"] = carries(x).cpu()
    states["real"] = real
    return states


def unit_values(states: dict[str, torch.Tensor]) -> torch.Tensor:
    """h and (for an LSTM) c side by side, in the order of :func:`unit_labels`."""
    return torch.cat([states["h"]] + ([states["c"]] if "c" in states else []), dim=-1)


def _length_range(length: int | tuple[int, int]) -> tuple[int, int]:
    low, high = (length, length) if isinstance(length, int) else length
    if not 1 <= low <= high:
        raise ValueError(f"length={length!r}: give L >= 1 or (min, max) with 1 <= min <= max")
    return int(low), int(high)


def carry_correlation(
    module: SequenceModule,
    length: int | tuple[int, int] = (40, 100),
    n: int = 1000,
    generator: torch.Generator | None = None,
) -> dict:
    """Pearson correlation of every state unit with the true carry, pooled over every
    position of ``n`` sums spread evenly over ``length`` bits (an int or a (min, max) range).

    Long sums on purpose: a network that only fitted short training sums may hold the carry
    well at first and drift later, and pooling long sums shows it. Returns ``r`` (unit label
    -> r, None for a constant unit), the best unit by |r|, and the network's bit and exact
    accuracy on the same sums, so a strong carry unit can be read against how well it adds.
    """
    low, high = _length_range(length)
    labels = unit_labels(module)
    # One zero-padded batch, read in chunks of packed sums: a few long tensor operations
    # instead of one pass per length.
    batch = make_mixed_binary_add_batch(n, low, high, _generator(generator))
    x, y, sizes = batch["x"], batch["y"], batch["lengths"]
    # Running sums in float64: the pooled positions never need to be held at once.
    sums = torch.zeros(5, len(labels), dtype=torch.float64)  # x, x^2, x*y, y, y^2
    positions = right_bits = right_sums = 0
    for first in range(0, len(sizes), CHUNK):
        part = slice(first, first + CHUNK)
        steps = int(sizes[part].max())  # sorted by length: short chunks stay short
        states = carry_states(module, x[part, :steps], sizes[part])
        real = states["real"]
        values = unit_values(states)[real].double()
        carry = states["carry"][real].double()[:, None]
        sums += torch.stack(
            [
                values.sum(0),
                values.pow(2).sum(0),
                (values * carry).sum(0),
                carry.sum(0).expand(len(labels)),
                carry.pow(2).sum(0).expand(len(labels)),
            ]
        )
        positions += values.shape[0]
        right = states["pred"] == y[part, :steps]
        right_bits += int(right[real].sum())
        right_sums += int((right | ~real).all(dim=1).sum())
    mean_x, mean_x2, mean_xy, mean_y, mean_y2 = sums / max(positions, 1)
    std_x = (mean_x2 - mean_x**2).clamp(min=0).sqrt()
    std_y = (mean_y2 - mean_y**2).clamp(min=0).sqrt()
    cov = mean_xy - mean_x * mean_y
    r: dict[str, float | None] = {}
    for j, label in enumerate(labels):
        defined = std_x[j] > CONSTANT_STD and std_y[j] > 0
        r[label] = _float((cov[j] / (std_x[j] * std_y[j])).clamp(-1, 1)) if defined else None
    scored = {k: abs(v) for k, v in r.items() if v is not None}
    best = max(scored, key=scored.get) if scored else None
    return {
        "r": r,
        "best_unit": best,
        "best_r": r[best] if best else None,
        "best_abs_r": scored[best] if best else None,
        "sums": n,
        "lengths": [low, high],
        "positions": positions,
        "bit_acc": right_bits / positions if positions else None,
        "exact_acc": right_sums / n if n else None,
    }


def carry_trace(
    module: SequenceModule,
    unit: str,
    length: int = 40,
    generator: torch.Generator | None = None,
    candidates: int = 64,
) -> dict:
    """One ``length``-bit sum as the network reads it: the value of ``unit`` at each step
    next to the true carry, the input bits, the true sum and the network's sum.

    Of ``candidates`` random sums, the one where the carry most often has to be *held*
    through a position whose bits differ (carry in 1, a xor b = 1, carry out 1) is shown:
    those long carry chains are where a unit that merely reacts to the current bits and a
    unit that remembers the carry part ways.
    """
    labels = unit_labels(module)
    if unit not in labels:
        raise ValueError(f"unit={unit!r} is not one of {labels[0]}..{labels[-1]}")
    batch = make_binary_add_batch(candidates, length, _generator(generator))
    bits = batch["x"].long()
    carry = carries(batch["x"])
    held = ((bits[..., 0] ^ bits[..., 1]) == 1) & (carry == 1)
    pick = int(held.sum(1).argmax())
    states = carry_states(module, batch["x"][pick : pick + 1])
    value = unit_values(states)[0, :, labels.index(unit)]
    return {
        "unit": unit,
        "length": length,
        "value": [float(v) for v in value],
        "carry": states["carry"][0].tolist(),
        "a": bits[pick, :, 0].tolist(),
        "b": bits[pick, :, 1].tolist(),
        "sum": batch["y"][pick].tolist(),
        "pred": states["pred"][0].tolist(),
    }


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


# -- remember: the digit held --------------------------------------------------------------
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
    ratio = [_float(v / total) if total > 0 else None for v in variance[:2]]
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
    batch = make_remember_batch(n, steps, steps, k, _generator(generator))
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


# -- MNIST: when the network knows the digit -----------------------------------------------
def row_by_row(
    module: SequenceModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """The trained readout applied after every row r = 1..28: accuracy and mean confidence
    (softmax probability of the predicted class) per row, overall and per digit class, and
    the settle row, the first row from which the prediction stays correct to the end.

    ``images`` are uint8 (batch, 28, 28), normalised here by ``normalize`` (the
    datamodule's), or floats already normalised as the model saw them in training.
    Unidirectional backbones only: a bidirectional one gets ``note`` and None.
    """
    if module.backbone.bidirectional:
        return {"note": BIDIRECTIONAL_NOTE, "rows": None, "acc": None}
    if images.dtype == torch.uint8:
        if normalize is None:
            raise ValueError("uint8 images need normalize= (the datamodule's normalize)")
        images = normalize(images)
    labels = labels.cpu().long()
    probs = readout_by_step(module, images)[1].softmax(-1).cpu()
    confidence, pred = probs.max(-1)  # (batch, rows)
    correct = pred == labels[:, None]
    rows = correct.shape[1]
    # Correct from row r to the end: a reversed running product of the correct flags.
    stays = correct.flip(1).long().cumprod(1).flip(1)
    settled_for = stays.sum(1)  # rows at the end that are all correct
    settle_row = (rows - settled_for + 1).double()
    settled = settled_for > 0

    def summary(mask: torch.Tensor) -> dict:
        count = int(mask.sum())
        if count == 0:
            return {
                "n": 0,
                "acc": None,
                "confidence": None,
                "settle_row": None,
                "never_settled": None,
            }
        mean_settle = settle_row[mask & settled]
        return {
            "n": count,
            "acc": correct[mask].float().mean(0).tolist(),
            "confidence": confidence[mask].mean(0).tolist(),
            "settle_row": float(mean_settle.mean()) if len(mean_settle) else None,
            "never_settled": float((~settled[mask]).float().mean()),
        }

    overall = summary(torch.ones_like(labels, dtype=torch.bool))
    return {
        "note": None,
        "rows": list(range(1, rows + 1)),
        **overall,
        "final_acc": overall["acc"][-1],
        "per_class": {str(d): summary(labels == d) for d in range(NUM_DIGITS)},
    }


# -- one entry point -----------------------------------------------------------------------
def analyse(module: SequenceModule, datamodule, seed: int = 0) -> tuple[dict, dict[str, Figure]]:
    """Every analysis that fits the datamodule's task (``datamodule.name``), with a fixed
    seeded generator so that two calls give the same numbers, at sizes that take seconds on
    two CPU cores. Returns (numbers for ``metrics.json``, figures keyed by a short name).

    Figures whose numbers are undefined (per-step readouts of a bidirectional backbone) are
    left out of the figures dict; their numbers carry a ``note`` instead.
    """
    generator = torch.Generator().manual_seed(seed)
    model = module.backbone.describe()
    task = datamodule.name
    numbers: dict = {"task": task, "model": model, "seed": seed}
    figures: dict[str, Figure] = {}
    if task == "binary_add":
        correlation = carry_correlation(module, (40, 100), 1000, generator)
        correlation["train_lengths"] = [datamodule.min_len, datamodule.max_len]
        numbers["carry"] = correlation
        figures["carry_units"] = plots.carry_units_figure(correlation, f"{model}: carry units")
        if correlation["best_unit"] is not None:
            trace = carry_trace(module, correlation["best_unit"], 40, generator)
            trace["r"] = correlation["best_r"]
            numbers["carry_trace"] = trace
            figures["carry_trace"] = plots.carry_trace_figure(trace, f"{model}: carry trace")
    elif task == "remember":
        states = remember_states(module, datamodule.make(2000, generator))
        states["K"] = datamodule.K
        figures["remember_pca"] = plots.remember_pca_figure(
            states, f"{model}: final state, digit at K={datamodule.K}"
        )
        # The points are for the figure; metrics.json keeps the summary.
        numbers["pca"] = {k: v for k, v in states.items() if k not in ("points", "digit")}
        steps = max(20, datamodule.max_eval_len, datamodule.max_len)
        train_lengths = (datamodule.min_len, datamodule.max_len)
        hold = hold_accuracy(module, datamodule.K, steps, 2000, generator, train_lengths)
        numbers["hold"] = hold
        if hold["note"] is None:
            figures["remember_hold"] = plots.remember_hold_figure(
                hold, f"{model}: digit at K={datamodule.K} held"
            )
    elif task == "mnist":
        datamodule.setup()
        test = datamodule.splits["test"]
        rows = row_by_row(module, test["x"][:2000], test["y"][:2000], datamodule.normalize)
        numbers["rows"] = rows
        if rows["note"] is None:
            figures["mnist_rows"] = plots.mnist_rows_figure(rows, f"{model}: reading row by row")
            figures["mnist_settle"] = plots.mnist_settle_figure(
                rows, f"{model}: row from which the answer stays right"
            )
    else:  # a task without an analysis yet: its test analysis still completes
        numbers["note"] = f"no inside analysis for task {task!r}"
    return numbers, figures
