"""The gate between an exported GGUF and the registry: does llama.cpp, serving the file, behave
like the transformers model it was written from?

Checked, each reported as its own failure:

* **chat template**: the GGUF's metadata carries one (the engine prompts with it).
* **EOS token**: the GGUF's EOS id is the tokenizer's (generation stops where training taught).
* **prompt tokens**: each conversation minus its final reply, rendered with the GGUF's template
  and tokenized by llama.cpp as the engine does, equals the transformers tokenizer's
  ``apply_chat_template(..., add_generation_prompt=True)``. A changed template, a doubled BOS
  or a lost end-of-turn token shows up here, before any number is computed.
* **special tokens**: the same prompt text tokenized with each tokenizer's own special tokens
  added (``tokenizer.ggml.add_bos_token`` / ``add_eos_token`` on the llama.cpp side), as
  llama.cpp does for plain-text prompts (the engine's completions, llama-server's chat).
* **token agreement**: the transformers model continues each prompt greedily; llama.cpp is fed
  the same prompt and continuation (teacher forcing) and its greedy choice at each generated
  position is compared with the transformers token. Agreement is the share of matching
  positions over all conversations. Per position rather than "identical until the first
  divergence" because f16/q8_0 rounding legitimately flips near-ties: free-running, one flip
  would make every later token differ and fail a faithful export on a coin toss.
* **perplexity**: of the reference replies (every assistant turn, its end-of-turn token
  included) given the conversation before them, on both sides: llama.cpp through the
  project's own :class:`~forgeline.tasks.chat.scoring.Scorer`, transformers on the tokens and
  reply labels training used. The relative change must stay within the allowed ratio.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGUFReader, Keys

from forgeline.errors import ForgelineError
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.chat._native import ContextSettings, NativeContext, NativeModel
from forgeline.tasks.chat.finetune.training import IGNORED, encode_conversation
from forgeline.tasks.chat.prompting import ChatTemplate
from forgeline.tasks.chat.scoring import Scorer


@dataclass(frozen=True)
class ParityReport:
    """How closely the GGUF follows the transformers model; NaN where a check did not run."""

    token_agreement: float
    """Share of generated positions where llama.cpp's greedy token is the transformers one."""
    perplexity_transformers: float
    perplexity_gguf: float
    relative_perplexity_change: float
    """``perplexity_gguf / perplexity_transformers - 1``."""
    passed: bool
    failures: list[str]
    """One plain-English line per failed check, starting with the check's name."""


