"""Terminal output of the CLI: consoles, metric tables and one-line predictions."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def notify(message: str) -> None:
    console.print(escape(message))


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}")


def metrics_table(title: str, rows: list[tuple[str, str]]) -> RichTable:
    table = RichTable(title=title, show_header=False, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def metric_rows(metrics: dict[str, Any], float_format: str) -> list[tuple[str, str]]:
    return [
        (k, format(v, float_format) if isinstance(v, float) else str(v)) for k, v in metrics.items()
    ]


def _describe_item(item: Any) -> str:
    """A reason code as feature=value, an entity as type 'text' (start-end, score), a matched
    knowledge-base entry as id 'question' (score)."""
    if isinstance(item, dict) and "feature" in item:
        return f"{item.get('feature')}={item.get('value')}"
    if isinstance(item, dict) and {"type", "text", "start", "end"} <= item.keys():
        score = f", {item['score']:.3f}" if isinstance(item.get("score"), float) else ""
        return f"{item['type']} {item['text']!r} ({item['start']}-{item['end']}{score})"
    if isinstance(item, dict) and {"id", "question", "score"} <= item.keys():
        return f"{item['id']} {item['question']!r} ({item['score']:.3f})"
    return str(item)


def describe_prediction(prediction: dict[str, Any]) -> str:
    """One line for a person: the label (if any) in bold, then each other field, nested ones
    summarised."""
    parts = [f"[bold]{escape(str(prediction['label']))}[/bold]"] if "label" in prediction else []
    for key, value in prediction.items():
        if key == "label":
            continue
        if isinstance(value, dict):  # e.g. probabilities per label: the top three
            top = sorted(value.items(), key=lambda kv: -kv[1])[:3]
            shown = ", ".join(f"{k} {v:.3f}" for k, v in top)
        elif isinstance(value, list):  # e.g. reason codes, entities
            shown = "; ".join(_describe_item(item) for item in value) or "none"
        elif isinstance(value, float):
            shown = f"{value:.4g}"
        else:
            shown = str(value)
        parts.append(f"{key}: {escape(shown)}")
    return "   ".join(parts)


def flat_for_file(prediction: dict[str, Any], suffix: str) -> dict[str, Any]:
    """CSV cells hold scalars, so nested values (probabilities) become JSON text there."""
    if suffix.lower() != ".csv":
        return prediction
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in prediction.items()}
