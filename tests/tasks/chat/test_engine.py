"""The generation engine on the real SmolLM2-135M GGUF: batching, sampling, limits, cleanup."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence

import pytest

from forgeline.base_models import CATALOGUE
from forgeline.errors import InputError
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.chat.engine import GenerationEngine, RequestStats
from forgeline.tasks.chat.prompting import json_grammar
from forgeline.tasks.generation import (
    ContextLengthExceeded,
    EngineClosed,
    EngineOverloaded,
    Finished,
    GenerationRequest,
    TextChunk,
)

PARALLEL = 4
MAX_QUEUE = 2
CONTEXT = 256


@pytest.fixture(scope="module")
def finished() -> list[RequestStats]:
    return []


@pytest.fixture(scope="module")
def engine(finished: list[RequestStats]) -> Iterator[GenerationEngine]:
    with GenerationEngine(
        CATALOGUE["smollm2-135m"].path(),
        n_ctx_per_sequence=CONTEXT,
        parallel=PARALLEL,
        threads=2,
        max_queue=MAX_QUEUE,
        on_request_finished=finished.append,
    ) as engine:
        yield engine


def chat(engine: GenerationEngine, question: str) -> list[int]:
    """Prompt tokens of a one-message conversation."""
    messages: list[ChatMessage] = [{"role": "user", "content": question}]
    return engine.chat_prompt(messages)


async def collect(engine: GenerationEngine, request: GenerationRequest) -> tuple[str, Finished]:
    """The whole text of a request and its final event, checking the event order."""
    pieces: list[str] = []
    async with engine.submit(request) as stream:
        async for event in stream:
            if isinstance(event, TextChunk):
                assert event.text
                pieces.append(event.text)
            else:
                return "".join(pieces), event
    raise AssertionError("the stream ended without a Finished event")


def run_together(
    engine: GenerationEngine, requests: Sequence[GenerationRequest], stagger: float = 0.0
) -> list[tuple[str, Finished]]:
    """Run requests concurrently, each starting ``stagger`` seconds after the previous one."""

    async def delayed(index: int, request: GenerationRequest) -> tuple[str, Finished]:
        await asyncio.sleep(index * stagger)
        return await collect(engine, request)

    async def main() -> list[tuple[str, Finished]]:
        return list(await asyncio.gather(*(delayed(i, r) for i, r in enumerate(requests))))

    return asyncio.run(main())


def wait_until_idle(engine: GenerationEngine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.active_sequences or engine.queue_depth:
        assert time.monotonic() < deadline, "the engine did not free its slots"
        time.sleep(0.01)


def test_greedy_output_is_the_same_alone_and_in_a_batch(engine: GenerationEngine) -> None:
    target = GenerationRequest(
        prompt=chat(engine, "How do I reset my password?"), max_tokens=24, temperature=0
    )
    others = [
        GenerationRequest(prompt=chat(engine, question), max_tokens=24, temperature=0)
        for question in ("Where is my parcel?", "Can I get a refund?", "What are your hours?")
    ]
    (alone, alone_end), *_ = run_together(engine, [target])
    # Joining a batch at the start, and joining one that is already decoding, must not
    # change a single token.
    together, *_ = run_together(engine, [target, *others])
    late = run_together(engine, [*others, target], stagger=0.05)[-1]
    assert alone_end.completion_tokens == 24
    assert together[0] == alone
    assert late[0] == alone


def test_seeded_sampling_is_reproducible_beside_other_requests(engine: GenerationEngine) -> None:
    def seeded(seed: int) -> GenerationRequest:
        return GenerationRequest(
            prompt=chat(engine, "Tell me about your shop."),
            max_tokens=20,
            temperature=1.0,
            seed=seed,
        )

    noise = [
        GenerationRequest(prompt=chat(engine, "Hello!"), max_tokens=20, temperature=1.0)
        for _ in range(2)
    ]
    (first, _), *_ = run_together(engine, [seeded(7)])
    *_, (second, _) = run_together(engine, [*noise, seeded(7)], stagger=0.03)
    (other_seed, _), *_ = run_together(engine, [seeded(8)])
    assert first == second
    assert first != other_seed


def test_stop_strings_spanning_tokens_never_reach_the_client(engine: GenerationEngine) -> None:
    (reference, _), *_ = run_together(
        engine,
        [
            GenerationRequest(
                prompt=chat(engine, "How do I reset my password?"), max_tokens=24, temperature=0
            )
        ],
    )
    stop = reference[12:24]  # several tokens long, starting mid-word
    assert len(engine.tokenize(stop, add_special=False)) > 1
    (text, end), *_ = run_together(
        engine,
        [
            GenerationRequest(
                prompt=chat(engine, "How do I reset my password?"),
                max_tokens=24,
                temperature=0,
                stop=[stop],
            )
        ],
    )
    assert text == reference[:12]
    assert end.finish_reason == "stop"


def test_max_tokens_ends_with_length_and_exactly_that_many_tokens(
    engine: GenerationEngine,
) -> None:
    (_, end), *_ = run_together(
        engine,
        [
            GenerationRequest(
                prompt=chat(engine, "Write a long story."), max_tokens=5, temperature=0
            )
        ],
    )
    assert end.finish_reason == "length"
    assert end.completion_tokens == 5
    assert end.prompt_tokens == len(chat(engine, "Write a long story."))
    assert end.time_to_first_token is not None and end.time_to_first_token > 0


def test_json_grammar_output_parses(engine: GenerationEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"solved": {"type": "boolean"}, "ticket": {"type": "integer"}},
        "required": ["solved", "ticket"],
    }
    request = GenerationRequest(
        prompt=chat(engine, "Give the ticket status as JSON."),
        max_tokens=48,
        temperature=0.7,
        seed=1,
        grammar=json_grammar(schema),
    )
    (text, end), *_ = run_together(engine, [request])
    assert end.finish_reason == "stop"  # the grammar lets only end-of-generation follow
    value = json.loads(text)
    assert set(value) == {"solved", "ticket"}


def test_an_invalid_grammar_is_refused_before_running(engine: GenerationEngine) -> None:
    async def main() -> None:
        with pytest.raises(InputError, match="GBNF"):
            engine.submit(
                GenerationRequest(prompt=chat(engine, "Hi"), max_tokens=8, grammar="root ::= (")
            )

    asyncio.run(main())
    assert engine.queue_depth == 0


def test_cancelling_frees_the_slot_within_a_step(
    engine: GenerationEngine, finished: list[RequestStats]
) -> None:
    long = GenerationRequest(
        prompt=chat(engine, "Write a long story about a dragon."), max_tokens=200, temperature=0
    )

    async def leave_early() -> None:
        async with engine.submit(long) as stream:
            async for event in stream:
                assert isinstance(event, TextChunk)
                break

    async def cancel_task() -> None:
        task = asyncio.create_task(collect(engine, long))
        while not engine.active_sequences:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def drop_the_stream() -> None:
        stream = engine.submit(long)  # no ``async with``: only garbage collection can tell
        assert isinstance(await anext(stream), TextChunk)
        del stream

    for scenario in (leave_early, cancel_task, drop_the_stream):
        finished.clear()
        asyncio.run(scenario())
        wait_until_idle(engine)
        assert [stats.finish_reason for stats in finished] == ["cancelled"], scenario
        assert finished[0].completion_tokens < 100
    (_, end), *_ = run_together(
        engine, [GenerationRequest(prompt=chat(engine, "Hi"), max_tokens=3, temperature=0)]
    )
    assert end.completion_tokens == 3


def test_a_full_queue_refuses_at_once(engine: GenerationEngine) -> None:
    async def main() -> None:
        request = GenerationRequest(
            prompt=chat(engine, "Write a long story."), max_tokens=64, temperature=0
        )
        streams = [engine.submit(request) for _ in range(PARALLEL + MAX_QUEUE)]
        with pytest.raises(EngineOverloaded):
            engine.submit(request)
        for stream in streams:
            stream.cancel()

    asyncio.run(main())
    wait_until_idle(engine)


def test_a_prompt_that_cannot_fit_is_refused_before_running(engine: GenerationEngine) -> None:
    prompt = engine.tokenize("word " * 200)

    async def main() -> None:
        with pytest.raises(ContextLengthExceeded) as refused:
            engine.submit(GenerationRequest(prompt=prompt, max_tokens=100))
        assert (refused.value.prompt_tokens, refused.value.max_tokens) == (len(prompt), 100)
        assert refused.value.limit == CONTEXT

    asyncio.run(main())
    assert engine.queue_depth == 0 and engine.active_sequences == 0


def test_unknown_token_ids_are_refused_before_running(engine: GenerationEngine) -> None:
    async def main() -> None:
        with pytest.raises(InputError, match="token ids"):
            engine.submit(GenerationRequest(prompt=[1, 2, 10**9], max_tokens=4))

    asyncio.run(main())


def test_the_chat_template_comes_from_the_gguf(engine: GenerationEngine) -> None:
    text = engine.render_chat([{"role": "user", "content": "Hello"}])
    assert text.endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    tokens = engine.chat_prompt([{"role": "user", "content": "Hello"}])
    assert tokens == engine.tokenize(text, add_special=False)
    assert len(tokens) < len(text)


def test_prompts_reuse_the_cached_opening_and_earlier_turns() -> None:
    system = "You are the support assistant of Acme Bank. Answer in one short sentence."
    with GenerationEngine(
        CATALOGUE["smollm2-135m"].path(),
        n_ctx_per_sequence=CONTEXT,
        parallel=1,
        threads=2,
        max_queue=1,
        system_prompt=system,
    ) as engine:

        def greedy(messages: list[ChatMessage]) -> str:
            prompt = engine.chat_prompt(messages)
            (text, _), *_ = run_together(
                engine, [GenerationRequest(prompt=prompt, max_tokens=16, temperature=0)]
            )
            return text

        def conversation(question: str) -> list[ChatMessage]:
            return [{"role": "system", "content": system}, {"role": "user", "content": question}]

        # The opening (template preamble and system prompt) was decoded at start-up.
        first = greedy(conversation("Where is my parcel?"))
        opening = engine.reused_prompt_tokens
        assert opening > len(engine.tokenize(system, add_special=False))
        greedy(conversation("How do I reset my password?"))
        assert engine.reused_prompt_tokens == 2 * opening
        # The cache now holds the other question: it is cut back to the shared opening, and
        # the reply is the same, token for token.
        assert greedy(conversation("Where is my parcel?")) == first
        assert engine.reused_prompt_tokens == 3 * opening
        # The next turn of the same conversation reuses the whole earlier turn.
        before = engine.reused_prompt_tokens
        follow_up: list[ChatMessage] = [
            *conversation("Where is my parcel?"),
            {"role": "assistant", "content": first},
            {"role": "user", "content": "Thanks!"},
        ]
        greedy(follow_up)
        reused = engine.reused_prompt_tokens - before
        assert reused >= len(engine.chat_prompt(conversation("Where is my parcel?")))


def test_close_fails_open_streams_and_refuses_new_work() -> None:
    engine = GenerationEngine(
        CATALOGUE["smollm2-135m"].path(),
        n_ctx_per_sequence=CONTEXT,
        parallel=1,
        threads=2,
        max_queue=1,
    )

    async def main() -> None:
        request = GenerationRequest(prompt="Once upon a time", max_tokens=200)
        running, waiting = engine.submit(request), engine.submit(request)
        await running.__anext__()
        await asyncio.to_thread(engine.close)
        for stream in (running, waiting):
            with pytest.raises(EngineClosed):
                async for _ in stream:
                    pass
        with pytest.raises(EngineClosed):
            engine.submit(request)

    asyncio.run(main())
    engine.close()  # idempotent
