"""Generate the bundled example data of the tabular-classification template.

Synthetic credit applications with realistic relations: default risk rises with credit
utilisation, recent late payments and a previous default, and falls with income, age and
years in employment. Sex has no direct effect, but income differs a little by sex, so the
fairness report has something to show. Some cells are blank, some limits are written in
spreadsheet notation (5.00E+05), and each row has an applicant id, as real exports do.
Run from the repository root; it rewrites the template's data/applications.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 3000


def main() -> None:
    rng = np.random.default_rng(2026)
    sex = rng.choice(["female", "male"], size=ROWS)
    age = rng.integers(21, 71, size=ROWS)
    employment_years = np.minimum(rng.gamma(2.0, 3.0, size=ROWS), age - 18).round(1)
    income = np.round(
        rng.lognormal(8.0 + 0.08 * (sex == "male") + 0.004 * (age - 21), 0.45, size=ROWS), -1
    )
    home = rng.choice(["rent", "mortgage", "own"], p=[0.45, 0.4, 0.15], size=ROWS)
    purpose = rng.choice(["card", "car", "home_improvement", "education", "other"], size=ROWS)
    limit = np.round(np.clip(income * rng.uniform(2, 8, size=ROWS), 1000, 500_000), -2)
    utilisation = np.clip(rng.beta(2, 3, size=ROWS) * 1.3, 0, 1.25).round(3)
    late = rng.poisson(0.4 + 1.2 * utilisation, size=ROWS)
    previous_default = rng.random(ROWS) < 0.07
    logit = (
        -2.4
        + 2.4 * (utilisation - 0.45)
        + 0.45 * late
        + 1.1 * previous_default
        - 0.7 * np.log(income / 3000)
        - 0.015 * (age - 40)
        - 0.04 * employment_years
        + 0.3 * (home == "rent")
        + 0.2 * (purpose == "other")
        + rng.normal(0, 0.3, size=ROWS)
    )
    default = rng.random(ROWS) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "applicant_id": [f"A{100000 + i}" for i in range(ROWS)],
            "limit_bal": limit.astype(object),
            "age": age,
            "sex": sex,
            "income": income.astype(object),
            "employment_years": employment_years,
            "home_ownership": home,
            "purpose": purpose,
            "utilization": utilisation,
            "late_payments_12m": late,
            "previous_default": np.where(previous_default, "yes", "no"),
            "default": np.where(default, "yes", "no"),
        }
    )
    # Real exports have gaps and spreadsheet-formatted numbers.
    frame.loc[rng.random(ROWS) < 0.04, "income"] = ""
    spreadsheet = rng.random(ROWS) < 0.05
    frame.loc[spreadsheet, "limit_bal"] = [f"{v:.2E}" for v in limit[spreadsheet]]
    target = Path("src/forgeline/templates/tabular-classification/data/applications.csv")
    frame.to_csv(target, index=False)
    print(f"wrote {len(frame)} rows to {target}; default rate {default.mean():.1%}")


if __name__ == "__main__":
    main()
