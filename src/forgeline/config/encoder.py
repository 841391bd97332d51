"""How a fine-tuned transformer encoder is compressed: the section shared by the
text-classification, token-classification and knowledge-qa configs."""

from __future__ import annotations

from pydantic import Field

from forgeline.config.sections import Section


class CompressConfig(Section):
    """`forgeline compress`: ONNX export and int8 quantization, each checked before use."""

    max_metric_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Refuse the int8 model if the validation metric (macro-F1 of a classifier, "
        "entity F1 of a tagger, MRR of a knowledge base) drops by more than this.",
    )
    max_logit_difference: float = Field(
        1e-3,
        gt=0,
        description="Refuse the ONNX export if an output (a logit, an embedding value) "
        "differs more than this.",
    )
    per_channel: bool = Field(True, description="Quantize weights per output channel.")
