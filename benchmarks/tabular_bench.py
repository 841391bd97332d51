"""Tabular risk scoring on the Taiwan credit default data: Forgeline's example config against
three anchors a data scientist would try first, on the same splits and the same inputs.

For each split seed (42, 1, 2, 3, 4) the example config's own split (train / validation / test)
is made once, and every contender trains on its train rows, may use its validation rows (early
stopping, calibration, model choice) and is scored on its test rows:
- Forgeline: ``examples/taiwan-credit`` as a user runs it (its derived columns, calibration);
- LightGBM: library defaults, up to 1000 rounds with early stopping (50) on validation AUC;
- CatBoost: library defaults (1000 iterations) with early stopping (50) on validation AUC;
- FLAML AutoML: 90 s per split, ROC-AUC on the validation rows as its objective.
Every anchor gets the columns a Forgeline request sends (the raw inputs: the audited columns,
sex, education and marriage, are excluded for everyone; the derived ones are Forgeline's own).

Prints test ROC-AUC per seed and contender, the means and the training seconds. Exits 1 unless
Forgeline's test ROC-AUC is above every anchor's on every seed: a regression shows here first.

    pip install -e ".[bench]"    # catboost, flaml
    python benchmarks/tabular_bench.py [--seeds 42 1 2 3 4] [--automl-seconds 90]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from forgeline.config import load_project
from forgeline.tasks.base import DataSplits
from forgeline.tasks.tabular import TabularClassifier
from forgeline.tasks.tabular.data import EVENT

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "taiwan-credit" / "forgeline.yaml"
TAIWAN = ROOT.parent / "shared" / "data" / "taiwan_credit_default.csv"
EARLY_STOPPING_ROUNDS = 50

Split = tuple[pd.DataFrame, np.ndarray]
Anchor = Callable[[Split, Split, pd.DataFrame, int], np.ndarray]
"""(train, validation, test inputs, seed) -> the test rows' scores."""


def example_project(seed: int, work: Path) -> Path:
    """The example config with the shared data's absolute path and the given split seed."""
    text = EXAMPLE.read_text().replace(
        "../../../shared/data/taiwan_credit_default.csv", str(TAIWAN)
    )
    marker = "seed: 42}"
    if marker not in text:
        raise SystemExit(f"{EXAMPLE}: expected 'split: {{..., {marker}' to set the seed")
    config = work / f"seed-{seed}.yaml"
    config.write_text(text.replace(marker, f"seed: {seed}}}"))
    return config


def lightgbm_defaults(train: Split, validation: Split, test: pd.DataFrame, seed: int) -> np.ndarray:
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=1000, random_state=seed, verbose=-1)
    model.fit(
        *train,
        eval_X=(validation[0],),
        eval_y=(validation[1],),
        eval_metric="auc",
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return np.asarray(model.predict_proba(test))[:, 1]


def catboost_defaults(train: Split, validation: Split, test: pd.DataFrame, seed: int) -> np.ndarray:
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(
        eval_metric="AUC",
        random_seed=seed,
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose=False,
        allow_writing_files=False,
    )
    model.fit(*train, eval_set=validation, use_best_model=True)
    return np.asarray(model.predict_proba(test)[:, 1])


def flaml_automl(seconds: float) -> Anchor:
    def run(train: Split, validation: Split, test: pd.DataFrame, seed: int) -> np.ndarray:
        from flaml.automl import AutoML

        automl = AutoML()
        with warnings.catch_warnings():  # thousands of scikit-learn and pandas notices
            warnings.simplefilter("ignore")
            automl.fit(
                *train,
                X_val=validation[0],
                y_val=validation[1],
                task="classification",
                metric="roc_auc",
                time_budget=seconds,
                seed=seed,
                verbose=0,
            )
        return np.asarray(automl.predict_proba(test)[:, 1])

    return run


def one_seed(seed: int, anchors: dict[str, Anchor], work: Path) -> dict[str, tuple[float, float]]:
    """Test ROC-AUC and training seconds per contender on the split of ``seed``."""
    project = load_project(example_project(seed, work))
    data: DataSplits = TabularClassifier.prepare_data(project)
    started = time.perf_counter()
    model = TabularClassifier.fit(project, data, lambda _: None)
    seconds = time.perf_counter() - started
    results = {"Forgeline": (float(model.evaluate(data.test).metrics["roc_auc"]), seconds)}

    inputs = [column.name for column in model.settings.inputs]

    def split(frame: pd.DataFrame) -> Split:
        return frame[inputs].astype(float), frame[EVENT].to_numpy().astype(int)

    train, validation, (test, events) = split(data.train), split(data.validation), split(data.test)
    for name, anchor in anchors.items():
        started = time.perf_counter()
        scores = anchor(train, validation, test, seed)
        results[name] = (float(roc_auc_score(events, scores)), time.perf_counter() - started)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument("--automl-seconds", type=float, default=90)
    args = parser.parse_args()
    if not TAIWAN.is_file():
        print(f"{TAIWAN} is absent: nothing to measure")
        return 0
    anchors: dict[str, Anchor] = {
        "LightGBM": lightgbm_defaults,
        "CatBoost": catboost_defaults,
        f"FLAML {args.automl_seconds:g}s": flaml_automl(args.automl_seconds),
    }
    names = ["Forgeline", *anchors]
    auc: dict[str, list[float]] = {name: [] for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    print(f"{'seed':<6}" + "".join(f"{name:>14}" for name in names) + "   (test ROC-AUC)")
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            results = one_seed(seed, anchors, Path(work))
            for name, (score, took) in results.items():
                auc[name].append(score)
                seconds[name].append(took)
            print(
                f"{seed:<6}" + "".join(f"{results[name][0]:>14.4f}" for name in names), flush=True
            )
    print(f"{'mean':<6}" + "".join(f"{np.mean(auc[name]):>14.4f}" for name in names))
    print(f"{'train s':<6}" + "".join(f"{np.mean(seconds[name]):>14.1f}" for name in names))
    behind = [
        f"seed {seed}: {name} {auc[name][i]:.4f} >= Forgeline {auc['Forgeline'][i]:.4f}"
        for i, seed in enumerate(args.seeds)
        for name in anchors
        if auc[name][i] >= auc["Forgeline"][i]
    ]
    if behind:
        print("FAIL: Forgeline is not ahead on every seed:\n  " + "\n  ".join(behind))
        return 1
    print("PASS: Forgeline is ahead of every anchor on every seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
