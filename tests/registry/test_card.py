from __future__ import annotations

from forgeline.registry.card import render_model_card

MANIFEST = {
    "name": "desk",
    "version": "v2",
    "task": "chat",
    "base_model": "smollm2-135m",
    "created_at": "2026-12-02T00:00:00+00:00",
    "labels": [],
    "data_fingerprint": {"sha256": "ab" * 32},
    "packages": {"forgeline": "0.1.0"},
}


def test_the_registered_card_points_at_evaluate_for_test_metrics() -> None:
    card = render_model_card(MANIFEST, {"lora_rank": 16, "validation_loss": 1.25})
    assert "| lora_rank | 16 |" in card and "| validation_loss | 1.2500 |" in card
    assert "written by `forgeline evaluate`" in card and "## Test metrics" not in card


def test_the_evaluated_card_states_the_test_metrics() -> None:
    card = render_model_card(MANIFEST, {"lora_rank": 16}, [("ROUGE-L", "0.41 (base 0.22)")])
    assert "## Test metrics (`forgeline evaluate`)" in card
    assert "| ROUGE-L | 0.41 (base 0.22) |" in card
    assert f"`{'ab' * 32}`" in card and "smollm2-135m" in card
