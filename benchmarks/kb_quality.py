"""Knowledge-base matching quality on the COVID FAQ (the knowledge-qa issue's quality bar),
with ``examples/faq-covid``'s config (Forgeline's defaults), cross-validated so that no
question is ever scored by a model that trained or chose a setting on it.

The 241 labelled questions are cut into 5 seeded folds. For each fold, the other four are the
project's labelled questions (85% train: fine-tuning the encoder, 15% validation: weights and
threshold) and the fold is its test set; recall@1/3/10 and MRR are pooled over all 241 test
predictions. The same folds are run with the encoder off the shelf (``encoder.fine_tune:
false``) as the baseline. Exits 1 unless the defaults reach recall@1 >= 0.80 and recall@3 >=
0.95.

    python benchmarks/kb_quality.py [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from forgeline.config import load_project
from forgeline.tasks.knowledge_qa import KnowledgeQA

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "faq-covid" / "forgeline.yaml"
VALIDATION_SHARE = 0.15


def run_fold(
    config: dict[str, object], folder: Path, questions: list[dict[str, str]], test: set[int]
) -> tuple[dict[str, float], float]:
    rng = np.random.default_rng(0)
    rest = [i for i in range(len(questions)) if i not in test]
    validation = set(rng.permutation(rest)[: round(len(rest) * VALIDATION_SHARE)].tolist())
    parts = {
        "train": [questions[i] for i in rest if i not in validation],
        "validation": [questions[i] for i in sorted(validation)],
        "test": [questions[i] for i in sorted(test)],
    }
    data = dict(config["data"])  # type: ignore[call-overload]
    for role, rows in parts.items():
        path = folder / f"{role}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        data[role] = str(path)
    (folder / "forgeline.yaml").write_text(yaml.safe_dump({**config, "data": data}), "utf-8")
    project = load_project(folder / "forgeline.yaml")
    splits = KnowledgeQA.prepare_data(project)
    started = time.perf_counter()
    model = KnowledgeQA.fit(project, splits, lambda message: None)
    seconds = time.perf_counter() - started
    return model.evaluate(splits.test).metrics, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data = config["data"]
    for key in ("entries", "train"):
        data[key] = str((EXAMPLE.parent / data[key]).resolve())
    if not Path(data["train"]).is_file():
        print(f"{data['train']} is absent: nothing to measure")
        return 0
    questions = [
        json.loads(line) for line in Path(data["train"]).read_text("utf-8").splitlines() if line
    ]
    folds = np.random.default_rng(42).permutation(len(questions)) % args.folds
    results: dict[str, list[tuple[dict[str, float], float]]] = {"off the shelf": [], "defaults": []}
    for fold in range(args.folds):
        test = set(np.flatnonzero(folds == fold).tolist())
        for name, encoder in (("off the shelf", {"fine_tune": False}), ("defaults", {})):
            run_config = {**config, "encoder": encoder} if encoder else config
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(run_fold(run_config, Path(tmp), questions, test))
        print(f"fold {fold + 1}/{args.folds} done", flush=True)
    print(f"\n{len(questions)} questions, {args.folds}-fold cross-validation")
    print(f"{'':16}{'recall@1':>10}{'recall@3':>10}{'recall@10':>11}{'MRR':>8}{'train s':>9}")
    pooled: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        sizes = np.array([m["questions"] for m, _ in runs])
        pooled[name] = {
            key: float(np.average([m[key] for m, _ in runs], weights=sizes))
            for key in ("recall_at_1", "recall_at_3", "recall_at_10", "mrr")
        }
        seconds = float(np.mean([s for _, s in runs]))
        row = pooled[name]
        print(
            f"{name:16}{row['recall_at_1']:>10.3f}{row['recall_at_3']:>10.3f}"
            f"{row['recall_at_10']:>11.3f}{row['mrr']:>8.3f}{seconds:>9.0f}"
        )
    checks = {
        "recall@1 >= 0.80": pooled["defaults"]["recall_at_1"] >= 0.80,
        "recall@3 >= 0.95": pooled["defaults"]["recall_at_3"] >= 0.95,
    }
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
