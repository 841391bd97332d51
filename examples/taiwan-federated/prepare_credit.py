"""Write data/credit.csv from ../shared/data/taiwan_credit_default.csv for the federated example.

The federation's silos are the education levels (column X3: 1 graduate school, 2 university,
3 high school, 4 others). The codes 0, 5 and 6 are undocumented; they are folded into 4
("others"), which leaves four silos that differ in who they lend to (non-IID). The file is
written to ``data/`` here (ignored by git: the data set is not copied into the project), or to
the folder given second.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[1].parent / "shared" / "data" / "taiwan_credit_default.csv"
UNDOCUMENTED_EDUCATION = {"0", "5", "6"}


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    if not source.is_file():
        sys.exit(f"no such file '{source}'; pass the path to taiwan_credit_default.csv")
    with source.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        if row["X3"] in UNDOCUMENTED_EDUCATION:
            row["X3"] = "4"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "data"
    out.mkdir(exist_ok=True)
    with (out / "credit.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out / 'credit.csv'} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
