"""Token classification on WNUT-17: Forgeline's default config against a plain Hugging Face
``Trainer`` run of the same encoder for the same number of epochs, measured in one run.

The baseline is what the Hugging Face token-classification tutorial writes: the file's tokens
as words (``is_split_into_words``), the label on each word's first sub-token, dynamic padding,
learning rate 2e-5, batch 16, weight decay 0.01, random batches, evaluation every epoch, then
``Trainer.predict`` on the test set. Both are scored by seqeval in strict IOB2 mode on the test
file's own tokens.

Prints test entity F1 per type and micro for both (and dev micro F1: which settings generalise
is decided on dev, never on test), Forgeline's int8 model's micro F1, and
training and prediction throughput (sentences per second) with the ratio Forgeline / baseline. Exits 1 if Forgeline's micro F1
is below the baseline's or either throughput ratio is below 1.

    python benchmarks/ner_bench.py [--epochs N]   # N defaults to the config's (default) epochs
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WNUT = ROOT.parent / "shared" / "data" / "ner-en-wnut17"
EXAMPLE = ROOT / "examples" / "wnut17" / "forgeline.yaml"


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        parts = line.split()
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def forgeline_run(epochs: float | None) -> dict[str, Any]:
    from forgeline.config import load_project
    from forgeline.tasks.token_classification import TokenClassifier

    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "forgeline.yaml"
        text = EXAMPLE.read_text().replace("../../../shared/data/ner-en-wnut17", str(WNUT))
        if epochs is not None:
            text += f"training: {{epochs: {epochs}}}\n"
        config.write_text(text)
        project = load_project(config)
        data = TokenClassifier.prepare_data(project)
        started = time.perf_counter()
        model = TokenClassifier.fit(project, data, print)
        train_seconds = time.perf_counter() - started
        texts = list(data.test["text"])
        started = time.perf_counter()
        model.predict(texts)
        predict_seconds = time.perf_counter() - started
        evaluation = model.evaluate(data.test)
        dev_f1 = model.evaluate(data.validation).metrics["entity_f1"]
        int8, _ = model.compress(project, data, print)
        int8_f1 = int8.evaluate(data.test).metrics["entity_f1"]
    metrics = evaluation.metrics
    return {
        "f1": metrics["entity_f1"],
        "int8_f1": int8_f1,
        "dev_f1": dev_f1,
        "per_type": {name: scores["f1"] for name, scores in metrics["per_type"].items()},
        "epochs": float(model.training_metrics["epochs_run"]),
        "train_seconds": train_seconds,
        "train_rate": len(data.train) * model.training_metrics["epochs_run"] / train_seconds,
        "predict_rate": len(texts) / predict_seconds,
        "configured_epochs": project.config.training.epochs,  # type: ignore[union-attr]
    }


def baseline_run(epochs: float) -> dict[str, Any]:
    import torch
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from forgeline.base_models import resolve_base_model

    hf_logging.set_verbosity_error()
    train, dev, test = (read_conll(WNUT / f"{n}.conll") for n in ("train", "dev", "test"))
    names = sorted({tag for _, tags in train for tag in tags})
    ids = {tag: i for i, tag in enumerate(names)}
    base = resolve_base_model("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForTokenClassification.from_pretrained(
        base, num_labels=len(names), id2label=dict(enumerate(names)), label2id=ids
    )

    class Sentences(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __init__(self, sentences: list[tuple[list[str], list[str]]]) -> None:
            self.items = []
            for tokens, tags in sentences:
                encoded = tokenizer(tokens, is_split_into_words=True, truncation=True)
                labels, previous = [], None
                for word in encoded.word_ids():
                    first = word is not None and word != previous
                    labels.append(ids.get(tags[word], 0) if first and word is not None else -100)
                    previous = word
                self.items.append({**encoded, "labels": labels})

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> dict[str, Any]:
            return self.items[index]

    work = tempfile.mkdtemp()
    try:
        args = TrainingArguments(
            output_dir=work,
            learning_rate=2e-5,
            per_device_train_batch_size=16,
            per_device_eval_batch_size=16,
            num_train_epochs=epochs,
            weight_decay=0.01,
            eval_strategy="epoch",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=42,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=Sentences(train),
            eval_dataset=Sentences(dev),
            data_collator=DataCollatorForTokenClassification(tokenizer),
        )
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        test_set = Sentences(test)
        started = time.perf_counter()
        output = trainer.predict(test_set)
        predict_seconds = time.perf_counter() - started
        dev_set = Sentences(dev)
        dev_output = trainer.predict(dev_set)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def scored(
        sentences: list[tuple[list[str], list[str]]], items: Sentences, logits: Any
    ) -> dict[str, Any]:
        gold, predicted = [], []
        for (_, tags), item, row in zip(sentences, items.items, logits.argmax(-1), strict=True):
            kept = [i for i, label in enumerate(item["labels"]) if label != -100]
            guess = [names[row[i]] for i in kept]
            guess += ["O"] * (len(tags) - len(guess))  # words cut by truncation: nothing found
            gold.append(tags)
            predicted.append(guess)
        report: dict[str, Any] = classification_report(
            gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
        )
        return report

    report = scored(test, test_set, np.asarray(output.predictions))
    dev_report = scored(dev, dev_set, np.asarray(dev_output.predictions))
    return {
        "f1": report["micro avg"]["f1-score"],
        "dev_f1": dev_report["micro avg"]["f1-score"],
        "per_type": {
            name: scores["f1-score"] for name, scores in report.items() if " avg" not in name
        },
        "epochs": epochs,
        "train_seconds": train_seconds,
        "train_rate": len(train) * epochs / train_seconds,
        "predict_rate": len(test) / predict_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=None)
    args = parser.parse_args()
    if not WNUT.is_dir():
        print(f"{WNUT} is absent: nothing to measure")
        return 0
    ours = forgeline_run(args.epochs)
    theirs = baseline_run(args.epochs or ours["configured_epochs"])
    print(
        f"\nWNUT-17 test, entity F1 (strict IOB2); epochs: Forgeline {ours['epochs']:g} run of "
        f"{ours['configured_epochs']:g} (early stopping), baseline {theirs['epochs']:g}"
    )
    print(f"{'type':<16}{'Forgeline':>10}{'baseline':>10}")
    for name in sorted(set(ours["per_type"]) | set(theirs["per_type"])):
        print(
            f"{name:<16}{ours['per_type'].get(name, 0):>10.4f}"
            f"{theirs['per_type'].get(name, 0):>10.4f}"
        )
    print(f"{'micro':<16}{ours['f1']:>10.4f}{theirs['f1']:>10.4f}")
    print(f"{'dev micro':<16}{ours['dev_f1']:>10.4f}{theirs['dev_f1']:>10.4f}")
    print(
        f"Forgeline int8 (forgeline compress): micro {ours['int8_f1']:.4f}, "
        f"{100 * (ours['int8_f1'] - ours['f1']):+.2f} points"
    )
    train_ratio = ours["train_rate"] / theirs["train_rate"]
    predict_ratio = ours["predict_rate"] / theirs["predict_rate"]
    print(
        f"\ntraining: {ours['train_rate']:.1f} vs {theirs['train_rate']:.1f} sentences/s "
        f"(x{train_ratio:.2f}); wall {ours['train_seconds']:.0f} s vs {theirs['train_seconds']:.0f} s"
    )
    print(
        f"prediction: {ours['predict_rate']:.1f} vs {theirs['predict_rate']:.1f} sentences/s "
        f"(x{predict_ratio:.2f})"
    )
    failed = ours["f1"] < theirs["f1"] or train_ratio < 1 or predict_ratio < 1
    print("FAIL" if failed else "PASS: Forgeline matches or beats the baseline on F1 and speed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
