"""The binary_add task (data: ``seqnets.data.binary_add``)."""

from __future__ import annotations

from typing import Any

from seqnets.tasks.base import Task


class BinaryAdd(Task):
    name = "binary_add"
    title = "Binary addition"
    knobs = ("train_len", "loss")

    def report_section(self, doc: Any, rows: list[Any], context: Any) -> None:
        from seqnets.tasks.binary_add.report import section

        section(self, doc, rows, context)

    def report_inside(self, doc: Any, row: Any) -> None:
        from seqnets.tasks.binary_add.report import inside

        inside(self, doc, row)
