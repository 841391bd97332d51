"""Latency of a tabular prediction with reason codes, per row, against the usual SHAP call.

Trains the tabular model on the Taiwan credit data (../shared/data) when present, else on the
bundled example, then times, on the same rows in one run:
- baseline: what a user would write: LightGBM predict + shap.TreeExplainer on each row;
- forgeline: TabularClassifier.predict on each row (probability, points, decision, reason codes);
- forgeline batched: one predict call for all rows, per row.
Target: under 5 ms per row.

    python benchmarks/reason_codes_bench.py [--rows 500]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import shap

from forgeline.config import load_project
from forgeline.tasks.tabular import TabularClassifier
from forgeline.tasks.tabular.columns import features_matrix

ROOT = Path(__file__).resolve().parents[1]
TAIWAN = ROOT / "examples" / "taiwan-credit"
TEMPLATE = ROOT / "src/forgeline/templates/tabular-classification"
SHARED = ROOT.parent / "shared" / "data" / "taiwan_credit_default.csv"


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="shap")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        if SHARED.is_file():
            project, source = load_project(TAIWAN / "forgeline.yaml"), "Taiwan credit default"
        else:
            shutil.copytree(TEMPLATE, work, dirs_exist_ok=True)
            config = Path(work) / "forgeline.yaml"
            config.write_text(config.read_text().replace("__NAME__", "bench"))
            project, source = load_project(config), "bundled example"
        data = TabularClassifier.prepare_data(project)
        model = TabularClassifier.fit(project, data, lambda _: None)
    names = [c.name for c in model.settings.inputs]  # what a request sends
    rows = data.test[names].head(args.rows).astype(object)
    inputs = rows.where(rows.notna(), None).to_dict(orient="records")
    booster = model.main.estimator.booster  # type: ignore[attr-defined]
    explainer = shap.TreeExplainer(booster)

    started = time.perf_counter()
    for row in inputs:
        features = features_matrix(pd.DataFrame([row], columns=names), model.settings.columns)
        booster.predict(features)
        values = explainer.shap_values(features)
        np.argsort(-np.asarray(values)[0])[:4]
    baseline = (time.perf_counter() - started) / len(inputs) * 1000

    started = time.perf_counter()
    for row in inputs:
        model.predict([row])
    single = (time.perf_counter() - started) / len(inputs) * 1000

    started = time.perf_counter()
    model.predict(inputs)
    batched = (time.perf_counter() - started) / len(inputs) * 1000

    width = len(model.settings.columns)
    print(f"data: {source}; {len(inputs)} rows, {width} features, reason codes: 4")
    print(f"{'':44}{'ms/row':>8}{'speed-up':>10}")
    print(f"{'baseline: predict + shap.TreeExplainer/row':44}{baseline:8.3f}{1:10.2f}")
    print(f"{'forgeline predict, one row per call':44}{single:8.3f}{baseline / single:10.2f}")
    print(f"{'forgeline predict, all rows in one call':44}{batched:8.3f}{baseline / batched:10.2f}")
    print(f"target: under 5 ms per row -> {'met' if single < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
