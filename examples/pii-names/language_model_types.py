"""Micro entity F1 over the types a pattern cannot find (PERSON, GPE, STREET_ADDRESS,
ORGANIZATION), from the latest evaluation: run after `forgeline evaluate`."""

import json
import sys
from pathlib import Path

TYPES = ("PERSON", "GPE", "STREET_ADDRESS", "ORGANIZATION")

models = Path(__file__).resolve().parent / "models" / "pii-names"
version = (models / "LATEST").read_text().strip()
per_type = json.loads((models / version / "evaluation" / "metrics.json").read_text())["per_type"]
for name, scores in sorted(per_type.items()):
    print(
        f"{name:<20} P {scores['precision']:.4f}  R {scores['recall']:.4f}  "
        f"F1 {scores['f1']:.4f}  gold {scores['support']}"
    )
gold = sum(per_type[t]["support"] for t in TYPES)
predicted = sum(per_type[t]["predicted"] for t in TYPES)
correct = sum(per_type[t]["correct"] for t in TYPES)
precision, recall = correct / max(predicted, 1), correct / max(gold, 1)
f1 = 2 * precision * recall / max(precision + recall, 1e-12)
print(
    f"\n{version}: micro F1 over {', '.join(TYPES)}: {f1:.4f} "
    f"(precision {precision:.4f}, recall {recall:.4f}, {gold} gold entities)"
)
sys.exit(0 if f1 >= 0.90 else 1)
