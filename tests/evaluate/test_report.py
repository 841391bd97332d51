from pathlib import Path

import numpy as np
import pandas as pd

from forgeline.evaluate import write_report
from forgeline.evaluate.plots import confusion_matrix_png, reliability_png
from forgeline.tasks.base import Evaluation, ReportSection

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_are_png() -> None:
    confusion = np.array([[3, 1], [0, 4]], dtype=np.int64)
    assert confusion_matrix_png(confusion, ["a", "b"]).startswith(PNG_MAGIC)
    assert reliability_png([(0.55, 0.5, 4), (0.9, 1.0, 4)], 0.05).startswith(PNG_MAGIC)


def test_report_is_self_contained_and_escapes_user_text(tmp_path: Path) -> None:
    evaluation = Evaluation(
        metrics={},
        summary=[("accuracy", "0.9000")],
        sections=[
            ReportSection(
                title="Per-class results",
                paragraphs=["<script>alert(1)</script>"],
                tables=[pd.DataFrame({"label": ["<b>evil</b>"], "f1": [0.5]})],
                figures_png=[reliability_png([], 0.0)],
            )
        ],
    )
    path = tmp_path / "report.html"
    write_report(evaluation, path, title="demo v1")
    page = path.read_text()
    assert "<h1>demo v1</h1>" in page
    assert "0.9000" in page and "0.5000" in page
    assert "data:image/png;base64,iVBORw0KGgo" in page
    assert "<script>" not in page and "<b>evil</b>" not in page
    assert "&lt;b&gt;evil&lt;/b&gt;" in page
