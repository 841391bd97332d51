"""``forgeline train`` for a chat project with a ``training`` section: LoRA on the project's
conversations, the merged model exported to GGUF, and the export checked against the model it
came from before anything is registered."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forgeline.config.chat import ChatTrainingConfig
from forgeline.errors import CompressionRefused
from forgeline.tasks.base import ChatMessage, DataSplits, Notify
from forgeline.tasks.chat.data import MESSAGES, SOURCE
from forgeline.tasks.chat.finetune.export import write_gguf
from forgeline.tasks.chat.finetune.parity import check_parity
from forgeline.tasks.chat.finetune.training import train_lora
from forgeline.tasks.chat.prompting import with_system_prompt

GGUF_NAME = "model.gguf"


@dataclass
class ExportedChat:
    """The fine-tuned GGUF, in a scratch directory that lives as long as this object."""

    path: Path
    metrics: dict[str, Any]
    scratch: tempfile.TemporaryDirectory[str]


def fine_tune_and_export(
    weights: Path,
    settings: ChatTrainingConfig,
    data: DataSplits,
    system_prompt: str | None,
    notify: Notify,
) -> ExportedChat:
    """Fine-tune the GGUF at ``weights`` on ``data``'s train conversations and export the
    result; raises :class:`CompressionRefused` when the export fails its parity check."""

    def conversations(frame: pd.DataFrame) -> tuple[list[list[ChatMessage]], list[str]]:
        # As the served model sees them: under the system prompt it is served with.
        messages = [with_system_prompt(list(m), system_prompt) for m in frame[MESSAGES]]
        return messages, list(frame[SOURCE])

    validation = conversations(data.validation)
    tuned = train_lora(weights, settings, conversations(data.train), validation, notify)
    export = settings.export
    scratch = tempfile.TemporaryDirectory(prefix="forgeline-chat-")
    path = Path(scratch.name) / GGUF_NAME
    notify(f"exporting to GGUF ({export.quantization})")
    started = time.perf_counter()
    write_gguf(tuned.model, weights, path, export.quantization)
    exported = time.perf_counter() - started
    notify(f"checking the export on {export.parity_conversations} validation conversations")
    report = check_parity(
        tuned.model,
        tuned.tokenizer,
        path,
        validation[0][: export.parity_conversations],
        max_perplexity_ratio_change=export.max_perplexity_change,
        min_token_agreement=export.min_token_agreement,
    )
    if not report.passed:
        scratch.cleanup()
        raise CompressionRefused(
            "the exported GGUF does not behave like the fine-tuned model, so it was not "
            "registered:\n  " + "\n  ".join(report.failures)
        )
    metrics = {
        **tuned.metrics,
        "export_quantization": export.quantization,
        "export_seconds": round(exported, 1),
        "parity_token_agreement": report.token_agreement,
        "parity_perplexity_change": report.relative_perplexity_change,
    }
    return ExportedChat(path, metrics, scratch)
