"""The silo's side: a Flower ClientApp that answers the server from the silo's own rows.

What leaves the silo: its schema (column names, kinds, levels, medians, row and event counts),
per-class second moments of its design matrix, model parameters after local steps (or the
booster with its trees added), Platt-scaling gradients and score histograms of its validation
rows. Never a row.

Message types (Flower's ``<category>.<action>``): ``query.schema``, ``query.agree`` (the agreed
schema, kept in the node's state), ``query.moments``, ``query.design`` (the agreed
standardisation and preconditioner, kept too), ``train`` (logistic steps), ``train.cyclic``
(trees), ``evaluate``, ``query.platt`` and ``query.histogram``. A message carries the model as
``arrays`` (logistic coefficients) or ``booster`` (LightGBM's text).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

import numpy as np
import pandas as pd
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from numpy.typing import NDArray

from forgeline.config.schema import TabularDataConfig
from forgeline.federated import logistic, scores, trees
from forgeline.federated.schema import AgreedSchema, describe_silo
from forgeline.federated.silos import SiloData
from forgeline.tasks.tabular.data import EVENT

SiloLoader = Callable[[Context], tuple[SiloData, TabularDataConfig]]
"""Reads the silo this node holds and how its project reads tables (from the node's config,
or a simulation's memory)."""
_STATE = "forgeline"


def _schema(context: Context) -> AgreedSchema:
    if _STATE not in context.state.config_records:
        raise RuntimeError("the server sent no agreed schema to this silo yet")
    return AgreedSchema.from_json(json.loads(str(context.state.config_records[_STATE]["schema"])))


def _design(context: Context) -> logistic.Design:
    if "design" not in context.state.array_records:
        raise RuntimeError("the server sent no agreed design to this silo yet")
    return logistic.Design.from_arrays(context.state.array_records["design"].to_numpy_ndarrays())


def _theta(message: Message) -> np.ndarray:
    return message.content.array_records["arrays"].to_numpy_ndarrays()[0]


def _margin(message: Message, context: Context, rows: pd.DataFrame) -> NDArray[np.float64]:
    """Log-odds of the model the message carries, for ``rows``."""
    schema = _schema(context)
    if "booster" in message.content.array_records:
        return trees.margin(
            trees.booster_text(message.content.array_records["booster"]), schema, rows
        )
    return logistic.margin(_theta(message), _design(context), schema, rows)


def _reply(message: Message, **records: ArrayRecord | ConfigRecord | MetricRecord) -> Message:
    return Message(RecordDict(dict(records)), reply_to=message)


def make_client_app(load: SiloLoader) -> ClientApp:
    """A ClientApp over the silo ``load`` reads for a node (read once per node)."""
    app = ClientApp()
    silos: dict[int, tuple[SiloData, TabularDataConfig]] = {}

    def loaded(context: Context) -> tuple[SiloData, TabularDataConfig]:
        if context.node_id not in silos:
            silos[context.node_id] = load(context)
        return silos[context.node_id]

    def silo_of(context: Context) -> SiloData:
        return loaded(context)[0]

    @app.query("schema")
    def schema(message: Message, context: Context) -> Message:
        described = describe_silo(*loaded(context))
        return _reply(message, schema=ConfigRecord({"schema": json.dumps(described.to_json())}))

    @app.query("agree")
    def agree(message: Message, context: Context) -> Message:
        agreed = str(message.content.config_records["config"]["schema"])
        context.state.config_records[_STATE] = ConfigRecord({"schema": agreed})
        return _reply(message)

    @app.query("moments")
    def moments(message: Message, context: Context) -> Message:
        result = logistic.class_moments(_schema(context), silo_of(context))
        return _reply(message, moments=ArrayRecord([result]))

    @app.query("design")
    def design(message: Message, context: Context) -> Message:
        context.state.array_records["design"] = message.content.array_records["design"]
        return _reply(message)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        silo = silo_of(context)
        config = message.content.config_records["config"]
        equal = bool(config.get("equal-weights", False))
        theta = logistic.local_steps(
            _theta(message),
            _design(context),
            _schema(context),
            silo,
            epochs=int(cast(int, config.get("local-epochs", 1))),
            proximal_mu=float(cast(float, config.get("proximal-mu", 0.0))),
            own_bound=equal,
        )
        # Under silo-level DP the silos weigh equally (Flower's accountant requires it).
        weight = 1 if equal else len(silo.train)
        return _reply(
            message, arrays=ArrayRecord([theta]), metrics=MetricRecord({"num-examples": weight})
        )

    @app.train("cyclic")
    def train_trees(message: Message, context: Context) -> Message:
        text = trees.booster_text(message.content.array_records["booster"])
        config = message.content.config_records["config"]
        grown = trees.boost(text, silo_of(context), _schema(context), config)
        return _reply(message, booster=trees.booster_record(grown))

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        rows = silo_of(context).validation
        events = rows[EVENT].to_numpy().astype(np.float64)
        probability = np.clip(scores.sigmoid(_margin(message, context, rows)), 1e-12, 1 - 1e-12)
        loss = -np.mean(events * np.log(probability) + (1 - events) * np.log(1 - probability))
        metrics = MetricRecord(
            {"num-examples": len(rows), "log-loss": float(loss) if len(rows) else 0.0}
        )
        return _reply(message, metrics=metrics)

    @app.query("platt")
    def platt(message: Message, context: Context) -> Message:
        rows = silo_of(context).validation
        parameters = message.content.array_records["platt"].to_numpy_ndarrays()[0]
        events = rows[EVENT].to_numpy().astype(np.float64)
        terms = scores.platt_terms(parameters, _margin(message, context, rows), events)
        return _reply(message, terms=ArrayRecord([terms]))

    @app.query("histogram")
    def histogram(message: Message, context: Context) -> Message:
        rows = silo_of(context).validation
        a, b = message.content.array_records["platt"].to_numpy_ndarrays()[0]
        probability = scores.sigmoid(a * _margin(message, context, rows) + b)
        counts = scores.score_histogram(probability, rows[EVENT].to_numpy())
        return _reply(message, counts=ArrayRecord([counts]))

    return app
