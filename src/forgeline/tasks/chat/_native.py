"""The only ctypes-level code of the chat task: thin, typed owners of llama.cpp objects.

llama-cpp-python's high-level ``Llama`` class drives one sequence at a time and cannot create
a context with several sequences (``n_seq_max``), so the engine talks to the C API that the
package binds in ``llama_cpp.llama_cpp``. Each class here owns one native object and frees it
exactly once; nothing else in the package touches raw pointers. The bindings annotate some
return values as ctypes types while ctypes actually returns plain Python ints (``restype``
conversion), which is why a few results are cast below.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import llama_cpp
import numpy as np
import numpy.typing as npt

# ``llama_token_to_piece`` writes at most this many bytes for ordinary tokens; a longer piece
# returns the negative size needed and is retried with a bigger buffer.
_PIECE_BUFFER_BYTES = 64


@functools.cache
def _init_backend() -> None:
    """Initialise ggml once per process (timers, lookup tables); later calls are no-ops."""
    # llama-cpp-python prints llama.cpp's log to stderr at every level unless its logger says
    # otherwise: hundreds of lines per model load. Errors only, unless someone asked for more.
    quiet = logging.getLogger("llama-cpp-python")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.ERROR)
    llama_cpp.llama_backend_init()


class NativeModel:
    """A loaded GGUF model and its vocabulary.

    The vocabulary is read-only after loading, so tokenizing and detokenizing are safe from
    any thread while the engine thread decodes.
    """

    def __init__(self, path: Path) -> None:
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise ValueError(f"{path}: llama.cpp could not load this file as a GGUF model")
        vocab = llama_cpp.llama_model_get_vocab(model)
        if not vocab:
            llama_cpp.llama_model_free(model)
            raise ValueError(f"{path}: the model has no vocabulary")
        self.pointer: llama_cpp.llama_model_p | None = model
        self.vocab: llama_cpp.llama_vocab_p = vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.bos_token = self._token_text(cast(int, llama_cpp.llama_vocab_bos(vocab)))
        self.eos_token = self._token_text(cast(int, llama_cpp.llama_vocab_eos(vocab)))

    def free(self) -> None:
        """Release the weights; contexts made from this model must be freed first."""
        if self.pointer is not None:
            llama_cpp.llama_model_free(self.pointer)
            self.pointer = None

    def chat_template(self) -> str | None:
        """The default chat template stored in the GGUF metadata, if the model has one."""
        template = llama_cpp.llama_model_chat_template(self._model, None)
        return template.decode() if template else None

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """Token ids of ``text``; ``parse_special`` turns e.g. ``<|im_start|>`` into one id."""
        data = text.encode()
        capacity = len(data) + 2  # a guess that fits: about one token per byte at most
        while True:
            tokens = (llama_cpp.llama_token * capacity)()
            count = int(
                llama_cpp.llama_tokenize(
                    self.vocab, data, len(data), tokens, capacity, add_special, parse_special
                )
            )
            if count >= 0:
                return list(tokens[:count])
            capacity = -count  # too small: llama.cpp says how many tokens it needs

    def token_bytes(self, token: int) -> bytes:
        """The bytes a generated token stands for; special tokens render as nothing."""
        buffer = ctypes.create_string_buffer(_PIECE_BUFFER_BYTES)
        size = llama_cpp.llama_token_to_piece(
            self.vocab, token, buffer, _PIECE_BUFFER_BYTES, 0, False
        )
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
        # ``buffer.raw`` rather than ``.value``: a piece may legitimately contain NUL bytes,
        # and the buffer is not NUL-terminated.
        return buffer.raw[:size]

    def is_end_of_generation(self, token: int) -> bool:
        """Whether the token ends a turn (EOS, EOT, ``<|im_end|>``, ... as the GGUF marks them)."""
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    @property
    def _model(self) -> llama_cpp.llama_model_p:
        if self.pointer is None:
            raise RuntimeError("the model has been freed")
        return self.pointer

    def _token_text(self, token: int) -> str:
        if token == llama_cpp.LLAMA_TOKEN_NULL:
            return ""
        return bytes(llama_cpp.llama_vocab_get_text(self.vocab, token)).decode(errors="replace")


@dataclass(frozen=True)
class ContextSettings:
    """How the one llama.cpp context is sized and threaded."""

    n_ctx_per_sequence: int
    parallel: int
    threads: int
    n_batch: int
    n_ubatch: int


class NativeContext:
    """A llama.cpp context with one KV-cache stream per sequence, and its token batch.

    ``kv_unified=False`` gives every sequence id its own cache region of
    ``n_ctx_per_sequence`` cells, so a token attends only to its own sequence's cells instead
    of the whole cache (cheaper attention, and nothing a neighbour does can change it).
    llama.cpp splits a batch over such streams only across consecutive sequence ids in batch
    order, so callers add tokens ordered by sequence id.

    Not thread-safe: only the engine thread may use it after construction.
    """

    def __init__(self, model: NativeModel, settings: ContextSettings) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = settings.n_ctx_per_sequence * settings.parallel
        params.n_seq_max = settings.parallel
        params.n_batch = settings.n_batch
        params.n_ubatch = settings.n_ubatch
        params.n_threads = settings.threads
        params.n_threads_batch = settings.threads
        params.kv_unified = False
        # Flash attention: on the 2-core dev machine it decoded 8 sequences together 2-3x
        # faster than the plain attention path with per-sequence KV streams.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = True
        context = llama_cpp.llama_init_from_model(model._model, params)
        if not context:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self.pointer: llama_cpp.llama_context_p | None = context
        self._memory = llama_cpp.llama_get_memory(context)
        # llama.cpp lowers n_batch to n_ctx when the context is smaller; ask what it chose.
        self.batch_capacity = int(llama_cpp.llama_n_batch(context))
        self._batch = llama_cpp.llama_batch_init(self.batch_capacity, 0, 1)
        self._batch_open = True

    def free(self) -> None:
        """Release the batch and the context (KV cache, compute buffers, thread pool)."""
        if self._batch_open:
            llama_cpp.llama_batch_free(self._batch)
            self._batch_open = False
        if self.pointer is not None:
            llama_cpp.llama_free(self.pointer)
            self.pointer = None

    def clear_batch(self) -> None:
        self._batch.n_tokens = 0

    def add_to_batch(self, token: int, position: int, sequence: int, *, output: bool) -> int:
        """Append one token; return its index in the batch (what the sampler reads from)."""
        index = int(self._batch.n_tokens)
        if index >= self.batch_capacity:
            raise RuntimeError(f"batch is full ({self.batch_capacity} tokens)")
        batch = self._batch
        batch.token[index] = token
        batch.pos[index] = position
        batch.n_seq_id[index] = 1
        batch.seq_id[index][0] = sequence
        batch.logits[index] = output
        batch.n_tokens = index + 1
        return index

    def decode(self) -> None:
        """Run the model over the batch, appending its tokens to their sequences' caches."""
        status = llama_cpp.llama_decode(self._context, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def logits(self, batch_index: int, n_vocab: int) -> npt.NDArray[np.float32]:
        """A copy of the logits the last decode computed for the token at ``batch_index``
        (which must have been added with ``output=True``)."""
        pointer = llama_cpp.llama_get_logits_ith(self._context, batch_index)
        if not pointer:
            raise RuntimeError(f"no logits for batch index {batch_index}")
        return np.ctypeslib.as_array(pointer, shape=(n_vocab,)).copy()

    def forget_sequence(self, sequence: int) -> None:
        """Drop every cached cell of a sequence so the id can serve a new request."""
        if self._memory:
            llama_cpp.llama_memory_seq_rm(self._memory, sequence, -1, -1)

    def truncate_sequence(self, sequence: int, keep: int) -> bool:
        """Drop a sequence's cells from position ``keep`` on, keeping its first ``keep`` tokens
        for a new request that starts with them; False (and nothing dropped) where the model's
        memory cannot be cut part-way (recurrent or sliding-window models)."""
        if not self._memory:
            return keep == 0
        return bool(llama_cpp.llama_memory_seq_rm(self._memory, sequence, keep, -1))

    @property
    def _context(self) -> llama_cpp.llama_context_p:
        if self.pointer is None:
            raise RuntimeError("the context has been freed")
        return self.pointer


@dataclass(frozen=True)
class SamplingSettings:
    """How the next token is chosen for one request."""

    temperature: float
    top_p: float
    seed: int
    grammar: str | None


class SamplerChain:
    """One request's sampler chain: optional grammar, then greedy or temperature/top-p/dist.

    Every request has its own chain (and so its own random state), which is why a seeded
    request gives the same text whether it runs alone or beside others. The chain is not tied
    to a context, so it can be built (and its grammar checked) on the caller's thread and
    then handed to the engine thread.
    """

    def __init__(self, model: NativeModel, settings: SamplingSettings) -> None:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain: llama_cpp.llama_sampler_p | None = chain
        if settings.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                model.vocab, settings.grammar.encode(), b"root"
            )
            if not grammar:
                self.free()
                raise ValueError("the grammar is not valid GBNF (llama.cpp could not parse it)")
            llama_cpp.llama_sampler_chain_add(chain, grammar)
        if settings.temperature <= 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            # Temperature before top-p: the nucleus is taken from the distribution the user
            # asked for, as OpenAI documents the two parameters.
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_temp(settings.temperature)
            )
            if settings.top_p < 1:
                llama_cpp.llama_sampler_chain_add(
                    chain, llama_cpp.llama_sampler_init_top_p(settings.top_p, 1)
                )
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_dist(settings.seed)
            )

    def sample(self, context: NativeContext, batch_index: int) -> int:
        """Pick a token from the logits of ``batch_index`` and advance the chain's state."""
        if self._chain is None:
            raise RuntimeError("the sampler has been freed")
        return int(llama_cpp.llama_sampler_sample(self._chain, context._context, batch_index))

    def free(self) -> None:
        """Free the chain and the samplers it owns."""
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
