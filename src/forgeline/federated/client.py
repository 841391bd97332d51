"""The silo's side: a Flower ClientApp that answers the server from the silo's own rows.

What leaves the silo: its schema (column names, kinds, levels, medians), per-class second
moments of its design matrix, model parameters after local steps, Platt-scaling gradients and
score histograms of its validation rows. Never a row.

Message types (Flower's ``<category>.<action>``): ``query.schema``, ``query.moments``,
``query.design`` (the agreed standardisation and preconditioner, kept in the node's state),
``train``, ``evaluate``, ``query.platt`` and ``query.histogram``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from forgeline.config.schema import TabularDataConfig
from forgeline.federated import logistic, scores
from forgeline.federated.schema import AgreedSchema, describe_silo
from forgeline.federated.silos import SiloData
from forgeline.tasks.tabular.data import EVENT

SiloLoader = Callable[[Context], tuple[SiloData, TabularDataConfig]]
"""Reads the silo this node holds and how its project reads tables (from the node's config,
or a simulation's memory)."""
_STATE = "forgeline"


def _agreed(context: Context) -> tuple[AgreedSchema, logistic.Design]:
    state = context.state
    if _STATE not in state.config_records or "design" not in state.array_records:
        raise RuntimeError("the server sent no agreed schema and design to this silo yet")
    schema = AgreedSchema.from_json(json.loads(str(state.config_records[_STATE]["schema"])))
    arrays = state.array_records["design"].to_numpy_ndarrays()
    return schema, logistic.Design.from_arrays(arrays)


def _theta(message: Message) -> np.ndarray:
    return message.content.array_records["arrays"].to_numpy_ndarrays()[0]


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
        record = ConfigRecord({"schema": json.dumps(described.to_json())})
        return Message(RecordDict({"schema": record}), reply_to=message)

    @app.query("moments")
    def moments(message: Message, context: Context) -> Message:
        agreed_json = str(message.content.config_records["config"]["schema"])
        context.state.config_records[_STATE] = ConfigRecord({"schema": agreed_json})
        agreed = AgreedSchema.from_json(json.loads(agreed_json))
        result = logistic.class_moments(agreed, silo_of(context))
        return Message(RecordDict({"moments": ArrayRecord([result])}), reply_to=message)

    @app.query("design")
    def design(message: Message, context: Context) -> Message:
        context.state.array_records["design"] = message.content.array_records["design"]
        return Message(RecordDict({}), reply_to=message)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        agreed, design = _agreed(context)
        silo = silo_of(context)
        config = message.content.config_records["config"]
        theta = logistic.local_steps(
            _theta(message),
            design,
            agreed,
            silo,
            epochs=int(cast(int, config.get("local-epochs", 1))),
            proximal_mu=float(cast(float, config.get("proximal-mu", 0.0))),
        )
        # Under silo-level DP the silos weigh equally (Flower's accountant requires it).
        weight = 1 if config.get("equal-weights", False) else len(silo.train)
        metrics = MetricRecord({"num-examples": weight})
        return Message(
            RecordDict({"arrays": ArrayRecord([theta]), "metrics": metrics}), reply_to=message
        )

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        agreed, design = _agreed(context)
        rows = silo_of(context).validation
        events = rows[EVENT].to_numpy().astype(np.float64)
        margin = logistic.margin(_theta(message), design, agreed, rows)
        probability = np.clip(scores.sigmoid(margin), 1e-12, 1 - 1e-12)
        loss = -np.mean(events * np.log(probability) + (1 - events) * np.log(1 - probability))
        metrics = MetricRecord(
            {"num-examples": len(rows), "log-loss": float(loss) if len(rows) else 0.0}
        )
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    @app.query("platt")
    def platt(message: Message, context: Context) -> Message:
        agreed, design = _agreed(context)
        rows = silo_of(context).validation
        parameters = message.content.array_records["platt"].to_numpy_ndarrays()[0]
        margin = logistic.margin(_theta(message), design, agreed, rows)
        terms = scores.platt_terms(parameters, margin, rows[EVENT].to_numpy().astype(np.float64))
        return Message(RecordDict({"terms": ArrayRecord([terms])}), reply_to=message)

    @app.query("histogram")
    def histogram(message: Message, context: Context) -> Message:
        agreed, design = _agreed(context)
        rows = silo_of(context).validation
        a, b = message.content.array_records["platt"].to_numpy_ndarrays()[0]
        margin = logistic.margin(_theta(message), design, agreed, rows)
        probability = scores.sigmoid(a * margin + b)
        counts = scores.score_histogram(probability, rows[EVENT].to_numpy())
        return Message(RecordDict({"counts": ArrayRecord([counts])}), reply_to=message)

    return app
