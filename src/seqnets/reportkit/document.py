"""The report as a document: Markdown with its PNG figures, one self-contained HTML file, and
``results.json`` with every number the tables show. Knows nothing of tasks or runs' numbers."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqnets import records

DASH = "\u2013"  # a table cell with no value


def signed(value: float | None) -> str:
    return DASH if value is None else f"{value:+.2f}"


def table(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(sentences: Sequence[str]) -> str:
    return "\n".join(f"- {s}" for s in sentences)


class Document:
    """Builds the Markdown, copies and draws figures, collects every shown number."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.figures = out / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self.parts: list[str] = []
        self.results: dict[str, Any] = {}

    def add(self, text: str) -> None:
        self.parts.append(text.strip("\n") + "\n")

    def figure(self, fig: Any, name: str, caption: str) -> None:
        fig.savefig(self.figures / f"{name}.png", dpi=110)
        self.add(f"![{caption}](figures/{name}.png)\n\n*{caption}*")

    def copy_figure(self, run: dict[str, Any] | None, source: str, name: str, caption: str) -> bool:
        path = Path(run["dir"]) / "figures" / f"{source}.png" if run else None
        if path is None or not path.exists():
            return False
        shutil.copyfile(path, self.figures / f"{name}.png")
        self.add(f"![{caption}](figures/{name}.png)\n\n*{caption}* (from `{run['dir']}`)")
        return True

    def markdown(self) -> str:
        return "\n".join(self.parts)

    def write(self) -> None:
        text = self.markdown()
        (self.out / "report.md").write_text(text)
        (self.out / "report.html").write_text(self_contained_html(text, self.out))
        (self.out / "results.json").write_text(
            json.dumps(records.strict(self.results), indent=2, allow_nan=False)
        )


def self_contained_html(text: str, base: Path) -> str:
    """The Markdown as one HTML file that opens offline: figures embedded as data URIs."""
    import markdown

    body = markdown.markdown(text, extensions=["tables", "fenced_code"])

    def embed(match: re.Match) -> str:
        data = base64.b64encode((base / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="(figures/[^"]+\.png)"', embed, body)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "line-height:1.45}table{border-collapse:collapse;font-size:0.9em;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:3px 7px}th{background:#eee}"
        "img{max-width:100%}code,pre{background:#f5f5f5}"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>seqnets report</title>'
        f"<style>{style}</style></head><body>{body}</body></html>"
    )
