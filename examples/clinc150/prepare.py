"""Turn ../shared/data/clinc150_data_full.json into the JSONL files forgeline.yaml reads.

CLINC150 (Larson et al., 2019): 150 intents plus out-of-scope queries labelled ``oos``. Train on
train+oos_train, select on val+oos_val, test on test+oos_test. The files are written to ``data/``
here (ignored by git: the data set is not copied into the project).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[1].parent / "shared" / "data" / "clinc150_data_full.json"
SPLITS = {
    "train": ("train", "oos_train"),
    "validation": ("val", "oos_val"),
    "test": ("test", "oos_test"),
}


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    if not source.is_file():
        sys.exit(f"no such file '{source}'; pass the path to clinc150_data_full.json")
    data = json.loads(source.read_text(encoding="utf-8"))
    out = HERE / "data"
    out.mkdir(exist_ok=True)
    for name, keys in SPLITS.items():
        rows = [{"text": text, "intent": intent} for key in keys for text, intent in data[key]]
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        print(f"{out / f'{name}.jsonl'}: {len(rows)} rows")


if __name__ == "__main__":
    main()
