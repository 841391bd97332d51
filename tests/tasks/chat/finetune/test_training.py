"""What the LoRA run learns from: reply tokens only, rendered as the engine renders them."""

from __future__ import annotations

from typing import Any

import pytest

from forgeline.base_models import resolve_gguf
from forgeline.errors import DataError
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.chat.finetune.training import (
    IGNORED,
    encode_all,
    encode_conversation,
    sample,
    template_of,
)
from forgeline.tasks.chat.prompting import ChatTemplate

CONVERSATION = [
    ChatMessage(role="system", content="You are the Northwind Bank assistant."),
    ChatMessage(role="user", content="I lost my card."),
    ChatMessage(role="assistant", content="Please lock it in the app straight away."),
    ChatMessage(role="user", content="Done. What next?"),
    ChatMessage(role="assistant", content="We will send a new card within five days."),
]


@pytest.fixture(scope="module")
def tokenizer_and_template() -> tuple[Any, ChatTemplate]:
    from transformers import AutoTokenizer

    weights, _ = resolve_gguf("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(weights.parent, gguf_file=weights.name)
    return tokenizer, template_of(tokenizer, weights)


def test_only_the_assistant_replies_carry_loss(
    tokenizer_and_template: tuple[Any, ChatTemplate],
) -> None:
    tokenizer, template = tokenizer_and_template
    encoded = encode_conversation(template, tokenizer, CONVERSATION)
    assert len(encoded.labels) == len(encoded.input_ids)
    # Runs of labelled tokens, decoded: exactly the two replies, each with its end of turn.
    runs: list[list[int]] = []
    for position, label in enumerate(encoded.labels):
        if label == IGNORED:
            continue
        assert label == encoded.input_ids[position]
        if runs and encoded.labels[position - 1] != IGNORED:
            runs[-1].append(label)
        else:
            runs.append([label])
    replies = [tokenizer.decode(run) for run in runs]
    assert [reply.split("<|im_end|>")[0] for reply in replies] == [
        "Please lock it in the app straight away.",
        "We will send a new card within five days.",
    ]
    assert all("<|im_end|>" in reply for reply in replies)  # ending the turn is learnt too
    masked = tokenizer.decode(
        [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label == IGNORED]
    )
    assert "I lost my card." in masked and "Northwind" in masked
    assert "Please lock" not in masked


def test_the_training_text_is_the_served_prompt_format(
    tokenizer_and_template: tuple[Any, ChatTemplate],
) -> None:
    tokenizer, template = tokenizer_and_template
    encoded = encode_conversation(template, tokenizer, CONVERSATION[:3])
    text = tokenizer.decode(encoded.input_ids)
    assert text == template.render(CONVERSATION[:3], add_generation_prompt=False)
    assert text.startswith("<|im_start|>system\nYou are the Northwind Bank assistant.<|im_end|>")
    assert encoded.input_ids.count(tokenizer.bos_token_id) == text.count(tokenizer.bos_token)


def test_conversations_longer_than_max_length_are_reported_not_cut(
    tokenizer_and_template: tuple[Any, ChatTemplate],
) -> None:
    tokenizer, template = tokenizer_and_template
    long_one = [*CONVERSATION[:2], ChatMessage(role="assistant", content="word " * 300)]
    with pytest.raises(DataError) as error:
        encode_all(
            template,
            tokenizer,
            [CONVERSATION, long_one],
            ["data/train.jsonl, line 1", "data/train.jsonl, line 2"],
            max_length=128,
        )
    message = str(error.value)
    assert "1 conversation(s) longer than training.max_length (128 tokens" in message
    assert "data/train.jsonl, line 2: 3" in message  # its token count (over 300)
    assert "line 1" not in message


def test_max_examples_is_a_seeded_sample_in_file_order() -> None:
    items = list(range(100))
    chosen = sample(items, 10, seed=7)
    assert len(chosen) == 10 and chosen == sorted(chosen)
    assert chosen == sample(items, 10, seed=7)
    assert chosen != sample(items, 10, seed=8)
    assert sample(items, None, seed=7) == items and sample(items, 500, seed=7) == items
