"""Continuous batching: which tokens go into each decode step, and what comes out of it.

Used only by the engine thread, so nothing here locks. Each step builds one llama.cpp batch
with the next token of every running sequence plus prompt chunks of newly admitted ones,
decodes it, and samples one token per sequence from that sequence's own sampler chain. A
sequence that ends frees its sequence id and KV cells, and the next waiting job takes them at
the following step.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from forgeline.tasks.chat._native import NativeContext, NativeModel
from forgeline.tasks.chat.request import Finished, FinishReason, TextChunk
from forgeline.tasks.chat.stops import StopMatcher, Utf8Stream
from forgeline.tasks.chat.stream import Delivery, Job


@dataclass(eq=False)
class _Sequence:
    """A job that holds a sequence id, and how far it has got."""

    job: Job
    seq_id: int
    position: int = 0
    """Tokens of this sequence in the KV cache (prompt first, then generated)."""
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
    def prefilling(self) -> bool:
        return self.position < len(self.job.prompt)


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
        self._free_ids = list(range(parallel))

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    def jobs(self) -> list[Job]:
        """Every job still held, running or waiting."""
        return [s.job for s in self.running.values()] + list(self.waiting)

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
        while self._free_ids and self.waiting:
            # The lowest free id keeps running ids consecutive, which lets llama.cpp decode
            # all sequences' tokens in one micro-batch (see NativeContext).
            self._free_ids.sort()
            seq_id = self._free_ids.pop(0)
            self.running[seq_id] = _Sequence(job=self.waiting.popleft(), seq_id=seq_id)

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
                sequence.position += 1
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
            sequence.position += len(chunk)
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
        """Free the sequence's id and KV cells; send its held-back text and Finished event."""
        del self.running[sequence.seq_id]
        self._context.forget_sequence(sequence.seq_id)
        self._free_ids.append(sequence.seq_id)
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
