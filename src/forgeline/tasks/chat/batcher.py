"""Continuous batching: which tokens go into each decode step, and what comes out of it.

Used only by the engine thread, so nothing here locks. Each step builds one llama.cpp batch
with the next token of every running sequence plus prompt chunks of newly admitted ones,
decodes it, and samples one token per sequence from that sequence's own sampler chain. A
sequence that ends frees its sequence id, and the next waiting job takes it at the following
step.

A freed sequence keeps its KV cells: a new request whose prompt starts with the same tokens
(the chat template's preamble and system prompt, or the earlier turns of the same
conversation) reuses them and prefills only the rest. On a CPU, where a prompt token costs
about as much as a generated one, that is most of the time to first token. (llama.cpp's own
server does the same; llama-cpp-python's ``Llama`` does it for its one sequence.)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from forgeline.tasks.chat._native import NativeContext, NativeModel
from forgeline.tasks.chat.stops import StopMatcher, Utf8Stream
from forgeline.tasks.chat.stream import Delivery, Job
from forgeline.tasks.generation import Finished, FinishReason, TextChunk


@dataclass(eq=False)
class _Sequence:
    """A job that holds a sequence id, and how far it has got."""

    job: Job
    seq_id: int
    cached: list[int]
    """The tokens in this sequence's KV cache, in order (prompt first, then generated)."""
    next_token: int = -1
    batch_index: int = -1
    """Where this sequence's logits are in the current batch; -1 when it has none."""
    completion_tokens: int = 0
    first_token_at: float | None = None
    utf8: Utf8Stream = field(default_factory=Utf8Stream)
    stops: StopMatcher = field(init=False)

    def __post_init__(self) -> None:
        self.stops = StopMatcher(self.job.stops)

    @property
    def position(self) -> int:
        return len(self.cached)

    @property
    def prefilling(self) -> bool:
        return self.position < len(self.job.prompt)


def common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading tokens the two sequences share."""
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        if a != b:
            return index
    return min(len(first), len(second))


def _shared_prefix(cached: list[int], prompt: list[int]) -> int:
    """How many of ``prompt``'s tokens can come from ``cached``: their common prefix, less at
    least the prompt's last token, whose logits the first sampled token needs."""
    return max(min(common_prefix_length(cached, prompt), len(prompt) - 1), 0)


