"""What a knowledge-qa model version decides with, besides its encoder and index: stored as
JSON next to them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from forgeline.tasks.knowledge_qa.retrieval import Weights

SETTINGS_FILE = "knowledge.json"


@dataclass(frozen=True)
class Settings:
    weights: Weights
    threshold: float
    """Lowest top score that is trusted; below it the fallback is said."""
    fallback: str
    top_k: int
    max_length: int
    """Tokens embedded per text."""
    embedding_size: int
    encoder_fingerprint: str
    """What the encoder was made from (see ``training.encoder_fingerprint``)."""
    runtime: Literal["torch", "onnx"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        return cls(**{**data, "weights": Weights(**data["weights"])})

    def on_runtime(self, runtime: Literal["torch", "onnx"]) -> Settings:
        return replace(self, runtime=runtime)
