"""The self-contained ``report.html``: inline CSS and base64 PNGs, viewable offline."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from forgeline.tasks.base import Evaluation, MarkedText

_ENVIRONMENT = Environment(
    loader=PackageLoader("forgeline.evaluate", "."),
    autoescape=select_autoescape(["html", "j2"]),
)


def _table_html(frame: pd.DataFrame) -> Markup:
    formatted = frame.copy()
    for column in formatted.columns:
        if pd.api.types.is_float_dtype(formatted[column]):
            formatted[column] = formatted[column].map(lambda v: f"{v:.4f}")
    # to_html escapes cell contents (escape=True), so user-provided labels cannot inject markup.
    return Markup(formatted.to_html(index=False, border=0, classes="table", escape=True))


def _pieces(marked: MarkedText) -> list[tuple[str, str | None]]:
    """The text cut at its spans' edges: (piece, label or None). The template escapes pieces."""
    pieces: list[tuple[str, str | None]] = []
    position = 0
    for start, end, label in marked.spans:
        if start > position:
            pieces.append((marked.text[position:start], None))
        pieces.append((marked.text[start:end], label))
        position = end
    if position < len(marked.text):
        pieces.append((marked.text[position:], None))
    return pieces


def write_report(evaluation: Evaluation, path: Path, *, title: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(evaluation, title=title), encoding="utf-8")


def render_report(evaluation: Evaluation, *, title: str) -> str:
    """The report as one self-contained HTML page (figures inline)."""
    sections = [
        {
            "title": section.title,
            "paragraphs": section.paragraphs,
            "tables": [_table_html(t) for t in section.tables],
            "figures": [base64.b64encode(png).decode("ascii") for png in section.figures_png],
            "marked": [(m.caption, _pieces(m)) for m in section.marked_texts],
        }
        for section in evaluation.sections
    ]
    return _ENVIRONMENT.get_template("report.html.j2").render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        summary=evaluation.summary,
        sections=sections,
    )
