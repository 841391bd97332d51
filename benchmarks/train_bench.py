"""Training and prediction throughput of the text classifier, against plain baselines.

Measured in one run on this machine:
- training: Forgeline's `fit` (length-grouped batches, dynamic padding) against a plain Hugging
  Face `Trainer` on the same model and data (random batches padded to max_length), one epoch;
- prediction: Forgeline's batched, length-sorted `predict` against a `transformers.pipeline`
  called once per text, as a user would write it without Forgeline.

Uses CLINC150 texts from ../shared/data when present, else the bundled example data.

    python benchmarks/train_bench.py [--train-examples 3000] [--predict-examples 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import pandas as pd

from forgeline.config import load_project
from forgeline.config.load import Project

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT.parent / "shared" / "data" / "clinc150_data_full.json"
TEMPLATE = ROOT / "src/forgeline/templates/text-classification/data/train.csv"


def load_rows(limit: int, seed: int = 0) -> tuple[list[tuple[str, str]], str]:
    if CLINC.is_file():
        data = json.loads(CLINC.read_text())
        rows, source = [(t, label) for t, label in data["train"]], "CLINC150 train"
    else:
        frame = pd.read_csv(TEMPLATE)
        rows, source = list(zip(frame["text"], frame["label"], strict=True)), "bundled example"
    random.Random(seed).shuffle(rows)
    while len(rows) < limit:
        rows = rows + rows
    return rows[:limit], source


def make_project(directory: Path, rows: list[tuple[str, str]], max_length: int) -> Project:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(directory / "train.csv", index=False)
    (directory / "forgeline.yaml").write_text(
        "name: bench\ntask: text-classification\n"
        "data: {train: train.csv, split: {validation: 0.05, test: 0.05}}\n"
        f"training: {{epochs: 1, batch_size: 32, max_length: {max_length}, early_stopping_patience: 1}}\n"
    )
    return load_project(directory / "forgeline.yaml")


def plain_trainer_seconds(rows: list[tuple[str, str]], max_length: int) -> float:
    """What a user writes without Forgeline: Trainer, random batches, fixed-length padding."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from forgeline.base_models import resolve_base_model

    hf_logging.set_verbosity_error()
    base = resolve_base_model("minilm-l6")
    labels = sorted({label for _, label in rows})
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    encoded = tokenizer(
        [t for t, _ in rows], truncation=True, max_length=max_length, padding="max_length"
    )
    ids = {label: i for i, label in enumerate(labels)}

    class Texts(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, object]:
            return {k: v[i] for k, v in encoded.items()} | {"labels": ids[rows[i][1]]}

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            num_train_epochs=1,
            per_device_train_batch_size=32,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        started = time.perf_counter()
        trainer = Trainer(model=model, args=args, train_dataset=Texts())
        trainer.remove_callback(PrinterCallback)  # no log dictionaries in the table
        trainer.train()
        return time.perf_counter() - started


def pipeline_seconds(model_dir: Path, texts: list[str]) -> float:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(model_dir), device="cpu")
    started = time.perf_counter()
    for text in texts:
        classify(text)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-examples", type=int, default=3000)
    parser.add_argument("--predict-examples", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()

    from forgeline.tasks.text_classification import TextClassifier

    rows, source = load_rows(args.train_examples)
    with tempfile.TemporaryDirectory() as work:
        project = make_project(Path(work), rows, args.max_length)
        data = TextClassifier.prepare_data(project)
        started = time.perf_counter()
        model = TextClassifier.fit(project, data, lambda _: None)
        forgeline_train = time.perf_counter() - started
        baseline_train = plain_trainer_seconds(
            list(zip(data.train["text"], data.train["label"], strict=True)), args.max_length
        )

        texts = [t for t, _ in load_rows(args.predict_examples, seed=1)[0]]
        started = time.perf_counter()
        model.predict(texts)
        forgeline_predict = time.perf_counter() - started
        saved = Path(work) / "saved"
        model.save(saved)
        baseline_predict = pipeline_seconds(saved, texts)

    n_train = len(data.train)
    print(f"data: {source}; {n_train} training examples (1 epoch), {len(texts)} prediction texts")
    print(f"{'':34}{'examples/s':>12}{'ratio':>8}")
    print(f"{'train  plain Trainer (baseline)':34}{n_train / baseline_train:12.1f}{1:8.2f}")
    print(
        f"{'train  forgeline fit':34}{n_train / forgeline_train:12.1f}{baseline_train / forgeline_train:8.2f}"
    )
    print(
        f"{'predict pipeline per text (baseline)':34}{len(texts) / baseline_predict:12.1f}{1:8.2f}"
    )
    print(
        f"{'predict forgeline batched':34}{len(texts) / forgeline_predict:12.1f}{baseline_predict / forgeline_predict:8.2f}"
    )
    print("forgeline fit includes a validation pass per epoch and the fallback/metrics pass.")


if __name__ == "__main__":
    main()
