"""A pretrained encoder with a new output layer for a task's labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from transformers import AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from forgeline.encoders.runtime import PretrainedLoader


def with_fresh_head(
    architecture: type[PretrainedLoader], base_dir: Path, labels: list[str]
) -> tuple[PreTrainedModel, Any]:
    """The pretrained encoder in ``base_dir`` with a new output layer for ``labels``, and its
    tokenizer."""
    hf_logging.set_verbosity_error()  # "newly initialized classifier weights" is expected here
    try:
        model = architecture.from_pretrained(
            base_dir,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            use_safetensors=True,
        )
    finally:
        hf_logging.set_verbosity_warning()
    return cast(PreTrainedModel, model), AutoTokenizer.from_pretrained(base_dir)
