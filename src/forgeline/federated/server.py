"""The server's side, over a Grid (in process or deployed): agree the schema; train (logistic
regression: agree the design, then a Flower strategy averages the silos' steps; trees: a booster
cycles the silos, see :mod:`forgeline.federated.trees`); then calibrate and choose the decision
threshold."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import lightgbm as lgb
import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
    Strategy,
)

from forgeline.config.federated import FederatedConfig
from forgeline.config.schema import GradientBoostingConfig
from forgeline.errors import DataError
from forgeline.federated import logistic, scores, trees
from forgeline.federated.grid import MeteredGrid
from forgeline.federated.schema import AgreedSchema, SiloSchema, agree
from forgeline.tasks.base import Notify
from forgeline.tasks.tabular.estimators import Estimator, GradientBoosting

MIN_TRAINING_ROWS = 50
"""Fewest training rows a silo takes part with: with a handful, the moments, medians and model
updates it shares would come close to its rows themselves."""


@dataclass(frozen=True)
class TrainingPlan:
    """What the project asks of the federation besides ``federated:`` itself."""

    federated: FederatedConfig
    kind: str
    """The estimator: logistic (averaged steps) or lightgbm (a booster cycling the silos)."""
    balanced: bool
    platt: bool
    threshold: float | None
    """A fixed decision threshold, or None to choose it (KS) on validation."""
    lightgbm: GradientBoostingConfig = field(default_factory=GradientBoostingConfig)
    seed: int = 42


@dataclass
class FederationOutcome:
    schema: AgreedSchema
    estimator: Estimator
    model: dict[str, ArrayRecord]
    """The model as the silos' queries carry it (``arrays`` or ``booster``)."""
    silos: dict[str, int]
    """The silos that took part, with their training rows."""
    refused: dict[str, str]
    """Silo name -> why the server refused it."""
    rounds: list[dict[str, Any]]
    """Per training round: silos that replied, validation log-loss, bytes moved (and epsilon)."""
    platt: tuple[float, float] | None = None
    threshold: float = 0.5
    validation_ks: float = 0.0
    validation_roc_auc: float = float("nan")


