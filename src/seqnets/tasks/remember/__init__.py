"""The remember task (data: ``seqnets.data.remember``)."""

from __future__ import annotations

from typing import Any

from seqnets.tasks.base import Task


class Remember(Task):
    name = "remember"
    title = "Remember the digit at index K"
    knobs = ("K",)

    def report_section(self, doc: Any, rows: list[Any], context: Any) -> None:
        from seqnets.tasks.remember.report import section

        section(self, doc, rows, context)

    def report_inside(self, doc: Any, row: Any) -> None:
        from seqnets.tasks.remember.report import inside

        inside(self, doc, row)
