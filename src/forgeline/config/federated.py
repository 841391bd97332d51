"""The ``federated:`` section of ``forgeline.yaml``: which data silos take part, and how Flower
combines what they learn (``forgeline federated simulate``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from forgeline.config.sections import NAME_PATTERN, Section

StrategyName = Literal["fedavg", "fedprox", "fedadam", "cyclic"]


class DifferentialPrivacyConfig(Section):
    """Central differential privacy for the silos' model updates: each update is clipped to
    ``clipping_norm``, Gaussian noise is added to their average, and an RDP accountant turns
    rounds into epsilon at ``delta``. A silo is the unit protected (silo-level DP), so the silos
    weigh equally in the average."""

    noise_multiplier: float = Field(
        1.0, gt=0, description="Noise standard deviation as a multiple of the clipping norm."
    )
    clipping_norm: float = Field(1.0, gt=0, description="Largest L2 norm of a silo's update.")
    delta: float = Field(1e-5, gt=0, lt=1, description="The delta epsilon is reported at.")


class FederatedPrivacyConfig(Section):
    dp: DifferentialPrivacyConfig | None = None


class TlsConfig(Section):
    """TLS between the coordinator and the silos (``forgeline federated server`` / ``client``):
    the coordinator's certificate and key, and the CA certificate the silos verify it with."""

    certificate: Path = Field(description="The coordinator's certificate (PEM).")
    private_key: Path = Field(description="The coordinator's private key (PEM).")
    ca_certificate: Path = Field(description="The CA certificate that signed it (PEM).")


class FederatedConfig(Section):
    """Silos are either one file each (as in a real federation) or, to simulate one on a
    single file, the groups of ``data.train`` by a column (``split_by``)."""

    silos: dict[str, Path] = Field(
        default_factory=dict,
        description="Silo name -> its data file (same columns and target as data.train).",
    )
    split_by: str | None = Field(
        None,
        min_length=1,
        description="Simulate silos as the groups of data.train by this column (e.g. region).",
    )
    strategy: StrategyName = Field(
        "fedavg",
        description="How the server combines what the silos learn. Logistic regression: fedavg "
        "(weighted average), fedprox (averaging, clients held near the global model) or "
        "fedadam (Adam on the server's update). Gradient boosting: cyclic (the booster visits "
        "every silo in turn, each adding trees).",
    )
    rounds: int = Field(20, ge=1, le=10_000, description="Federated training rounds.")
    local_epochs: int = Field(
        1, ge=1, le=100, description="Local passes over a silo's data per round."
    )
    local_rounds: int = Field(
        20,
        ge=1,
        le=10_000,
        description="cyclic: trees a silo adds per visit, on average (in proportion to its rows).",
    )
    proximal_mu: float = Field(
        0.1, ge=0, description="fedprox: weight of the pull towards the global model."
    )
    server_learning_rate: float = Field(0.1, gt=0, description="fedadam: the server's step.")
    min_silos: int | None = Field(
        None,
        ge=2,
        description="Fewest silos the federation needs (default: all): a round waits until "
        "that many are connected, and it stops when fewer agree on the table; a silo that "
        "fails or times out in a round is left out of that round's average.",
    )
    round_timeout: float = Field(
        600, gt=0, description="Seconds the server waits for the silos' replies in a round."
    )
    privacy: FederatedPrivacyConfig = FederatedPrivacyConfig()
    tls: TlsConfig | None = Field(
        None, description="Certificates for TLS between coordinator and silos (else plain HTTP)."
    )

    @field_validator("silos")
    @classmethod
    def _silo_names(cls, silos: dict[str, Path]) -> dict[str, Path]:
        for name in silos:
            if re.fullmatch(NAME_PATTERN, name) is None:
                raise ValueError(
                    f"silo name '{name}' must be lowercase letters, digits and . _ - (it names "
                    "the silo in reports and on the command line)"
                )
        return silos

    @model_validator(mode="after")
    def _one_source(self) -> FederatedConfig:
        if bool(self.silos) == (self.split_by is not None):
            raise ValueError("give either silos (one data file each) or split_by (a column)")
        if self.silos and len(self.silos) < 2:
            raise ValueError("a federation needs at least 2 silos")
        if self.privacy.dp is not None and self.strategy == "cyclic":
            raise ValueError(
                "privacy.dp: differential privacy is offered for averaged updates (logistic "
                "regression), not for trees passed between silos"
            )
        if self.privacy.dp is not None and self.strategy == "fedadam":
            raise ValueError(
                "privacy.dp: Flower's privacy accountant needs plain averaging; use fedavg or "
                "fedprox with dp"
            )
        if self.min_silos is not None and self.silos and self.min_silos > len(self.silos):
            raise ValueError(
                f"min_silos is {self.min_silos} but only {len(self.silos)} silos are configured"
            )
        return self
