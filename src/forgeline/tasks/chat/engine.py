"""Continuous-batching text generation on CPU from one GGUF model, for asyncio callers.

One thread owns the llama.cpp context (a context is not thread-safe) and runs the decode loop
of :class:`~forgeline.tasks.chat.batcher.Batcher`: a request that arrives while others run
joins the batch at the next decode step. :meth:`GenerationEngine.submit`, called on the
caller's event loop, refuses work at once (overload, context overflow, bad input) and returns
a :class:`GenerationStream` that yields text as it is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import llama_cpp

from forgeline.errors import InputError
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.chat._native import (
    ContextSettings,
    NativeContext,
    NativeModel,
    SamplerChain,
    SamplingSettings,
)
from forgeline.tasks.chat.batcher import Batcher, common_prefix_length
from forgeline.tasks.chat.prompting import ChatTemplate
from forgeline.tasks.chat.stream import GenerationStream, Job, deliver
from forgeline.tasks.generation import (
    ContextLengthExceeded,
    EngineClosed,
    EngineOverloaded,
    Finished,
    FinishReason,
    GenerationRequest,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestStats:
    """What one ended request cost, for metrics (see ``on_request_finished``)."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    time_to_first_token: float | None
    seconds: float
    """From submission to the end, queueing included."""


class GenerationEngine:
    """Serves many concurrent generation requests from one GGUF model by continuous batching.

    ``parallel`` sequences decode together, each with a KV-cache region of
    ``n_ctx_per_sequence`` tokens; up to ``max_queue`` more requests wait for a free slot and
    any beyond that are refused with :class:`EngineOverloaded`. ``threads`` defaults to the
    CPUs this process may use; on a machine shared with other busy processes fewer threads
    can be faster, because llama.cpp's threads wait for each other at every graph node.
    ``n_batch`` caps the tokens of one decode step (prompt chunks included). At start-up the
    opening every conversation shares (the chat template's preamble and ``system_prompt``) is
    decoded into every sequence, whose cached tokens later requests reuse (see Batcher).

    Run one engine per process and no other llama.cpp model in it: llama.cpp's OpenMP
    threads slow down sharply once a second thread of the process has run llama.cpp (one
    stream fell from 109 to 42 tokens/s on the 2-core dev machine).
    ``on_request_finished`` is called on the engine thread for every request that ends (it
    must be quick and thread-safe, e.g. a Prometheus observe).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx_per_sequence: int,
        parallel: int,
        threads: int | None,
        max_queue: int,
        n_batch: int = 512,
        system_prompt: str | None = None,
        on_request_finished: Callable[[RequestStats], None] | None = None,
        verbose: bool = False,
    ) -> None:
        if parallel < 1 or max_queue < 0 or n_ctx_per_sequence < 1:
            raise ValueError("parallel and n_ctx_per_sequence must be positive, max_queue >= 0")
        if n_batch < parallel:
            raise ValueError(f"n_batch ({n_batch}) must hold one token per sequence ({parallel})")
        # llama-cpp-python routes llama.cpp's log through this logger; INFO is one line per
        # tensor and setting, which drowns a server's own log.
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        self.n_ctx_per_sequence = n_ctx_per_sequence
        self.parallel = parallel
        self.max_queue = max_queue
        self._on_request_finished = on_request_finished
        self._model = NativeModel(model_path)
        try:
            template = self._model.chat_template()
            self._chat_template = (
                ChatTemplate(
                    template, bos_token=self._model.bos_token, eos_token=self._model.eos_token
                )
                if template
                else None
            )
            self._context = NativeContext(
                self._model,
                ContextSettings(
                    n_ctx_per_sequence=n_ctx_per_sequence,
                    parallel=parallel,
                    threads=threads or len(os.sched_getaffinity(0)),
                    n_batch=n_batch,
                    n_ubatch=n_batch,
                ),
            )
        except BaseException:
            self._model.free()
            raise
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._outstanding = 0  # submitted and not yet finished; guarded by _lock
        self._failure: BaseException | None = None
        self._closing = False
        self._batcher = Batcher(self._model, self._context, parallel, self._end_job)
        self._shared_opening = self._opening(system_prompt)
        self._thread = threading.Thread(target=self._run, name="chat-engine", daemon=True)
        self._thread.start()

    # ----- caller side (any thread; submit on the event loop that will read the stream)

    @property
    def active_sequences(self) -> int:
        """Sequences holding a slot right now."""
        return len(self._batcher.running)

    @property
    def reused_prompt_tokens(self) -> int:
        """Prompt tokens taken from cached sequences instead of decoded, since the start."""
        return self._batcher.reused_tokens

    @property
    def queue_depth(self) -> int:
        """Accepted requests still waiting for a slot."""
        with self._lock:
            return max(self._outstanding - len(self._batcher.running), 0)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Token ids of ``text``, parsing special-token text such as ``<|im_end|>``."""
        with self._open_model() as model:
            return model.tokenize(text, add_special=add_special, parse_special=True)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """``messages`` in the model's own chat template, ready for the assistant's reply."""
        if self._chat_template is None:
            raise ValueError("this model's GGUF metadata has no chat template")
        return self._chat_template.render(messages)

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Prompt token ids for ``messages``; their count is what a chat request's prompt costs."""
        # The template writes any BOS itself, so the tokenizer must not add another.
        return self.tokenize(self.render_chat(messages), add_special=False)

    def submit(self, request: GenerationRequest) -> GenerationStream:
        """Queue ``request`` and return its stream; raise at once if it cannot be served.

        Raises :class:`InputError` subclasses for bad requests (:class:`ContextLengthExceeded`
        among them), :class:`EngineOverloaded` when the queue is full, and
        :class:`EngineClosed` after :meth:`close` or a failure of the decode thread.
        """
        request.check()
        loop = asyncio.get_running_loop()
        with self._open_model() as model:
            prompt = (
                model.tokenize(request.prompt, add_special=True, parse_special=True)
                if isinstance(request.prompt, str)
                else list(request.prompt)
            )
            if any(not 0 <= token < model.n_vocab for token in prompt):
                # llama_decode would fail the whole batch, and every request in it, on one.
                raise InputError(f"the prompt has token ids outside [0, {model.n_vocab})")
            if len(prompt) + request.max_tokens > self.n_ctx_per_sequence:
                raise ContextLengthExceeded(
                    len(prompt), request.max_tokens, self.n_ctx_per_sequence
                )
            try:
                sampler = SamplerChain(
                    model,
                    SamplingSettings(
                        temperature=request.temperature,
                        top_p=request.top_p,
                        seed=llama_cpp.LLAMA_DEFAULT_SEED if request.seed is None else request.seed,
                        grammar=request.grammar,
                    ),
                )
            except ValueError as error:
                raise InputError(str(error)) from error
            job = Job(
                prompt=prompt,
                max_tokens=request.max_tokens,
                stops=tuple(request.stop),
                sampler=sampler,
                loop=loop,
                events=asyncio.Queue(),
                submitted_at=time.perf_counter(),
            )
            # Checking and enqueueing under one lock means a job is either refused here or
            # seen by the engine thread, which drains the inbox under this lock at shutdown.
            with self._lock:
                refusal: Exception | None = None
                if self._failure is not None or self._closing:
                    refusal = EngineClosed("the generation engine is closed")
                elif self._outstanding >= self.parallel + self.max_queue:
                    refusal = EngineOverloaded(
                        f"all {self.parallel} sequences are busy and {self.max_queue} requests "
                        f"are already waiting"
                    )
                else:
                    self._outstanding += 1
                    self._inbox.put(job)
            if refusal is not None:
                sampler.free()
                raise refusal
        return GenerationStream(job)

    def close(self) -> None:
        """Stop the decode thread, fail outstanding streams with :class:`EngineClosed`, free
        the model. Idempotent."""
        with self._lock:
            self._closing = True
        self._inbox.put(None)
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _open_model(self) -> Iterator[NativeModel]:
        """The model, kept from being freed while a caller's thread tokenizes with it."""
        with self._model_lock:
            if self._model.pointer is None:
                raise EngineClosed("the generation engine is closed")
            yield self._model

    def _opening(self, system_prompt: str | None) -> list[int]:
        """The prompt tokens every conversation starts with: those two different ones share."""
        if self._chat_template is None:
            return []
        system = [ChatMessage(role="system", content=system_prompt)] if system_prompt else []
        try:
            first, second = (
                self.chat_prompt([*system, ChatMessage(role="user", content=text)])
                for text in ("a", "b")
            )
        except Exception:  # a template that refuses this shape: nothing to preload, and the
            # request that sends it gets the template's error itself
            logger.debug("no shared opening to preload", exc_info=True)
            return []
        shared = common_prefix_length(first, second)
        return first[:shared] if shared < self.n_ctx_per_sequence else []

    # ----- engine thread

    def _run(self) -> None:
        batcher = self._batcher
        try:
            batcher.preload(self._shared_opening)
            while self._take_new_jobs():
                deliver(batcher.drop_cancelled())
                batcher.admit_waiting()
                if batcher.running:
                    deliver(batcher.step())
            error: BaseException = EngineClosed("the generation engine was closed")
        except BaseException as failure:  # the thread must never die silently
            logger.exception("chat engine decode loop failed")
            error = EngineClosed(f"the generation engine failed: {failure!r}")
            with self._lock:
                self._failure = failure
        finally:
            self._shut_down(error)

    def _take_new_jobs(self) -> bool:
        """Move submitted jobs into the waiting line, blocking while there is nothing to do;
        False once :meth:`close` was called."""
        try:
            job = self._inbox.get(block=self._batcher.idle)
            while job is not None:
                self._batcher.waiting.append(job)
                job = self._inbox.get_nowait()
            return False
        except queue.Empty:
            return True

    def _end_job(self, job: Job, finished: Finished) -> None:
        job.sampler.free()
        with self._lock:
            self._outstanding -= 1
        if self._on_request_finished is not None:
            self._on_request_finished(
                RequestStats(
                    prompt_tokens=finished.prompt_tokens,
                    completion_tokens=finished.completion_tokens,
                    finish_reason=finished.finish_reason,
                    time_to_first_token=finished.time_to_first_token,
                    seconds=time.perf_counter() - job.submitted_at,
                )
            )

    def _shut_down(self, error: BaseException) -> None:
        """Fail every outstanding stream with ``error`` and free the native objects."""
        leftovers = self._batcher.jobs()
        with self._lock:
            self._closing = True
            while True:
                try:
                    job = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    leftovers.append(job)
        for job in leftovers:
            job.sampler.free()
        deliver([(job, error) for job in leftovers])
        self._context.free()
        with self._model_lock:
            self._model.free()
