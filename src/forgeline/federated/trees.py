"""Federated gradient-boosted trees: cyclic training of one LightGBM booster.

Trees cannot be averaged. The booster instead travels: each cycle, every silo in turn (in the
order of their names) adds trees fitted to its own rows' gradients under the trees before
them, ``local_rounds`` per silo on average and in proportion to its rows, so the ensemble learns from every silo's rows without pooling them. After
each cycle the silos score the booster on their validation rows; training stops when the
validation ROC-AUC of all silos' rows (from their score histograms) has not improved for
``PATIENCE`` cycles, and the best cycle's
booster is kept. Category levels and the class weight (from the silos' event counts) are
agreed first, so every silo's codes and gradients mean the same.

What a tree exchange reveals, which averaging weights does not: every split is a threshold on
one feature between values that occur in the silo's rows, and every leaf value is a statistic
of the gradients of at least ``min_child_samples`` of its rows. Coefficients of a linear model
aggregate all rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from numpy.typing import NDArray

from forgeline.config.schema import GradientBoostingConfig
from forgeline.federated.grid import MeteredGrid, content_bytes
from forgeline.federated.schema import AgreedSchema
from forgeline.federated.scores import histogram_auc
from forgeline.federated.silos import SiloData
from forgeline.tasks.base import Notify
from forgeline.tasks.tabular.columns import features_matrix
from forgeline.tasks.tabular.data import EVENT
from forgeline.tasks.tabular.estimators import lightgbm_parameters

PATIENCE = 3
"""Cycles without a better validation ROC-AUC before training stops."""
WHAT_TREES_REVEAL = (
    "The booster travels between silos: its split thresholds are feature values that lie "
    "between values in a silo's rows, and its leaf values are gradient statistics of at "
    "least min_child_samples of that silo's rows. That is more than averaged coefficients "
    "reveal; choose min_child_samples with that in mind."
)


def booster_record(text: str) -> ArrayRecord:
    """A booster (LightGBM's text format) as an array of bytes, as Flower carries arrays."""
    return ArrayRecord([np.frombuffer(text.encode("utf-8"), dtype=np.uint8)])


def booster_text(record: ArrayRecord) -> str:
    return bytes(record.to_numpy_ndarrays()[0].astype(np.uint8)).decode("utf-8")


def boost(text: str, silo: SiloData, schema: AgreedSchema, config: ConfigRecord) -> str:
    """The booster ``text`` (empty: none yet) with ``local-rounds`` more trees on the silo's
    training rows."""
    categorical = [i for i, c in enumerate(schema.columns) if c.kind == "categorical"]
    rows = lgb.Dataset(
        features_matrix(silo.train, schema.columns),
        silo.train[EVENT].to_numpy(),
        feature_name=[c.name for c in schema.columns],
        categorical_feature=categorical,
    )
    settings = GradientBoostingConfig.model_validate_json(str(config["lightgbm"]))
    params = lightgbm_parameters(
        settings, int(str(config["seed"])), float(str(config["scale-pos-weight"]))
    )
    booster = lgb.train(
        params,
        rows,
        num_boost_round=int(str(config["local-rounds"])),
        init_model=lgb.Booster(model_str=text) if text else None,
        keep_training_booster=True,
    )
    return str(booster.model_to_string())


def margin(text: str, schema: AgreedSchema, frame: Any) -> NDArray[np.float64]:
    booster = lgb.Booster(model_str=text)
    matrix = features_matrix(frame, schema.columns)
    return np.asarray(booster.predict(matrix, raw_score=True), dtype=np.float64)


@dataclass
class CyclicResult:
    text: str
    rounds: list[dict[str, Any]] = field(default_factory=list)


def train_cyclic(
    grid: MeteredGrid,
    order: list[tuple[int, str, int]],
    config: ConfigRecord,
    cycles: int,
    timeout: float,
    notify: Notify,
) -> CyclicResult:
    """Cycle the booster through the silos (node, name, trees to add) in ``order``; the best
    cycle's booster."""
    text, best, best_cycle = "", -1.0, 0
    result = CyclicResult("")
    for cycle in range(1, cycles + 1):
        visited, failed, sent, received = 0, 0, 0, 0
        for node, name, grow in order:
            visit = ConfigRecord({**config, "local-rounds": grow})
            content = RecordDict({"booster": booster_record(text), "config": visit})
            message = Message(content, node, "train.cyclic")
            replies = list(grid.send_and_receive([message], timeout=timeout))
            good = [r for r in replies if not r.has_error()]
            sent += content_bytes(message)
            received += sum(content_bytes(r) for r in good)
            if not good:
                failed += 1
                reason = replies[0].error.reason if replies else "no reply before the timeout"
                notify(f"cycle {cycle}: silo '{name}' skipped ({reason})")
                continue
            text = booster_text(good[0].content.array_records["booster"])
            visited += 1
        auc = _validation_auc(grid, text, timeout)
        result.rounds.append(
            {
                "round": cycle,
                "silos": visited,
                "failures": failed,
                "bytes_sent": sent,
                "bytes_received": received,
                "validation_roc_auc": auc,
            }
        )
        notify(f"cycle {cycle}/{cycles}: validation ROC-AUC {auc:.4f}")
        if auc > best:
            best, best_cycle, result.text = auc, cycle, text
        elif cycle - best_cycle >= PATIENCE:
            notify(f"stopped: no better validation ROC-AUC since cycle {best_cycle}")
            break
    return result


def _validation_auc(grid: MeteredGrid, text: str, timeout: float) -> float:
    """ROC-AUC of the booster on every silo's validation rows together, from their histograms
    (ranking, as LightGBM's own early stopping here: class weights distort log-loss)."""
    nodes = list(grid.get_node_ids())
    content = RecordDict(
        {"booster": booster_record(text), "platt": ArrayRecord([np.array([1.0, 0.0])])}
    )
    replies = grid.send_and_receive(
        [Message(content, n, "query.histogram") for n in nodes], timeout=timeout
    )
    counts = [
        r.content.array_records["counts"].to_numpy_ndarrays()[0]
        for r in replies
        if not r.has_error()
    ]
    return histogram_auc(np.sum(counts, axis=0)) if counts else float("nan")
