from __future__ import annotations

from collections.abc import Iterator

import torch

from forgeline.base_models import resolve_base_model
from forgeline.config.knowledge import EncoderTuningConfig
from forgeline.tasks.knowledge_qa.embedder import SentenceEmbedder
from forgeline.tasks.knowledge_qa.index import Embed
from forgeline.tasks.knowledge_qa.knowledge_base import Entry, KnowledgeBase
from forgeline.tasks.knowledge_qa.tuning import tune_encoder, tuning_pairs

KNOWLEDGE = KnowledgeBase(
    [
        Entry("lost", "I lost my card", "Freeze it in the app.", ("card missing",)),
        Entry("pin", "How do I change my PIN?", "At any ATM."),
        Entry("hours", "When are you open?", "Monday to Friday, 9 to 5."),
    ]
)


def test_pairs_pull_phrasings_and_questions_towards_their_entry() -> None:
    pairs = tuning_pairs(KNOWLEDGE, ["where did my card go", "weather?"], ["lost", "none"])
    assert list(zip(pairs.anchors, pairs.positives, strict=True)) == [
        ("card missing", "I lost my card"),
        ("I lost my card", "Freeze it in the app."),
        ("How do I change my PIN?", "At any ATM."),
        ("When are you open?", "Monday to Friday, 9 to 5."),
        ("where did my card go", "I lost my card"),
        ("where did my card go", "Freeze it in the app."),
    ]


def test_tuning_that_never_beats_the_untuned_encoder_is_undone() -> None:
    scores: Iterator[float] = iter([0.9, 0.5, 0.4])  # before training, then each epoch

    def worse_each_epoch(embed: Embed) -> float:
        assert embed(["a question"]).shape == (1, 384)
        return next(scores)

    base = resolve_base_model("minilm-l6")
    pairs = tuning_pairs(KNOWLEDGE, [], [])
    settings = EncoderTuningConfig(epochs=3, learning_rate=1e-3, batch_size=2, device="cpu")
    tuned = tune_encoder(base, pairs, worse_each_epoch, settings, lambda message: None)
    assert tuned.best_epoch == 0 and tuned.validation_mrr_after == 0.9
    # Stopped after one epoch without improvement (patience 1), weights as they were.
    assert next(scores) == 0.4
    untouched = SentenceEmbedder.from_pretrained(base, use_safetensors=True)
    for (name, value), (_, original) in zip(
        tuned.model.encoder.state_dict().items(),
        untouched.encoder.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(value, original), name
