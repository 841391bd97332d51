"""Text classification on CLINC150: the template's defaults against the tuned example config.

Both train on train + oos_train, choose on val + oos_val and are scored on test + oos_test
(``../shared/data/clinc150_data_full.json``), in one run:
- example: ``examples/clinc150/forgeline.yaml`` (5 epochs, batch 32, max_length 32, fallback
  threshold allowed to cost 0.2 points of in-scope accuracy);
- defaults: the ``text-classification`` template's training and fallback sections as
  ``forgeline init`` writes them (epochs and max_length decided from the data, the fallback's
  confidence score chosen on validation), with only the fallback label set to ``oos``.

Prints, per config and training seed, the epochs and max_length used, training seconds, and
validation and test in-scope accuracy and out-of-scope recall, and their means over the seeds;
then, for the defaults' model of the first seed, the out-of-scope recall each confidence score
(top probability, energy) reaches on validation and test at the threshold validation chooses
for it, at several in-scope accuracy budgets. Exits 1 unless the defaults' means match or beat
the example's on test in-scope accuracy and out-of-scope recall: two identical runs were seen
0.3 points of in-scope accuracy apart, as far as the two configs' single runs, so one run of
each cannot tell them apart.

    python benchmarks/text_defaults_bench.py [--seeds 42 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from forgeline.config import load_project
from forgeline.tasks.text_classification import TextClassifier
from forgeline.tasks.text_classification.data import LABEL, TEXT
from forgeline.tasks.text_classification.fallback import (
    SCORES,
    Fallback,
    choose_fallback,
    in_scope_accuracy_and_fallback_recall,
)

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT.parent / "shared" / "data" / "clinc150_data_full.json"
EXAMPLE = ROOT / "examples" / "clinc150" / "forgeline.yaml"
TEMPLATE = ROOT / "src" / "forgeline" / "templates" / "text-classification" / "forgeline.yaml"
SPLITS = {
    "train": ("train", "oos_train"),
    "validation": ("val", "oos_val"),
    "test": ("test", "oos_test"),
}
FALLBACK = "oos"


def write_splits(work: Path) -> dict[str, str]:
    data = json.loads(CLINC.read_text(encoding="utf-8"))
    paths = {}
    for split, keys in SPLITS.items():
        path = work / f"{split}.jsonl"
        rows = [{"text": text, "intent": intent} for key in keys for text, intent in data[key]]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        paths[split] = str(path)
    return paths


def project_config(source: Path, files: dict[str, str], work: Path, name: str, seed: int) -> Path:
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["name"] = name
    config["data"] = {**files, "text_column": "text", "label_column": "intent"}
    config["fallback"]["label"] = FALLBACK
    config["training"]["seed"] = seed
    for section in ("serve", "billing", "database"):  # the template's; nothing here serves
        config.pop(section, None)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def in_scope_and_recall(predicted: list[str], truth: list[str]) -> tuple[float, float]:
    guess, gold = np.array(predicted, dtype=object), np.array(truth, dtype=object)
    in_scope = gold != FALLBACK
    return (
        float((guess[in_scope] == gold[in_scope]).mean()),
        float((guess[~in_scope] == FALLBACK).mean()),
    )


def run(config: Path) -> tuple[TextClassifier, dict[str, Any]]:
    project = load_project(config)
    data = TextClassifier.prepare_data(project)
    started = time.perf_counter()
    model = TextClassifier.fit(project, data, lambda message: print("  " + message))
    seconds = time.perf_counter() - started
    metrics = model.training_metrics
    truth = list(data.test[LABEL])
    test = in_scope_and_recall(model.predicted_labels(model.logits(list(data.test[TEXT]))), truth)
    result = {
        "epochs": f"{metrics['epochs_run']:g}",
        "max_length": metrics["max_length"],
        "score": metrics["fallback_score"],
        "seconds": seconds,
        "validation": (
            metrics["validation_in_scope_accuracy"],
            metrics["validation_fallback_recall"],
        ),
        "test": test,
        "data": data,
    }
    return model, result


DROPS = (0.002, 0.005, 0.01)
"""The in-scope accuracy budgets (max_in_scope_accuracy_drop) the trade-off table shows."""


def tradeoffs(model: TextClassifier, data: Any) -> list[tuple[str, float, list[float]]]:
    """Per confidence score and accuracy budget: the threshold validation chooses, and the
    in-scope accuracy and out-of-scope recall it gives on validation and on test."""
    labels = model.labels
    index = labels.index(FALLBACK) if FALLBACK in labels else len(labels)

    def ids(frame: Any) -> np.ndarray:
        return np.array([labels.index(t) if t in labels else index for t in frame[LABEL]])

    splits = [(model.logits(list(f[TEXT])), ids(f)) for f in (data.validation, data.test)]
    rows: list[tuple[str, float, list[float]]] = []
    for score in SCORES:
        for drop in DROPS:
            chosen = choose_fallback(*splits[0], index, drop, (score,))
            measured: list[float] = []
            for logits, truth in splits:
                predicted = Fallback(FALLBACK, chosen.threshold, score).apply(logits, index)
                in_scope, recall = in_scope_accuracy_and_fallback_recall(predicted, truth, index)
                measured += [in_scope, recall or 0.0]
            rows.append((score, drop, measured))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    seeds = parser.parse_args().seeds
    if not CLINC.is_file():
        print(f"{CLINC} is absent: nothing to measure")
        return 0
    results: dict[str, list[dict[str, Any]]] = {"example": [], "defaults": []}
    table: list[tuple[str, float, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = write_splits(work)
        for seed in seeds:
            for name, source in (("example", EXAMPLE), ("defaults", TEMPLATE)):
                print(f"{name}, seed {seed}: training")
                config = project_config(source, files, work, f"{name}-{seed}", seed)
                model, result = run(config)
                results[name].append({**result, "seed": seed})
                if name == "defaults" and not table:
                    table = tradeoffs(model, result["data"])
    print(
        f"\n{'':10}{'seed':>5}{'epochs':>7}{'max_len':>8}{'score':>12}{'train s':>9}"
        f"{'val in-scope':>14}{'val oos rec':>13}{'test in-scope':>15}{'test oos rec':>14}"
    )
    means: dict[str, list[float]] = {}
    for name, runs in results.items():
        for r in runs:
            print(
                f"{name:10}{r['seed']:>5}{r['epochs']:>7}{r['max_length']:>8}{r['score']:>12}"
                f"{r['seconds']:>9.0f}{r['validation'][0]:>14.4f}{r['validation'][1]:>13.4f}"
                f"{r['test'][0]:>15.4f}{r['test'][1]:>14.4f}"
            )
        columns = [
            [r["seconds"] for r in runs],
            *([r[split][i] for r in runs] for split in ("validation", "test") for i in (0, 1)),
        ]
        means[name] = [statistics.fmean(column) for column in columns]
        seconds, *rates = means[name]
        print(
            f"{name + ' mean':<15}{'':>27}{seconds:>9.0f}"
            + "".join(f"{v:>{w}.4f}" for v, w in zip(rates, (14, 13, 15, 14), strict=True))
        )
    print(
        "\ndefaults' model: each confidence score and accuracy budget, threshold chosen on "
        f"validation (seed {seeds[0]})\n"
        f"{'score':<12}{'budget':>7}{'val in-scope':>14}{'val oos rec':>13}"
        f"{'test in-scope':>15}{'test oos rec':>14}"
    )
    for score, drop, measured in table:
        print(
            f"{score:<12}{drop:>7.3f}"
            + "".join(
                f"{value:>{width}.4f}"
                for value, width in zip(measured, (14, 13, 15, 14), strict=True)
            )
        )
    ours, theirs = means["defaults"], means["example"]
    print(f"training time: defaults {theirs[0] / ours[0]:.2f}x as fast as the example config")
    if ours[3] >= theirs[3] and ours[4] >= theirs[4]:
        print("PASS: the defaults' means match or beat the example config's on both")
        return 0
    print("FAIL: the defaults' means fall behind the example config's")
    return 1


if __name__ == "__main__":
    sys.exit(main())
