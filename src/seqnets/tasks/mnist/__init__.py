"""The mnist task (data: ``seqnets.data.mnist``)."""

from __future__ import annotations

from typing import Any

from seqnets.tasks.base import Task


class MNIST(Task):
    name = "mnist"
    title = "MNIST read row by row"

    def report_section(self, doc: Any, rows: list[Any], context: Any) -> None:
        from seqnets.tasks.mnist.report import section

        section(self, doc, rows, context)

    def report_inside(self, doc: Any, row: Any) -> None:
        from seqnets.tasks.mnist.report import inside

        inside(self, doc, row)
