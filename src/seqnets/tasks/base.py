"""What a task is beyond its data: how a person's input is read and an answer shown, what to
measure inside a trained network, its report section and its demo tab.

Training needs only the task's config; everything else that differs between tasks lives in
one :class:`Task` subclass, so that the commands call the task instead of branching on its
name. Every method has a default that works for any task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # annotations only: the report and the module import tasks themselves
    from matplotlib.figure import Figure

    from seqnets.data.base import TensorDataModule
    from seqnets.models.module import SequenceModule


@dataclass(frozen=True)
class DemoTab:
    """How the demo page offers a task: the tab a person sees (``Task.demo_tab``).

    ``input`` is the kind of input: ``"drawing"`` (a canvas that answers as the person draws,
    beside an upload box for an image file), ``"text"`` or ``"numbers"`` (a text box; the
    value typed goes to the task as a string). ``image`` and ``probabilities`` say whether an
    answer comes with the input as the network reads it (a picture) and a probability per
    class; every answer has its text and may have a step-by-step picture.
    """

    title: str
    input: Literal["drawing", "text", "numbers"] = "text"
    prompt: str = ""
    example: str = ""
    image: bool = False
    probabilities: bool = False
    image_label: str = "what the network reads"
    steps_label: str = "step by step: the network's answer after each step"


@dataclass
class DemoAnswer:
    """One answer on the demo page, as data: the page draws it (a task never imports the demo).

    ``text`` is Markdown; ``image`` the input as the network reads it (a PIL image or a uint8
    array); ``probabilities`` class name -> probability; ``steps`` the step-by-step picture (a
    matplotlib Figure or a PIL image)."""

    text: str
    image: Any = None
    probabilities: dict[str, float] | None = None
    steps: Any = None
    numbers: dict[str, Any] = field(default_factory=dict)  # the answer's values, for tests


class Task:
    """One task's behaviour outside training. ``config`` is the run's ``task`` node (a
    checkpoint's or a run record's, resolved), so a task object can be made for any run.

    Subclasses set ``name`` (the registry's key and ``task.name``), ``title`` (the report's
    heading), ``setting_keys`` (the task settings that set its runs apart in tables) and
    ``report_module`` (the module whose ``section`` writes its report section, and whose
    ``inside_figures``, if any, picks its inside figures), ``demo_module`` (where it has one:
    the module whose ``TAB`` is its demo tab and whose ``answer`` answers there), and override
    what they need:

    - ``predict(module, datamodule, value)``: a user's own input (``input=`` of
      ``python -m seqnets.predict``, as plain Python: a string, a number or a list) -> rows,
      one per item, each with ``text`` or ``error`` (a bad item never stops the others).
    - ``markdown(result)``: those rows as a person reads them.
    - ``inside(module, datamodule, generator)``: numbers and figures on what a trained
      network keeps in its state (``seqnets.tasks.analysis``).
    - ``demo_tab()``, ``demo_answer(...)``, ``demo_rank(record)``: its tab on the demo page
      (by default a text box whose value goes to ``predict``, answered with ``markdown`` and
      the readout after each step), and how its runs are ranked there.
    """

    name: ClassVar[str] = "task"
    title: ClassVar[str] = "task"
    setting_keys: ClassVar[tuple[str, ...]] = ()
    report_module: ClassVar[str] = "seqnets.reportkit.generic"
    demo_module: ClassVar[str | None] = None

    def __init__(self, config: Mapping[str, Any] | DictConfig) -> None:
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
        self.config: dict[str, Any] = dict(config)

    # -- data --------------------------------------------------------------------------------
    def datamodule(self, **changes: Any) -> TensorDataModule:
        """The task's DataModule as its config names it (``changes`` override arguments)."""
        return instantiate({**self.config["datamodule"], **changes})

    def setting(self) -> dict[str, Any]:
        """The values of ``setting_keys`` this config has: what sets a run apart in a table."""
        return {k: self.config[k] for k in self.setting_keys if k in self.config}

    # -- a user's own input -------------------------------------------------------------------
    def predict(
        self, module: SequenceModule, datamodule: TensorDataModule, value: Any
    ) -> dict[str, Any]:
        """Predictions for a user's input; by default the task takes none."""
        from seqnets.errors import ConfigError

        raise ConfigError(
            f"input={value!r}: task {self.name!r} does not read a user's own input "
            f"(its Task class, {type(self).__module__}.{type(self).__qualname__}, defines no "
            f"predict)"
        )

    def markdown(self, result: dict[str, Any]) -> str:
        """The predictions as a list a person reads: one line per input."""
        lines = [
            f"- error: {r['error']}" if "error" in r else f"- {r.get('text', r)}"
            for r in result["rows"]
        ]
        return "\n".join(lines) + "\n"

    # -- inside the network -------------------------------------------------------------------
    def inside(
        self, module: SequenceModule, datamodule: TensorDataModule, generator: torch.Generator
    ) -> tuple[dict[str, Any], dict[str, Figure]]:
        """Numbers (plain JSON values) and figures on what the trained network keeps in its
        state; by default none, with a note saying so."""
        return {"note": f"no inside analysis for task {self.name!r}"}, {}

    # -- figures after testing (seqnets.tasks.analysis) -----------------------------------------
    def sample_figure(self, batch: dict[str, torch.Tensor], preds: torch.Tensor) -> Figure | None:
        """A picture of the fixed samples and their predictions, for tasks whose inputs are
        pictures; None for the others."""
        return None

    def errors_figure(self, datamodule: TensorDataModule, pairs: list[dict]) -> Figure | None:
        """The test inputs behind the most frequent mistakes (``pairs`` as made by
        ``seqnets.tasks.analysis.confused_pairs``), for tasks whose inputs are pictures."""
        return None

    # -- the report -----------------------------------------------------------------------------
    def report_section(self, doc: Any, rows: list[Any], context: Any) -> None:
        """The task's section of the report, from its runs (``rows``: one per experiment,
        with its runs over the seeds): ``section`` of ``report_module``."""
        import_module(self.report_module).section(self, doc, rows, context)

    def report_inside(self, doc: Any, row: Any) -> None:
        """The task's part of "Inside the networks", from one experiment's runs: the figures
        ``inside_figures`` of ``report_module`` names, else every one its test analysis drew."""
        from seqnets.reportkit.generic import inside

        describe = getattr(import_module(self.report_module), "inside_figures", None)
        inside(self, doc, row, describe)

    # -- the demo page ----------------------------------------------------------------------------
    def demo_tab(self) -> DemoTab:
        """The task's tab on the demo page: ``TAB`` of ``demo_module``, else a text box read
        as ``predict`` reads ``input=``."""
        if self.demo_module:
            return import_module(self.demo_module).TAB
        return DemoTab(
            title=self.title,
            prompt=f"an input for {self.title}, as `python -m seqnets.predict input=...` takes it",
        )

    def demo_score(self) -> str:
        """The test metric the demo ranks runs by and shows: the one the task monitors."""
        return "test/" + str(self.config.get("monitor", "val/loss")).split("/", 1)[1]

    def demo_rank(self, record: Mapping[str, Any]) -> tuple[float, ...]:
        """Higher is better: the run's ``demo_score`` (negated where the task minimises it,
        an accuracy never); a run without one ranks last."""
        score = self.demo_score()
        value = (record.get("test") or {}).get(score)
        if value is None:
            return (float("-inf"),)
        higher = score.endswith("acc") or self.config.get("monitor_mode", "min") == "max"
        return (float(value) if higher else -value,)

    def demo_state(
        self, module: SequenceModule, datamodule: TensorDataModule, record: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What the demo keeps beside a loaded network for its answers (computed once per
        run, from the run's record, ``metrics.json``); by default nothing."""
        return {}

    def demo_answer(
        self,
        module: SequenceModule,
        datamodule: TensorDataModule,
        value: Any,
        state: Mapping[str, Any],
        max_steps: int,
    ) -> DemoAnswer:
        """The answer to a person's input on the demo page (``max_steps``: the page's cap on
        the steps an input may have): ``answer`` of ``demo_module``, with the same arguments;
        else ``predict`` on the value, its rows as ``markdown`` shows them, and the readout
        after each step of the sequence ``predict`` fed the network (a unidirectional one: a
        bidirectional one has read everything at every step). A refused input raises
        ``ConfigError`` with predict's line."""
        if self.demo_module:
            answer = import_module(self.demo_module).answer
            return answer(module, datamodule, value, state, max_steps)
        from seqnets.errors import ConfigError
        from seqnets.scoring import readout_by_step

        fed: list[tuple[torch.Tensor, Any]] = []

        def capture(_: Any, args: tuple, kwargs: dict) -> None:
            fed.append((args[0] if args else kwargs["x"], args[1] if len(args) > 1 else None))

        hook = module.backbone.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            result = self.predict(module, datamodule, value)
        finally:
            hook.remove()
        rows = result.get("rows") or []
        errors = [r["error"] for r in rows if "error" in r]
        if errors and len(errors) == len(rows):
            raise ConfigError(errors[0])
        steps = None
        if fed and not module.backbone.bidirectional:
            x, lengths = fed[0]
            length = int(lengths[0]) if lengths is not None else x.shape[1]
            if length > max_steps:
                raise ConfigError(
                    f"the input has {length} steps, more than this page's cap of {max_steps} "
                    f"(max_input)"
                )
            _, logits = readout_by_step(module, x[:1, :length])
            steps = readout_figure(logits[0].detach().cpu(), self.title)
        return DemoAnswer(self.markdown(result), steps=steps, numbers={"rows": rows})


def readout_figure(logits: torch.Tensor, title: str) -> Figure:
    """The readout after each step: each class's probability (a heat map) when the readout
    has several outputs, else its value (a line)."""
    from matplotlib.figure import Figure

    steps = logits.shape[0]
    fig = Figure(figsize=(max(4.0, min(10.0, 1.5 + 0.25 * steps)), 2.8), dpi=80)
    fig.subplots_adjust(left=0.12, right=0.95, top=0.86, bottom=0.18)
    ax = fig.add_subplot()
    if logits.shape[-1] > 1:
        probs = logits.softmax(-1).T.numpy()
        ax.imshow(probs, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower")
        ax.set(ylabel="class", yticks=range(probs.shape[0]))
    else:
        ax.plot(range(1, steps + 1), logits[:, 0].numpy(), marker=".")
        ax.set(ylabel="readout")
    ax.set(xlabel="step", title=f"{title}: the answer after each step")
    return fig