def _replies(
    grid: MeteredGrid, message_type: str, content: RecordDict, timeout: float, minimum: int
) -> dict[int, Message]:
    """Send ``content`` to every admitted node; their good replies by node, or an error when
    fewer than ``minimum`` silos answered."""
    nodes = list(grid.get_node_ids())
    messages = [Message(content, node, message_type) for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    good = {m.metadata.src_node_id: m for m in replies if not m.has_error()}
    errors = {m.metadata.src_node_id: m.error.reason for m in replies if m.has_error()}
    for node in nodes:
        if node not in good:
            # A silo that misses a set-up step cannot take part consistently afterwards.
            grid.drop(node, f"failed at {message_type}: {errors.get(node, 'no reply in time')}")
    if len(good) < minimum:
        failures = list(errors.values())
        detail = f": {failures[0]}" if failures else " (no reply before the timeout)"
        raise DataError(
            f"federation stopped at {message_type}: {len(good)} of {len(nodes)} silos answered, "
            f"{minimum} needed{detail}"
        )
    return good


def _strategy(config: FederatedConfig, minimum: int, silos: int) -> Strategy:
    counts: dict[str, Any] = {
        "min_train_nodes": minimum,
        "min_evaluate_nodes": minimum,
        "min_available_nodes": minimum,
    }
    if config.strategy == "fedprox":
        strategy: FedAvg = FedProx(proximal_mu=config.proximal_mu, **counts)
    elif config.strategy == "fedadam":
        strategy = FedAdam(eta=config.server_learning_rate, **counts)
    else:
        strategy = FedAvg(**counts)
    dp = config.privacy.dp
    if dp is None:
        return strategy
    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=dp.delta,
            population_size=silos,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            # Every silo takes part in every round: no amplification by sampling.
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    return DifferentialPrivacyServerSideFixedClipping(
        strategy, dp.noise_multiplier, dp.clipping_norm, silos, accountant=accountant
    )


def _admit(
    grid: MeteredGrid, schemas: dict[int, SiloSchema], configured: set[str]
) -> dict[str, str]:
    """Refuse the silos not in ``configured`` (when the config names its silos) or named twice,
    those whose table or target differs from the one most silos share, and those with fewer
    than ``MIN_TRAINING_ROWS`` training rows; the reasons by silo name."""
    refused: dict[str, str] = {}
    seen: set[str] = set()
    for node, schema in schemas.items():
        if configured and schema.silo not in configured:
            refused[schema.silo] = f"silo '{schema.silo}' is not in federated.silos"
        elif schema.silo in seen:
            refused[f"{schema.silo} (node {node})"] = f"a second node calls itself '{schema.silo}'"
        else:
            seen.add(schema.silo)
            continue
        grid.refused.add(node)
    named = {n: s for n, s in schemas.items() if n not in grid.refused}
    if not named:
        return refused

    def signature(schema: SiloSchema) -> tuple[Any, ...]:
        return (schema.classes, tuple(sorted(c.name for c in schema.columns)))

    common, _ = Counter(signature(s) for s in named.values()).most_common(1)[0]
    reference = next(s for s in named.values() if signature(s) == common)
    for node, schema in named.items():
        if signature(schema) != common:
            try:
                agree([reference, schema])
                refused[schema.silo] = f"silo '{schema.silo}' differs from silo '{reference.silo}'"
            except DataError as exc:
                refused[schema.silo] = str(exc)
            grid.refused.add(node)
    for node, schema in named.items():
        if node not in grid.refused and schema.train_rows < MIN_TRAINING_ROWS:
            refused[schema.silo] = (
                f"silo '{schema.silo}' has {schema.train_rows} training rows; a silo needs "
                f"{MIN_TRAINING_ROWS} for its aggregates not to give its rows away"
            )
            grid.refused.add(node)
    return refused


def _sum(replies: Iterable[Message], key: str) -> np.ndarray:
    arrays = [m.content.array_records[key].to_numpy_ndarrays()[0] for m in replies]
    return np.asarray(np.sum(arrays, axis=0), dtype=np.float64)


def _wait_for_silos(grid: MeteredGrid, config: FederatedConfig, notify: Notify) -> int:
    """How many silos take part: all that are connected once the configured ones (or
    ``min_silos``) are, waiting up to ``round_timeout`` for them."""
    wanted = config.min_silos or len(config.silos) or 2
    deadline = time.monotonic() + config.round_timeout
    connected = len(list(grid.get_node_ids()))
    if connected < wanted:
        notify(f"waiting for {wanted} silos to connect ({connected} so far)")
    while connected < wanted and time.monotonic() < deadline:
        time.sleep(0.5)
        connected = len(list(grid.get_node_ids()))
    if connected < wanted:
        raise DataError(
            f"{connected} silo(s) connected within {config.round_timeout:g} s, {wanted} needed"
        )
    return connected


def run_federation(grid: MeteredGrid, plan: TrainingPlan, notify: Notify) -> FederationOutcome:
    config = plan.federated
    timeout = config.round_timeout
    everyone = _wait_for_silos(grid, config, notify)
    minimum = min(config.min_silos or everyone, everyone)
    described = _replies(grid, "query.schema", RecordDict({}), timeout, minimum)
    schemas = {
        node: SiloSchema.from_json(json.loads(str(m.content.config_records["schema"]["schema"])))
        for node, m in described.items()
    }
    refused = _admit(grid, schemas, set(config.silos))
    for reason in refused.values():
        notify(f"refused: {reason}")
    admitted = {n: s for n, s in schemas.items() if n not in grid.refused}
    if len(admitted) < minimum:
        reasons = "; ".join(refused.values())
        raise DataError(f"{len(admitted)} silos agree on the table, {minimum} needed: {reasons}")
    schema = agree(list(admitted.values()))
    grid.admit(set(admitted))  # a silo connecting later was never checked: it stays out
    if sum(s.validation_rows for s in admitted.values()) == 0:
        raise DataError(
            "no silo has validation rows to calibrate and choose the threshold on; give the "
            "silos more rows or a larger data.split.validation"
        )
    notify(
        f"{len(admitted)} silos agree on {len(schema.columns)} feature columns: "
        + ", ".join(f"{s.silo} ({s.train_rows} training rows)" for s in admitted.values())
    )
    agreed = RecordDict({"config": ConfigRecord({"schema": json.dumps(schema.to_json())})})
    _replies(grid, "query.agree", agreed, timeout, minimum)
    if plan.kind == "lightgbm":
        estimator, model, rounds = _train_trees(grid, plan, admitted, notify)
    else:
        estimator, model, rounds = _train_logistic(grid, plan, schema, minimum, notify)
    silos = {s.silo: s.train_rows for s in admitted.values()}
    outcome = FederationOutcome(schema, estimator, model, silos, refused, rounds)
    _calibrate(grid, plan, outcome, minimum)
    for node, reason in grid.dropped.items():
        name = schemas[node].silo if node in schemas else f"node {node}"
        outcome.refused.setdefault(name, reason)
        outcome.silos.pop(name, None)
    return outcome


def _train_trees(
    grid: MeteredGrid, plan: TrainingPlan, admitted: dict[int, SiloSchema], notify: Notify
) -> tuple[Estimator, dict[str, ArrayRecord], list[dict[str, Any]]]:
    rows = sum(s.train_rows for s in admitted.values())
    events = max(sum(s.train_events for s in admitted.values()), 1)
    config = ConfigRecord(
        {
            "lightgbm": plan.lightgbm.model_dump_json(),
            "seed": plan.seed,
            "scale-pos-weight": (rows - events) / events if plan.balanced else 1.0,
            "local-rounds": plan.federated.local_rounds,
        }
    )
    # Each silo adds trees in proportion to its rows, as averaging weighs it by its rows: a
    # small silo adding as many trees as a large one would pull the booster towards its rows.
    per_visit = plan.federated.local_rounds * len(admitted)
    order = [
        (node, s.silo, max(1, round(per_visit * s.train_rows / rows)))
        for node, s in sorted(admitted.items(), key=lambda item: item[1].silo)
    ]
    federated = plan.federated
    result = trees.train_cyclic(
        grid, order, config, federated.rounds, federated.round_timeout, notify
    )
    if not result.text:
        raise DataError("no silo added trees to the booster; the federation has no model")
    booster = GradientBoosting(lgb.Booster(model_str=result.text))
    return booster, {"booster": trees.booster_record(result.text)}, result.rounds


def _train_logistic(
    grid: MeteredGrid, plan: TrainingPlan, schema: AgreedSchema, minimum: int, notify: Notify
) -> tuple[Estimator, dict[str, ArrayRecord], list[dict[str, Any]]]:
    timeout = plan.federated.round_timeout
    moments = _replies(grid, "query.moments", RecordDict({}), timeout, minimum)
    design = logistic.combine_moments(
        [m.content.array_records["moments"].to_numpy_ndarrays()[0] for m in moments.values()],
        schema,
        plan.balanced,
    )
    content = RecordDict({"design": ArrayRecord(design.to_arrays())})
    _replies(grid, "query.design", content, timeout, minimum)
    theta, measured = _train(grid, plan, design, minimum, notify)
    estimator = logistic.as_estimator(theta, design, schema)
    return estimator, {"arrays": ArrayRecord([theta])}, _round_history(grid, measured)


def _train(
    grid: MeteredGrid, plan: TrainingPlan, design: logistic.Design, minimum: int, notify: Notify
) -> tuple[np.ndarray, dict[int, dict[str, float]]]:
    config = plan.federated
    silos = len(list(grid.get_node_ids()))
    strategy = _strategy(config, minimum, silos)
    start = np.zeros(len(design.mean) + 1)
    if config.privacy.dp is not None:
        # Flower's DP wrapper draws its noise from NumPy's global generator: seed it with the
        # generator's whole state from the OS, never with a stored seed (that would let anyone
        # holding the version regenerate the noise and remove it).
        np.random.seed(np.frombuffer(os.urandom(624 * 4), dtype=np.uint32))
    epsilons: dict[int, float] = {}
    # Flower logs every round at INFO; the user sees Forgeline's one line per round instead.
    flower = logging.getLogger("flwr")
    level = flower.level
    flower.setLevel(logging.WARNING)

    def progress(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if not server_round:
            return None
        spent = (
            strategy.privacy_spent()
            if isinstance(strategy, DifferentialPrivacyServerSideFixedClipping)
            else None
        )
        if spent is not None:
            epsilons[server_round] = spent.epsilon
        notify(
            f"round {server_round}/{config.rounds}"
            + (f": epsilon {spent.epsilon:.3g} at delta {spent.delta:g}" if spent else "")
        )
        return None

    try:
        result = strategy.start(
            grid,
            ArrayRecord([start]),
            num_rounds=config.rounds,
            timeout=config.round_timeout,
            train_config=ConfigRecord(
                {
                    "local-epochs": config.local_epochs,
                    "equal-weights": config.privacy.dp is not None,
                }
            ),
            evaluate_fn=progress,
        )
    finally:
        flower.setLevel(level)
    if not result.train_metrics_clientapp:
        raise DataError(
            f"no training round got enough replies from the silos (min_silos {minimum}); "
            "no model was trained"
        )
    losses = {
        server_round: float(cast(float, metrics["log-loss"]))
        for server_round, metrics in result.evaluate_metrics_clientapp.items()
    }
    if losses:
        notify(
            f"federated validation log-loss after round {max(losses)}: {losses[max(losses)]:.4f}"
        )
    history = {r: {"validation_log_loss": loss} for r, loss in losses.items()}
    for server_round, epsilon in epsilons.items():
        history.setdefault(server_round, {})["epsilon"] = epsilon
    return np.asarray(result.arrays.to_numpy_ndarrays()[0], dtype=np.float64), history


def _calibrate(
    grid: MeteredGrid, plan: TrainingPlan, outcome: FederationOutcome, minimum: int
) -> None:
    timeout = plan.federated.round_timeout
    parameters = np.array([1.0, 0.0])
    if plan.platt:
        for _ in range(scores.PLATT_STEPS):
            content = RecordDict({**outcome.model, "platt": ArrayRecord([parameters])})
            replies = _replies(grid, "query.platt", content, timeout, minimum)
            updated = scores.platt_step(parameters, _sum(replies.values(), "terms"))
            converged = np.max(np.abs(updated - parameters)) < 1e-7
            parameters = updated
            if converged:
                break
        outcome.platt = (float(parameters[0]), float(parameters[1]))
    content = RecordDict({**outcome.model, "platt": ArrayRecord([parameters])})
    counts = _sum(_replies(grid, "query.histogram", content, timeout, minimum).values(), "counts")
    ks, threshold = scores.ks_threshold(counts)
    outcome.validation_ks = ks
    outcome.validation_roc_auc = scores.histogram_auc(counts)
    outcome.threshold = plan.threshold if plan.threshold is not None else threshold


def _round_history(
    grid: MeteredGrid, measured: dict[int, dict[str, float]]
) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    for exchange in grid.exchanges:
        if exchange.message_type == "train":
            rounds.append(
                {
                    "round": len(rounds) + 1,
                    "silos": exchange.replies,
                    "failures": exchange.failures,
                    "bytes_sent": exchange.sent_bytes,
                    "bytes_received": exchange.received_bytes,
                    "seconds": round(exchange.seconds, 3),
                    "validation_log_loss": None,
                    **measured.get(len(rounds) + 1, {}),
                }
            )
    return rounds
