"""LoRA fine-tuning of a GGUF chat model on a project's conversations.

The GGUF is loaded into transformers (dequantized to float32), adapters from ``peft`` are put
on its linear layers and trained with HF ``Trainer`` through the same :func:`fine_tune` as
every other task: an evaluation per epoch, early stopping on validation loss, the best epoch's
adapters at the end. The loss counts reply tokens only: each conversation is rendered with the
chat template from the GGUF's own metadata (the one the engine serves with) and everything
before each assistant turn is masked, so the model learns to answer, not to write questions.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    PreTrainedModel,
    set_seed,
)
from transformers.utils import logging as hf_logging

from forgeline.config.chat import ChatTrainingConfig
from forgeline.errors import ConfigError, DataError
from forgeline.tasks.base import ChatMessage, Notify
from forgeline.tasks.chat.prompting import ChatTemplate, reply_spans
from forgeline.training import Metric, fine_tune

IGNORED = -100
"""Label of a token that carries no loss (Hugging Face's convention)."""
_MAX_LISTED = 10


@dataclass(frozen=True)
class EncodedConversation:
    input_ids: list[int]
    labels: list[int]
    """The token itself on reply tokens, :data:`IGNORED` on everything before a reply."""

    @property
    def reply_tokens(self) -> int:
        return sum(label != IGNORED for label in self.labels)


class _Conversations(torch.utils.data.Dataset[dict[str, list[int]]]):
    def __init__(self, encoded: list[EncodedConversation]) -> None:
        self._encoded = encoded

    def __len__(self) -> int:
        return len(self._encoded)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        item = self._encoded[index]
        return {
            "input_ids": item.input_ids,
            "attention_mask": [1] * len(item.input_ids),
            "labels": item.labels,
        }


@dataclass(frozen=True)
class TunedChat:
    model: PreTrainedModel
    """The base model with the trained adapters merged into its weights."""
    tokenizer: Any
    metrics: dict[str, Any]


def load_base(weights: Path) -> tuple[PreTrainedModel, Any]:
    """The GGUF chat model as a float32 transformers model, and its tokenizer."""
    hf_logging.set_verbosity_error()  # dequantization progress and config notes
    try:
        tokenizer = AutoTokenizer.from_pretrained(weights.parent, gguf_file=weights.name)
        model = AutoModelForCausalLM.from_pretrained(
            weights.parent, gguf_file=weights.name, dtype=torch.float32
        )
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ConfigError(
            f"{weights}: transformers cannot load this GGUF for fine-tuning ({exc}); a Llama-style "
            "model in F16, Q8_0 or Q4 quantization can be"
        ) from None
    finally:
        hf_logging.set_verbosity_warning()
    # transformers dequantizes a GGUF to plain float32 weights on load but still marks the model
    # as GGUF-quantized, and Trainer refuses to train such a model; nothing quantized is left.
    loaded = cast(PreTrainedModel, model)
    quantizer = getattr(loaded, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(loaded)
    return loaded, tokenizer


def template_of(tokenizer: Any, weights: Path) -> ChatTemplate:
    """The chat template the engine serves the model with (its GGUF metadata's)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{weights}: the GGUF has no chat template to train with")
    return ChatTemplate(
        tokenizer.chat_template, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token
    )


def encode_conversation(
    template: ChatTemplate, tokenizer: Any, messages: list[ChatMessage]
) -> EncodedConversation:
    """Token ids of the conversation and labels that keep only its reply tokens."""

    def tokenize(text: str) -> list[int]:
        # The template writes any BOS itself (as for the engine), so none is added here.
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    tokens, spans = reply_spans(template, tokenize, messages)
    labels = [IGNORED] * len(tokens)
    for span in spans:
        labels[span.start : span.stop] = tokens[span.start : span.stop]
    return EncodedConversation(tokens, labels)


def encode_all(
    template: ChatTemplate,
    tokenizer: Any,
    conversations: list[list[ChatMessage]],
    sources: list[str],
    max_length: int,
) -> list[EncodedConversation]:
    """Every conversation encoded; conversations longer than ``max_length`` tokens are
    reported (all of them at once), not cut: a cut reply would teach the model to stop
    mid-sentence."""
    encoded, too_long = [], []
    for messages, source in zip(conversations, sources, strict=True):
        item = encode_conversation(template, tokenizer, messages)
        if len(item.input_ids) > max_length:
            too_long.append(f"{source}: {len(item.input_ids)} tokens")
        encoded.append(item)
    if too_long:
        listed = "\n  ".join(too_long[:_MAX_LISTED])
        more = len(too_long) - _MAX_LISTED
        raise DataError(
            f"{len(too_long)} conversation(s) longer than training.max_length ({max_length} "
            f"tokens, chat template included):\n  {listed}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nShorten or remove them, or raise training.max_length."
        )
    return encoded


def sample(items: list[Any], limit: int | None, seed: int) -> list[Any]:
    """At most ``limit`` of ``items``, a seeded random choice in their original order."""
    if limit is None or len(items) <= limit:
        return items
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def train_lora(
    weights: Path,
    settings: ChatTrainingConfig,
    train: tuple[list[list[ChatMessage]], list[str]],
    validation: tuple[list[list[ChatMessage]], list[str]],
    notify: Notify,
) -> TunedChat:
    """LoRA on the GGUF at ``weights`` with the (conversations, sources) of train and
    validation; the adapters merged into the returned model."""
    if not validation[0]:
        raise DataError("fine-tuning needs validation conversations to stop early on")
    set_seed(settings.seed)
    model, tokenizer = load_base(weights)
    template = template_of(tokenizer, weights)
    conversations, sources = (sample(part, settings.max_examples, settings.seed) for part in train)
    train_set = encode_all(template, tokenizer, conversations, sources, settings.max_length)
    validation_set = encode_all(template, tokenizer, *validation, settings.max_length)
    lora = settings.lora
    adapted = get_peft_model(
        model,
        PeftLoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    trainable, total = adapted.get_nb_trainable_parameters()
    notify(
        f"LoRA rank {lora.rank} on {', '.join(lora.target_modules)}: {trainable:,} trainable "
        f"parameters ({trainable / total:.2%} of {total:,})"
    )
    tuned = fine_tune(
        cast(PreTrainedModel, adapted),
        settings,
        settings.epochs,
        (_Conversations(train_set), _Conversations(validation_set)),
        DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORED),
        None,
        Metric("loss", "loss", higher_is_better=False),
        notify,
        eval_batch_size=settings.batch_size,
    )
    started = time.perf_counter()
    merged = cast(PreTrainedModel, cast(Any, tuned.model).merge_and_unload())
    merged.eval()
    tokens_seen = sum(len(item.input_ids) for item in train_set) * tuned.epochs_run
    metrics: dict[str, Any] = {
        "train_seconds": round(tuned.seconds, 1),
        "train_conversations": len(train_set),
        "train_reply_tokens": sum(item.reply_tokens for item in train_set),
        "train_tokens_per_second": round(tokens_seen / max(tuned.seconds, 1e-9), 1),
        "epochs_run": tuned.epochs_run,
        "validation_loss": tuned.best_score,
        "validation_perplexity": math.exp(tuned.best_score),
        "lora_rank": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "lora_target_modules": ",".join(lora.target_modules),
        "lora_trainable_parameters": trainable,
        "merge_seconds": round(time.perf_counter() - started, 1),
    }
    return TunedChat(merged, tokenizer, metrics)
