"""Registering a federation's model as an ordinary version of the project's model: the tabular
task's logistic model, its manifest and card saying how it was trained, and the federation's
report beside it (hashed in the manifest like the model's files)."""

from __future__ import annotations

from typing import Any

from forgeline.config import Project
from forgeline.config.federated import FederatedConfig
from forgeline.evaluate import metrics_json
from forgeline.evaluate.report import render_report
from forgeline.federated.comparison import Comparison
from forgeline.federated.report import epsilon, federation_evaluation
from forgeline.federated.server import FederationOutcome, TrainingPlan
from forgeline.federated.silos import federation_config
from forgeline.registry import ModelRegistry
from forgeline.registry.store import ModelVersion
from forgeline.tasks.tabular.calibration import Calibrator
from forgeline.tasks.tabular.model import Scorer, TabularClassifier
from forgeline.tasks.tabular.settings import TabularSettings

FEDERATION_DIR = "federation"
"""Beside a federated version's files: the federation's report.html and metrics.json."""


def plan_for(project: Project, federated: FederatedConfig) -> TrainingPlan:
    config, _ = federation_config(project)
    threshold = config.decision.threshold
    return TrainingPlan(
        federated=federated,
        kind=config.model.kind,
        lightgbm=config.model.lightgbm,
        seed=config.model.seed,
        balanced=config.model.class_weight == "balanced",
        platt=config.model.calibration != "none",
        threshold=None if threshold == "auto" else float(threshold),
    )


def federated_model(project: Project, outcome: FederationOutcome) -> TabularClassifier:
    """The outcome as the tabular task's model: served, explained and evaluated unchanged."""
    config, federated = federation_config(project)
    estimator = outcome.estimator
    calibrator = (
        Calibrator("platt", {"platt": list(outcome.platt)})
        if outcome.platt is not None
        else Calibrator("none", {})
    )
    settings = TabularSettings.from_config(
        config, outcome.schema.columns, outcome.schema.classes, outcome.threshold
    )
    metrics: dict[str, Any] = {
        "train_examples": sum(outcome.silos.values()),
        "federated_silos": len(outcome.silos),
        "federated_strategy": federated.strategy,
        "federated_rounds": federated.rounds,
        "federated_local_epochs": federated.local_epochs,
        f"{estimator.kind}_validation_roc_auc": outcome.validation_roc_auc,
        f"{estimator.kind}_validation_ks": outcome.validation_ks,
        f"{estimator.kind}_calibration": calibrator.method,
        "decision_threshold": outcome.threshold,
    }
    return TabularClassifier(settings, Scorer(estimator, calibrator), None, metrics)


def _with_federation(
    fingerprint: dict[str, Any],
    federated: FederatedConfig,
    outcome: FederationOutcome,
) -> dict[str, Any]:
    """The data's fingerprint with how the federation used it (for the manifest and card)."""
    fingerprint = dict(fingerprint)
    fingerprint["federated"] = {
        "strategy": federated.strategy,
        "rounds": federated.rounds,
        "local_epochs": federated.local_epochs,
        "silos": dict(outcome.silos),
        "refused": sorted(outcome.refused),
    }
    dp = federated.privacy.dp
    if dp is not None:
        fingerprint["federated"]["dp"] = {**dp.model_dump(), "epsilon": epsilon(outcome)}
    return fingerprint


def register(
    project: Project,
    federated: FederatedConfig,
    outcome: FederationOutcome,
    comparison: Comparison | None,
    fingerprint: dict[str, Any],
) -> ModelVersion:
    """Publish the federated model; ``comparison`` (a simulation's) goes into its report."""
    evaluation = federation_evaluation(outcome, comparison)
    name = project.config.name
    report = render_report(evaluation, title=f"{name}: federated training")
    return ModelRegistry(project.registry_dir).publish(
        name,
        federated_model(project, outcome),
        config=project.config.model_copy(update={"federated": federated}).model_dump(mode="json"),
        data_fingerprint=_with_federation(fingerprint, federated, outcome),
        base_model=f"{outcome.estimator.kind} (federated, {federated.strategy})",
        attachments={
            f"{FEDERATION_DIR}/report.html": report.encode(),
            f"{FEDERATION_DIR}/metrics.json": metrics_json(evaluation.metrics).encode(),
        },
    )
