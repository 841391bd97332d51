"""The sentence encoder: a transformer encoder whose mean-pooled, normalized token states embed
a text (as sentence-transformers' all-MiniLM-L6-v2 is used), written as one transformers model
so both runtimes (PyTorch, and ONNX Runtime once compressed) compute the whole embedding, and
`forgeline compress` exports it like any other encoder network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils.generic import ModelOutput

from forgeline.encoders.batching import batched_logits
from forgeline.encoders.runtime import Encoder


@dataclass
class SentenceEmbedding(ModelOutput):
    logits: torch.Tensor | None = None
    """The unit-length sentence embedding; named as every encoder network's output, so the
    runtimes of :mod:`forgeline.encoders.runtime` serve it unchanged."""


class SentenceEmbedder(PreTrainedModel):
    """Mean pooling over the attention mask, then L2 normalization, on top of any encoder."""

    config_class = AutoConfig  # type: ignore[assignment]
    # Loads a plain encoder checkpoint (the base model's weights under no prefix) and saves
    # its own weights under `encoder.`, as a classifier head's model does.
    base_model_prefix = "encoder"

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.encoder = AutoModel.from_config(config, add_pooling_layer=False)
        self.post_init()  # type: ignore[no-untyped-call]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> SentenceEmbedding:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return SentenceEmbedding(logits=torch.nn.functional.normalize(pooled, p=2, dim=-1))


def embedding_size(directory: Path) -> int:
    config = AutoConfig.from_pretrained(directory)
    return int(config.hidden_size)


def embed(
    encoder: Encoder, tokenizer: Any, texts: Sequence[str], max_length: int, size: int
) -> NDArray[np.float32]:
    """Unit-length embeddings of ``texts``, one row each, in input order."""
    if not texts:
        return np.zeros((0, size), dtype=np.float32)
    return batched_logits(encoder, tokenizer, texts, max_length, size)