class Batcher:
    """Runs up to ``parallel`` sequences through one context; ``on_end`` hears of every job
    that ends (finished or cancelled) so the engine can free its sampler and count it."""

    def __init__(
        self,
        model: NativeModel,
        context: NativeContext,
        parallel: int,
        on_end: Callable[[Job, Finished], None],
    ) -> None:
        self._model = model
        self._context = context
        self._on_end = on_end
        self.waiting: deque[Job] = deque()
        self.running: dict[int, _Sequence] = {}
        self._free: dict[int, list[int]] = {seq_id: [] for seq_id in range(parallel)}
        """Free sequence ids and the tokens still cached in each."""
        self.reused_tokens = 0
        """Prompt tokens taken from the cache instead of decoded, since the start."""

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    def jobs(self) -> list[Job]:
        """Every job still held, running or waiting."""
        return [s.job for s in self.running.values()] + list(self.waiting)

    def preload(self, prefix: list[int]) -> None:
        """Decode ``prefix`` into every free sequence, so that requests starting with it (the
        opening every conversation shares) prefill only the rest, from the first one on."""
        if not prefix:
            return
        context = self._context
        capacity = context.batch_capacity
        free = sorted(seq_id for seq_id, cached in self._free.items() if not cached)
        # Several sequences' prefixes per batch where they fit; else one sequence's prefix
        # in batch-sized pieces.
        per_batch = max(capacity // len(prefix), 1)
        for start in range(0, len(free), per_batch):
            group = free[start : start + per_batch]
            for piece in range(0, len(prefix), capacity):
                context.clear_batch()
                for seq_id in group:
                    for position in range(piece, min(piece + capacity, len(prefix))):
                        context.add_to_batch(prefix[position], position, seq_id, output=False)
                context.decode()
            for seq_id in group:
                self._free[seq_id] = list(prefix)

    def drop_cancelled(self) -> list[Delivery]:
        """End the cancelled jobs. Each still gets its Finished event, with the tokens it had
        produced: a stream's consumer may be waiting on it, and metering needs the count."""
        deliveries: list[Delivery] = []
        for sequence in [s for s in self.running.values() if s.job.cancelled]:
            self._finish(sequence, "cancelled", deliveries)
        for job in [j for j in self.waiting if j.cancelled]:
            self.waiting.remove(job)
            finished = Finished(len(job.prompt), 0, "cancelled", None)
            self._on_end(job, finished)
            deliveries.append((job, finished))
        return deliveries

    def admit_waiting(self) -> None:
        while self._free and self.waiting:
            job = self.waiting.popleft()
            # The longest reusable prefix wins; among equals (usually all share the system
            # prompt) the lowest id, which keeps running ids consecutive and so lets llama.cpp
            # decode all sequences' tokens in one micro-batch (see NativeContext).
            seq_id = max(
                self._free, key=lambda free: (_shared_prefix(self._free[free], job.prompt), -free)
            )
            cached = self._free.pop(seq_id)
            keep = _shared_prefix(cached, job.prompt)
            if not self._context.truncate_sequence(seq_id, keep):
                self._context.forget_sequence(seq_id)
                keep = 0
            self.reused_tokens += keep
            self.running[seq_id] = _Sequence(job=job, seq_id=seq_id, cached=cached[:keep])

    def step(self) -> list[Delivery]:
        """Decode one batch; return the text and Finished events it produced."""
        context = self._context
        context.clear_batch()
        ordered = sorted(self.running.values(), key=lambda s: s.seq_id)
        # Decoding sequences always get their token; prompts share what is left of the batch.
        prefill_budget = context.batch_capacity - sum(not s.prefilling for s in ordered)
        for sequence in ordered:
            sequence.batch_index = -1
            if not sequence.prefilling:
                sequence.batch_index = context.add_to_batch(
                    sequence.next_token, sequence.position, sequence.seq_id, output=True
                )
                sequence.cached.append(sequence.next_token)
                continue
            prompt = sequence.job.prompt
            chunk = prompt[sequence.position : sequence.position + prefill_budget]
            prefill_budget -= len(chunk)
            for offset, token in enumerate(chunk):
                last = sequence.position + offset == len(prompt) - 1
                index = context.add_to_batch(
                    token, sequence.position + offset, sequence.seq_id, output=last
                )
                if last:
                    sequence.batch_index = index
            sequence.cached.extend(chunk)
        context.decode()

        deliveries: list[Delivery] = []
        for sequence in ordered:
            if sequence.batch_index >= 0:
                self._advance(sequence, deliveries)
        return deliveries

    def _advance(self, sequence: _Sequence, deliveries: list[Delivery]) -> None:
        """Sample the sequence's next token and turn it into text, or end the sequence."""
        token = sequence.job.sampler.sample(self._context, sequence.batch_index)
        if sequence.first_token_at is None:
            sequence.first_token_at = time.perf_counter()
        if self._model.is_end_of_generation(token):
            self._finish(sequence, "stop", deliveries)
            return
        sequence.completion_tokens += 1
        sequence.next_token = token
        text = sequence.utf8.feed(self._model.token_bytes(token))
        if text:
            check = sequence.stops.feed(text)
            if check.text:
                deliveries.append((sequence.job, TextChunk(check.text, sequence.completion_tokens)))
            if check.stopped:
                self._finish(sequence, "stop", deliveries)
                return
        if sequence.completion_tokens >= sequence.job.max_tokens:
            self._finish(sequence, "length", deliveries)

    def _finish(
        self, sequence: _Sequence, reason: FinishReason, deliveries: list[Delivery]
    ) -> None:
        """Free the sequence's id (its KV cells stay for reuse); send its held-back text and
        Finished event."""
        del self.running[sequence.seq_id]
        self._free[sequence.seq_id] = sequence.cached
        job = sequence.job
        if reason != "cancelled" and not sequence.stops.stopped:
            tail = sequence.stops.feed(sequence.utf8.flush())
            text = tail.text if tail.stopped else tail.text + sequence.stops.flush()
            if text:
                deliveries.append((job, TextChunk(text, sequence.completion_tokens)))
        ttft = (
            None if sequence.first_token_at is None else sequence.first_token_at - job.submitted_at
        )
        finished = Finished(len(job.prompt), sequence.completion_tokens, reason, ttft)
        self._on_end(job, finished)
        deliveries.append((job, finished))