def check_parity(
    model: Any,
    tokenizer: Any,
    gguf_path: Path,
    conversations: Sequence[Sequence[ChatMessage]],
    max_new_tokens: int = 32,
    max_perplexity_ratio_change: float = 0.05,
    min_token_agreement: float = 0.9,
) -> ParityReport:
    """Compare the GGUF at ``gguf_path`` with ``model`` and its ``tokenizer`` on
    ``conversations`` (each ending with the reference assistant reply); see the module
    docstring for the checks. The report says whether it passed; raising is the caller's."""
    if not conversations or any(not c or c[-1]["role"] != "assistant" for c in conversations):
        raise ValueError("parity needs conversations that each end with an assistant reply")
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template to compare the GGUF's with")
    failures = _metadata_failures(tokenizer, gguf_path)
    prompts = [list(c[:-1]) for c in conversations]
    nan = math.nan
    agreement = ppl_transformers = ppl_gguf = nan
    was_training = model.training
    model.eval()
    try:
        gguf_model = NativeModel(gguf_path)
        try:
            template_text = gguf_model.chat_template()
            if template_text is None:
                failures.append(
                    "chat template: the GGUF's metadata has no tokenizer.chat_template, so "
                    "llama.cpp cannot prompt the model the way it was trained"
                )
                return ParityReport(nan, nan, nan, nan, passed=False, failures=failures)
            template = ChatTemplate(
                template_text, bos_token=gguf_model.bos_token, eos_token=gguf_model.eos_token
            )
            hf_prompts = [_hf_chat_tokens(tokenizer, p) for p in prompts]
            # As the engine does: the template writes any BOS itself, nothing is added.
            gguf_prompts = [
                gguf_model.tokenize(template.render(p), add_special=False, parse_special=True)
                for p in prompts
            ]
            failures += _differences("prompt tokens", tokenizer, gguf_prompts, hf_prompts)
            texts = [
                tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
                for p in prompts
            ]
            failures += _differences(
                "special tokens",
                tokenizer,
                [gguf_model.tokenize(t, add_special=True, parse_special=True) for t in texts],
                [list(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts],
            )
            continuations = [_greedy(model, tokenizer, ids, max_new_tokens) for ids in hf_prompts]
            agreement, divergence = _agreement(gguf_model, tokenizer, gguf_prompts, continuations)
        finally:
            gguf_model.free()
        if agreement < min_token_agreement:
            failures.append(
                f"token agreement: llama.cpp chose the transformers model's greedy token at "
                f"{agreement:.1%} of {sum(map(len, continuations))} generated positions, below "
                f"the required {min_token_agreement:.1%}; first divergence: {divergence}"
            )
        ppl_transformers, longest = _perplexity_transformers(model, tokenizer, conversations)
        try:
            # Twice the transformers length: room for a broken template's extra tokens.
            ppl_gguf = _perplexity_gguf(gguf_path, conversations, 2 * longest + 64)
        except ForgelineError as error:  # a broken template can make replies unlocatable
            failures.append(f"perplexity: llama.cpp could not score the replies ({error})")
    finally:
        model.train(was_training)
    change = ppl_gguf / ppl_transformers - 1
    if not math.isnan(change) and abs(change) > max_perplexity_ratio_change:
        failures.append(
            f"perplexity: the GGUF's perplexity on the reference replies is {ppl_gguf:.3f} "
            f"against {ppl_transformers:.3f} for the transformers model, a {change:+.1%} "
            f"change (allowed: ±{max_perplexity_ratio_change:.1%})"
        )
    return ParityReport(
        token_agreement=agreement,
        perplexity_transformers=ppl_transformers,
        perplexity_gguf=ppl_gguf,
        relative_perplexity_change=change,
        passed=not failures,
        failures=failures,
    )


def _metadata_failures(tokenizer: Any, gguf_path: Path) -> list[str]:
    """The EOS check, on the file's metadata (what llama.cpp reads)."""
    field = GGUFReader(gguf_path).get_field(Keys.Tokenizer.EOS_ID)
    eos = None if field is None else int(field.contents())
    if eos == tokenizer.eos_token_id:
        return []
    found = "no EOS id" if eos is None else f"EOS id {_show(tokenizer, eos)}"
    return [
        f"EOS token: the GGUF's metadata has {found} but the tokenizer's EOS is "
        f"{_show(tokenizer, tokenizer.eos_token_id)}, so llama.cpp would not stop "
        "generating where the model learnt to end its replies"
    ]


def _hf_chat_tokens(tokenizer: Any, prompt: list[ChatMessage]) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return [int(token) for token in encoded["input_ids"]]


def _show(tokenizer: Any, token: int) -> str:
    return f"{token} {tokenizer.decode([token])!r}"


def _differences(
    check: str, tokenizer: Any, gguf: list[list[int]], transformers: list[list[int]]
) -> list[str]:
    """One failure naming the first conversation whose token ids differ, and where."""
    differing = [i for i, (a, b) in enumerate(zip(gguf, transformers, strict=True)) if a != b]
    if not differing:
        return []
    index = differing[0]
    a, b = gguf[index], transformers[index]
    position = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    position = min(len(a), len(b)) if position is None else position
    shown = [_show(tokenizer, t[position]) if position < len(t) else "nothing" for t in (a, b)]
    hint = ""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is not None and a[:2] == [bos, bos] and b[:2] != [bos, bos]:
        hint = "; the GGUF prompt starts with a doubled BOS token"
    elif eos is not None and (a[-1:] == [eos]) != (b[-1:] == [eos]):
        hint = "; the GGUF prompt " + ("adds" if a[-1:] == [eos] else "lacks") + " a final EOS"
    return [
        f"{check}: llama.cpp's prompt for conversation {index + 1} differs from the "
        f"transformers tokenizer's at token {position}: {shown[0]} (GGUF) against {shown[1]} "
        f"(transformers), {len(a)} against {len(b)} tokens{hint} "
        f"({len(differing)} of {len(gguf)} conversations differ)"
    ]


def _greedy(model: Any, tokenizer: Any, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The transformers model's greedy continuation, ending at its EOS or the token limit."""
    ids = torch.tensor([prompt], device=model.device)
    with torch.inference_mode():
        output = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=(
                tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
            ),
        )
    return [int(token) for token in output[0, len(prompt) :]]


def _agreement(
    gguf_model: NativeModel,
    tokenizer: Any,
    prompts: list[list[int]],
    continuations: list[list[int]],
) -> tuple[float, str]:
    """Share of continuation positions where llama.cpp's argmax, given the prompt and the
    continuation so far, is the continuation's token; and the first position where not."""
    longest = max(len(p) + len(c) for p, c in zip(prompts, continuations, strict=True))
    context = NativeContext(
        gguf_model,
        ContextSettings(
            n_ctx_per_sequence=longest,
            parallel=1,
            threads=len(os.sched_getaffinity(0)),
            n_batch=longest,
            n_ubatch=longest,
        ),
    )
    matches, total, divergence = 0, 0, "none"
    try:
        for index, (prompt, continuation) in enumerate(zip(prompts, continuations, strict=True)):
            tokens = prompt + continuation
            # The logits at position t predict token t + 1.
            wanted = range(len(prompt) - 1, len(tokens) - 1)
            context.forget_sequence(0)
            context.clear_batch()
            outputs = [
                context.add_to_batch(token, position, 0, output=position in wanted)
                for position, token in enumerate(tokens)
            ]
            context.decode()
            for step, position in enumerate(wanted):
                logits = context.logits(outputs[position], gguf_model.n_vocab)
                chosen, expected = int(np.argmax(logits)), tokens[position + 1]
                matches += chosen == expected
                total += 1
                if chosen != expected and divergence == "none":
                    divergence = (
                        f"conversation {index + 1}, generated token {step}: "
                        f"{_show(tokenizer, chosen)} (GGUF) against "
                        f"{_show(tokenizer, expected)} (transformers)"
                    )
    finally:
        context.free()
    return matches / max(total, 1), divergence


def _perplexity_transformers(
    model: Any, tokenizer: Any, conversations: Sequence[Sequence[ChatMessage]]
) -> tuple[float, int]:
    """Perplexity of the reply tokens as training counts them (its template and labels), and
    the longest conversation's token count."""
    template = ChatTemplate(
        tokenizer.chat_template,
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
    )
    nll, count, longest = 0.0, 0, 0
    for messages in conversations:
        encoded = encode_conversation(template, tokenizer, list(messages))
        longest = max(longest, len(encoded.input_ids))
        ids = torch.tensor([encoded.input_ids], device=model.device)
        labels = torch.tensor(encoded.labels[1:], device=model.device)
        scored = labels != IGNORED
        with torch.inference_mode():
            # Only the rows that predict a reply token, then float64 for the log-softmax: the
            # whole logits matrix in float64 would be gigabytes for a long conversation.
            logits = model(ids).logits[0, :-1][scored].to(torch.float64)
        log_probs = torch.log_softmax(logits, dim=-1)
        nll -= float(log_probs.gather(1, labels[scored].unsqueeze(1)).sum())
        count += int(scored.sum())
    return math.exp(nll / count), longest


def _perplexity_gguf(
    gguf_path: Path, conversations: Sequence[Sequence[ChatMessage]], context_tokens: int
) -> float:
    """Perplexity of the reply tokens as the project's evaluation counts them in llama.cpp."""
    with Scorer(gguf_path, context_tokens=context_tokens) as scorer:
        scores = [
            scorer.score(messages, f"parity conversation {i + 1}")
            for i, messages in enumerate(conversations)
        ]
    return math.exp(sum(s.negative_log_likelihood for s in scores) / sum(s.tokens for s in scores))
