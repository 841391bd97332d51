"""A whole simulated federation: three silos behind their own ClientApps, the model registered
like any version, a refused silo, and a silo failing mid-round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dp_accounting
import pandas as pd
import pytest
from dp_accounting import rdp

from forgeline.config import load_project
from forgeline.errors import DataError
from forgeline.federated import logistic
from forgeline.federated.registration import FEDERATION_DIR
from forgeline.federated.simulation import simulate
from forgeline.registry import ModelRegistry
from tests.federated.conftest import federation_project


def test_simulation_registers_a_model_as_good_as_pooling(tmp_path: Path) -> None:
    project = federation_project(tmp_path)
    notices: list[str] = []
    result = simulate(project, notices.append)
    comparison = result.comparison
    assert list(comparison.table.index) == [
        "pooled",
        "federated",
        "alone: north",
        "alone: south",
        "alone: east",
    ]
    assert abs(comparison.auc("federated") - comparison.auc("pooled")) < 0.005
    assert comparison.auc("federated") > min(comparison.auc(r) for r in comparison.silo_alone_rows)
    assert len(result.outcome.rounds) == 12 and all(r["silos"] == 3 for r in result.outcome.rounds)
    # The same coefficients go to each silo and come back from each.
    assert result.outcome.rounds[0]["bytes_sent"] == result.outcome.rounds[0]["bytes_received"] > 0
    assert any("3 silos agree on 4 feature columns" in n for n in notices)
    loaded = ModelRegistry(project.registry_dir).load("loans")  # the manifest checks pass
    assert f"{FEDERATION_DIR}/report.html" in loaded.version.manifest["files"]
    assert loaded.version.manifest["data_fingerprint"]["federated"]["silos"].keys() == {
        "north",
        "south",
        "east",
    }
    card = (loaded.version.path / "MODEL_CARD.md").read_text()
    assert "Federated training**: fedavg, 12 rounds" in card
    row = {"income": 2500.0, "utilization": 0.9, "late_payments": 3, "home": "rent"}
    prediction = loaded.model.predict([row])[0]  # type: ignore[attr-defined]
    assert prediction["label"] == "yes" and prediction["reason_codes"]


def test_a_silo_with_another_table_is_refused_by_name(tmp_path: Path) -> None:
    project = federation_project(tmp_path)
    east = tmp_path / "data" / "east.csv"
    pd.read_csv(east).drop(columns="home").to_csv(east, index=False)
    with pytest.raises(
        DataError, match=r"2 silos agree on the table, 3 needed.*'east'.*lacks 'home'"
    ):
        simulate(project, lambda _: None)
    project = federation_project(tmp_path, extra="  min_silos: 2\n")
    pd.read_csv(east).drop(columns="home").to_csv(east, index=False)
    notices: list[str] = []
    result = simulate(project, notices.append)
    assert list(result.outcome.refused) == ["east"]
    assert any(n.startswith("refused: silo 'east' has other feature columns") for n in notices)
    assert set(result.outcome.silos) == {"north", "south"}


def test_a_silo_failing_mid_round_is_left_out_of_that_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = federation_project(tmp_path, extra="  min_silos: 2\n")
    real = logistic.local_steps
    calls = {"east": 0}

    def flaky(theta: Any, design: Any, schema: Any, silo: Any, **kwargs: Any) -> Any:
        if silo.name == "east":
            calls["east"] += 1
            if calls["east"] == 2:
                raise ConnectionResetError("east lost its connection")
        return real(theta, design, schema, silo, **kwargs)

    monkeypatch.setattr(logistic, "local_steps", flaky)
    result = simulate(project, lambda _: None)
    rounds = result.outcome.rounds
    assert [r["silos"] for r in rounds[:3]] == [3, 2, 3]
    assert rounds[1]["failures"] == 1
    assert abs(result.comparison.auc("federated") - result.comparison.auc("pooled")) < 0.005


def test_differential_privacy_spends_the_budget_an_rdp_accountant_computes(
    tmp_path: Path,
) -> None:
    extra = "  privacy:\n    dp: {noise_multiplier: 1.0, clipping_norm: 0.5, delta: 1.0e-5}\n"
    project = federation_project(tmp_path, extra=extra)
    result = simulate(project, lambda _: None)
    spent = [r["epsilon"] for r in result.outcome.rounds]
    assert spent == sorted(spent) and len(spent) == 12
    # 12 Gaussian releases at noise multiplier 1 (every silo in every round: no amplification).
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.0), 12))
    assert spent[-1] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-6)
    # ... below the textbook bound min_a (12 a / 2 + log(1/delta) / (a - 1)) = 22.62.
    assert 20 < spent[-1] < 22.62
    card = (result.version.path / "MODEL_CARD.md").read_text()
    assert f"epsilon {spent[-1]:.3g} at delta 1e-05" in card
    assert "computed from the silos' aggregates without noise" in card
    # The noise comes from the OS, not a stored seed: a second run draws other noise.
    again = simulate(federation_project(tmp_path / "again", extra=extra), lambda _: None)
    assert list(again.outcome.model["arrays"].to_numpy_ndarrays()[0]) != list(
        result.outcome.model["arrays"].to_numpy_ndarrays()[0]
    )


def test_fedprox_with_several_local_epochs_stays_near_the_pooled_model(tmp_path: Path) -> None:
    project = federation_project(
        tmp_path, extra="  strategy: fedprox\n  local_epochs: 5\n  proximal_mu: 0.1\n"
    )
    result = simulate(project, lambda _: None)
    assert abs(result.comparison.auc("federated") - result.comparison.auc("pooled")) < 0.005


def test_a_silo_too_small_to_share_aggregates_is_refused(tmp_path: Path) -> None:
    project = federation_project(tmp_path, extra="  min_silos: 2\n")
    config = tmp_path / "forgeline.yaml"
    # Explicit kinds: in a few rows, distinct whole-number incomes would read as identifiers.
    config.write_text(
        config.read_text().replace(
            "  target: default\n",
            "  target: default\n  columns: {income: numeric, late_payments: numeric}\n",
        )
    )
    project = load_project(config)
    east = tmp_path / "data" / "east.csv"
    pd.read_csv(east).head(40).to_csv(east, index=False)
    result = simulate(project, lambda _: None)
    assert "has 32 training rows; a silo needs 50" in result.outcome.refused["east"]
    assert set(result.outcome.silos) == {"north", "south"}


def test_gradient_boosting_cycles_through_the_silos(tmp_path: Path) -> None:
    extra = "  strategy: cyclic\n  local_rounds: 10\n"
    project = federation_project(tmp_path, extra=extra, model="lightgbm")
    notices: list[str] = []
    result = simulate(project, notices.append)
    assert result.outcome.estimator.kind == "lightgbm"
    assert any(n.startswith("cycle 1/12: validation ROC-AUC") for n in notices)
    # Every silo grows trees each cycle, in proportion to its rows (equal here).
    assert all(r["silos"] == 3 for r in result.outcome.rounds)
    assert abs(result.comparison.auc("federated") - result.comparison.auc("pooled")) < 0.02
    loaded = ModelRegistry(project.registry_dir).load("loans")
    assert loaded.version.manifest["base_model"] == "lightgbm (federated, cyclic)"
    report = (loaded.version.path / FEDERATION_DIR / "report.html").read_text()
    assert "split thresholds are feature values" in report
