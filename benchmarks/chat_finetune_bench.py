"""Chat fine-tuning on Bitext customer-support pairs: the fine-tuned model against the base model
it came from, in one run (the chat fine-tuning issue's quality bar).

Runs ``examples/support-chat`` as a user would (``forgeline train`` then ``forgeline
evaluate``, in a scratch copy of the project) and prints, from the evaluation of the held-out
test pairs (the same seeded split for both models): perplexity of the reference replies,
ROUGE-L and exact match of greedy replies, mean reply length; then training wall time and the
export's parity numbers; then single-stream decoding speed (tokens/s, greedy, llama.cpp) of the
base GGUF and the exported one, measured alternately on the same prompts. Exits 1 unless
perplexity <= 0.5x the base's, ROUGE-L >= the base's + 0.10, training <= 30 minutes, and the
export decodes at >= 0.8x the base's speed.

    python benchmarks/chat_finetune_bench.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support-chat" / "forgeline.yaml"
SPEED_PROMPTS = (
    "how can I cancel my order?",
    "I want to change the shipping address of my purchase",
    "where can I see the invoices from last year?",
    "I need help to recover my account password",
)
SPEED_TOKENS = 128
TRAINING_LIMIT_S = 30 * 60


def forgeline(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "forgeline", *args],
        cwd=cwd,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return time.perf_counter() - started


def decode_speed(path: Path) -> float:
    """Tokens per second of greedy decoding, one stream, two threads, after a warm-up."""
    from llama_cpp import CreateCompletionResponse, Llama

    model = Llama(str(path), n_ctx=512, n_threads=2, verbose=False)
    model.create_completion("Hello", max_tokens=8)
    tokens, seconds = 0, 0.0
    for prompt in SPEED_PROMPTS:
        started = time.perf_counter()
        # The same prompt tokens for both (SmolLM2's ChatML turn markers): only decoding differs.
        reply = model.create_completion(
            f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
            max_tokens=SPEED_TOKENS,
            temperature=0,
        )
        seconds += time.perf_counter() - started
        tokens += cast(CreateCompletionResponse, reply)["usage"]["completion_tokens"]
    model.close()
    return tokens / seconds


def main() -> int:
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    train_file = (EXAMPLE.parent / config["data"]["train"]).resolve()
    if not train_file.is_file():
        print(f"{train_file} is absent: nothing to measure")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        config["data"]["train"] = str(train_file)
        (project / "forgeline.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        train_wall = forgeline("train", cwd=project)
        forgeline("evaluate", cwd=project)
        version = project / "models" / config["name"] / "v1"
        metrics = json.loads((version / "evaluation" / "metrics.json").read_text())
        settings = json.loads((version / "chat.json").read_text())
        training = settings["training_metrics"]
        speeds = {"base": 0.0, "fine-tuned": 0.0}
        for _ in range(2):  # alternately, so drift on the machine hits both alike
            speeds["base"] += decode_speed(Path(settings["tuned_from"]["path"])) / 2
            speeds["fine-tuned"] += decode_speed(version / "model.gguf") / 2
    print(f"\ntest pairs: {metrics['conversations']}")
    print(f"{'':22}{'base':>10}{'fine-tuned':>12}")
    for key, name in (
        ("perplexity", "perplexity"),
        ("rouge_l", "ROUGE-L"),
        ("exact_match", "exact match"),
        ("mean_reply_words", "mean reply words"),
    ):
        print(f"{name:22}{metrics['base_' + key]:>10.4f}{metrics[key]:>12.4f}")
    print(f"{'reference words':22}{metrics['mean_reference_words']:>10.1f}")
    print(
        f"\ntraining: {training['train_conversations']} pairs, {training['epochs_run']:g} epochs, "
        f"{training['train_seconds']:.0f} s of training ({training['train_tokens_per_second']:.0f}"
        f" tokens/s), validation loss {training['validation_loss']:.4f}; `forgeline train` "
        f"{train_wall / 60:.1f} min wall time (loading, training, export, parity check)"
    )
    print(
        f"export: {training['export_quantization']}, parity token agreement "
        f"{training['parity_token_agreement']:.3f}, perplexity change "
        f"{training['parity_perplexity_change']:+.4f}"
    )
    ratio = speeds["fine-tuned"] / speeds["base"]
    print(
        f"decoding: base {speeds['base']:.1f} tokens/s, fine-tuned ({training['export_quantization']}) "
        f"{speeds['fine-tuned']:.1f} tokens/s: {ratio:.2f}x"
    )
    checks = {
        "perplexity <= 0.5x base": metrics["perplexity_ratio_to_base"] <= 0.5,
        "ROUGE-L >= base + 0.10": metrics["rouge_l_gain_over_base"] >= 0.10,
        "training <= 30 min (wall time)": train_wall <= TRAINING_LIMIT_S,
        "decoding >= 0.8x base": ratio >= 0.8,
    }
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
