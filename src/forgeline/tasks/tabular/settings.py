"""What a tabular model saves besides its estimators: the input schema, the decision and the
scorecard, as JSON in ``tabular.json``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forgeline.config.data_files import BandConfig
from forgeline.config.schema import ScorecardConfig, TabularClassificationConfig
from forgeline.tasks.tabular.columns import Column
from forgeline.tasks.tabular.derived import check_expression


@dataclass
class TabularSettings:
    """Everything besides the fitted estimators that prediction and evaluation need."""

    columns: list[Column]
    target: str
    event: str
    non_event: str
    threshold: float
    above: str
    below: str
    reason_codes: int
    scorecard: ScorecardConfig
    sensitive: list[str]
    bands: dict[str, BandConfig]
    fairness_max_difference: float

    @property
    def inputs(self) -> list[Column]:
        """The columns a request or file gives; derived features are computed from them."""
        return [c for c in self.columns if c.expression is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [c.to_json() for c in self.columns],
            "target": self.target,
            "event": self.event,
            "non_event": self.non_event,
            "threshold": self.threshold,
            "above": self.above,
            "below": self.below,
            "reason_codes": self.reason_codes,
            "scorecard": self.scorecard.model_dump(),
            "sensitive": self.sensitive,
            "bands": {k: v.model_dump() for k, v in self.bands.items()},
            "fairness_max_difference": self.fairness_max_difference,
        }

    @classmethod
    def from_config(
        cls,
        config: TabularClassificationConfig,
        columns: list[Column],
        classes: tuple[str, str],
        threshold: float,
    ) -> TabularSettings:
        """The settings of a model trained (here or federated) under ``config``."""
        return cls(
            columns=columns,
            target=config.data.target,
            event=classes[0],
            non_event=classes[1],
            threshold=threshold,
            above=config.decision.above,
            below=config.decision.below,
            reason_codes=config.decision.reason_codes,
            scorecard=config.scorecard,
            sensitive=list(config.data.sensitive),
            bands=dict(config.data.bands),
            fairness_max_difference=config.fairness_max_difference,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TabularSettings:
        columns = [Column(**c) for c in data["columns"]]
        # A saved model may come from elsewhere: its expressions pass the same check as config.
        numeric = [c.name for c in columns if c.expression is None and c.kind != "categorical"]
        for column in columns:
            if column.expression is not None:
                check_expression(column.name, column.expression, numeric)
        return cls(
            columns=columns,
            target=data["target"],
            event=data["event"],
            non_event=data["non_event"],
            threshold=data["threshold"],
            above=data["above"],
            below=data["below"],
            reason_codes=data["reason_codes"],
            scorecard=ScorecardConfig(**data["scorecard"]),
            sensitive=data["sensitive"],
            bands={k: BandConfig(**v) for k, v in data["bands"].items()},
            fairness_max_difference=data["fairness_max_difference"],
        )
