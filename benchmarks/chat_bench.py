"""Chat generation under load: Forgeline's server against the engine's own speed and against
llama-cpp-python's bundled server, all measured in one run.

Same short support questions, greedy, 128 new tokens at most:
  (a)  in-process llama-cpp-python ``create_chat_completion``, one stream: the engine's speed;
  (a8) the batched ceiling: 8 sequences decoded together in-process through llama.cpp's
       multi-sequence batch API (prefill together, then 128 steps of 8 tokens), no HTTP and
       no scheduling: the most any server on this engine can reach;
  (b)  ``python -m llama_cpp.server``: what a user deploys without Forgeline;
  (c)  ``forgeline serve`` with API keys and metering on (every call recorded in the ledger).
(b) and (c) are driven by the same HTTP client (httpx, streamed, closed loop) at concurrency
1, 4, 8 and 16. Printed per row: aggregate completion tokens/s, median per-stream tokens/s,
time to first token p50/p99, errors, and the ratio to (a); then (c)'s share of (a8). The
machine's speed drifts by 10% and more over minutes (a shared host), so (a), (a8) and (c) are
measured in turn: (a) and (a8), then (c), then (a) and (a8) again, ``--trials`` times; each
ratio divides by the mean of the baselines just before and just after, and the goals use the
median ratio. Each client sends ``--requests`` requests in turn: as clients run out, a batch
drains (fewer streams share each step), and more requests per client make that tail a smaller
share of the run.

Each in-process system runs in a fresh process: once a second thread of a process has run
llama.cpp, its OpenMP threads slow down for everyone. The load generator shares the machine's
cores with the server under test, the same for (b) and (c).

    python benchmarks/chat_bench.py [--threads 2] [--requests 6] [--trials 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import forgeline, free_port, start_server, trained_example, wait_ready
from llama_cpp import Llama

from forgeline.base_models import CATALOGUE
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.chat._native import (
    ContextSettings,
    NativeContext,
    NativeModel,
    SamplerChain,
    SamplingSettings,
)
from forgeline.tasks.chat.prompting import ChatTemplate

MAX_TOKENS = 128
CONTEXT = 512
CONCURRENCY = (1, 4, 8, 16)
QUESTIONS = (
    "How do I reset my password?",
    "My order has not arrived yet. What should I do?",
    "Can I change the shipping address of an order I already placed?",
    "How do I cancel my subscription?",
    "Why was my card declined at checkout?",
    "How do I update my billing information?",
    "Do you offer refunds for digital products?",
    "How can I export my data from your app?",
)


def conversation(question: str) -> list[ChatMessage]:
    return [{"role": "user", "content": question}]


@dataclass(frozen=True)
class Completion:
    tokens: int
    started: float
    first_token: float | None
    ended: float


@dataclass
class Row:
    completions: list[Completion] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    @property
    def tokens_per_second(self) -> float:
        return sum(c.tokens for c in self.completions) / self.seconds if self.seconds else 0.0

    @property
    def stream_tokens_per_second(self) -> float:
        rates = [c.tokens / (c.ended - c.started) for c in self.completions if c.ended > c.started]
        return statistics.median(rates) if rates else 0.0

    def ttft(self, q: float) -> float | None:
        waits = sorted(c.first_token - c.started for c in self.completions if c.first_token)
        return waits[min(int(q * len(waits)), len(waits) - 1)] if waits else None


StreamChat = Callable[[list[ChatMessage]], Awaitable[Completion]]


async def run_load(chat: StreamChat, concurrency: int, requests: int) -> Row:
    """``concurrency`` closed-loop clients share ``requests`` requests."""
    remaining = iter(range(requests))
    row = Row()

    async def client() -> None:
        for index in remaining:
            try:
                row.completions.append(await chat(conversation(QUESTIONS[index % len(QUESTIONS)])))
            except (httpx.HTTPError, RuntimeError):
                row.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    row.seconds = time.perf_counter() - started
    return row


# -- (a) and (a8), in-process -----------------------------------------------------------------


def one_stream(threads: int) -> Row:
    """(a): llama-cpp-python's chat completion, streamed, one request after the other."""
    llama = Llama(
        str(CATALOGUE["smollm2-135m"].path()),
        n_ctx=CONTEXT,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    async def chat(messages: list[ChatMessage]) -> Completion:
        started, first, tokens = time.perf_counter(), None, 0
        for chunk in llama.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
            temperature=0,
            stream=True,
        ):
            if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index, union-attr]
                first = first or time.perf_counter()
                tokens += 1
        return Completion(tokens, started, first, time.perf_counter())

    async def rounds() -> Row:
        await run_load(chat, 1, 1)  # warm-up: weights paged in
        return await run_load(chat, 1, len(QUESTIONS))

    return asyncio.run(rounds())


def batched_ceiling(threads: int, sequences: int = 8) -> Row:
    """(a8): ``sequences`` prompts prefilled in one batch, then decoded in lockstep, one token
    of each per step, greedy, ``MAX_TOKENS`` each (end-of-turn ignored): no scheduling."""
    model = NativeModel(CATALOGUE["smollm2-135m"].path())
    template = ChatTemplate(
        model.chat_template() or "", bos_token=model.bos_token, eos_token=model.eos_token
    )
    context = NativeContext(
        model,
        ContextSettings(
            n_ctx_per_sequence=CONTEXT,
            parallel=sequences,
            threads=threads,
            n_batch=512,
            n_ubatch=512,
        ),
    )
    prompts = [
        model.tokenize(
            template.render(conversation(QUESTIONS[i % len(QUESTIONS)])),
            add_special=False,
            parse_special=True,
        )
        for i in range(sequences)
    ]
    samplers = [
        SamplerChain(model, SamplingSettings(temperature=0, top_p=1, seed=0, grammar=None))
        for _ in range(sequences)
    ]
    started = time.perf_counter()
    context.clear_batch()
    outputs = []
    for seq, prompt in enumerate(prompts):
        for position, token in enumerate(prompt):
            index = context.add_to_batch(token, position, seq, output=position == len(prompt) - 1)
        outputs.append(index)
    context.decode()
    tokens = [
        sampler.sample(context, index) for sampler, index in zip(samplers, outputs, strict=True)
    ]
    first = time.perf_counter()
    for step in range(1, MAX_TOKENS):
        context.clear_batch()
        outputs = [
            context.add_to_batch(tokens[seq], len(prompts[seq]) + step - 1, seq, output=True)
            for seq in range(sequences)
        ]
        context.decode()
        tokens = [s.sample(context, i) for s, i in zip(samplers, outputs, strict=True)]
    ended = time.perf_counter()
    for sampler in samplers:
        sampler.free()
    context.free()
    model.free()
    done = [Completion(MAX_TOKENS, started, first, ended) for _ in range(sequences)]
    return Row(done, ended - started)


def in_fresh_process(work: Callable[[int], Row], threads: int) -> Row:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(work, threads).result()


# -- (b) and (c), over HTTP -------------------------------------------------------------------


def http_chat(http: httpx.AsyncClient, base: str, model: str, key: str | None) -> StreamChat:
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def chat(messages: list[ChatMessage]) -> Completion:
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started, first, chunks, counted = time.perf_counter(), None, 0, None
        async with http.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    choices = chunk["choices"]
                    if choices and choices[0].get("delta", {}).get("content"):
                        first = first or time.perf_counter()
                        chunks += 1
                    if chunk.get("usage"):
                        counted = chunk["usage"]["completion_tokens"]
        # The server's own count where it sends one (a chunk may carry several tokens);
        # llama_cpp.server sends none, and one chunk per token.
        return Completion(
            chunks if counted is None else counted, started, first, time.perf_counter()
        )

    return chat


async def http_rows(base: str, model: str, key: str | None, requests: int) -> dict[int, Row]:
    rows = {}
    async with httpx.AsyncClient(timeout=600) as http:
        chat = http_chat(http, base, model, key)
        await run_load(chat, 1, 1)  # warm-up
        for concurrency in CONCURRENCY:
            rows[concurrency] = await run_load(chat, concurrency, requests * concurrency)
    return rows


def llama_server_rows(threads: int, requests: int) -> dict[int, Row]:
    """(b): llama-cpp-python's bundled server, as its README starts it."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(CATALOGUE["smollm2-135m"].path()),
            "--n_ctx",
            str(CONTEXT),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--port",
            str(port),
            # By default a new request interrupts the one streaming (one Llama, one sequence);
            # off, requests wait their turn, as a user would want.
            "--interrupt_requests",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("llama_cpp.server did not start")
            time.sleep(0.5)
        return asyncio.run(http_rows(base, "bench", None, requests))
    finally:
        server.terminate()
        server.wait()


def forgeline_rows(threads: int, requests: int) -> dict[int, Row]:
    """(c): `forgeline serve` on the chat template, with keys and metering on."""
    with tempfile.TemporaryDirectory() as tmp:
        project = trained_example(Path(tmp), template="chat")
        config = project / "forgeline.yaml"
        text = config.read_text()
        start, end = text.index("engine:"), text.index("data:")
        engine = (
            f"engine:\n  context_tokens: {CONTEXT}\n  parallel: 8\n  threads: {threads}\n"
            "  max_queue: 64\n\n"
        )
        # The same prompts as (a) and (b): no system prompt of the template's.
        text = text[:start] + engine + text[end:]
        text = text.replace("system_prompt_file: system_prompt.md\n", "")
        config.write_text(text.replace("requests_per_second: 20", "requests_per_second: 5000"))
        key = forgeline("keys", "create", "--tenant", "bench", "--plan", "pro", cwd=project).strip()
        port = free_port()
        server = start_server(project, port, {})
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, server)
            return asyncio.run(http_rows(base, "bench", key, requests))
        finally:
            server.terminate()
            server.wait()


def line(name: str, row: Row, baseline: float) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    return (
        f"{name:<30}{len(row.completions):>5}{row.tokens_per_second:>9.1f}"
        f"{row.stream_tokens_per_second:>9.1f}{ms(row.ttft(0.5)):>8}{ms(row.ttft(0.99)):>8}"
        f"{row.errors:>7}{row.tokens_per_second / baseline:>8.2f}x"
    )


@dataclass(frozen=True)
class Trial:
    """(a) and (a8) measured just before and just after (c): each ratio takes the mean of the
    two as its baseline, so a slow or fast spell of a shared machine moves both sides alike."""

    before: tuple[Row, Row]
    served: dict[int, Row]
    after: tuple[Row, Row]

    @property
    def one(self) -> float:
        return (self.before[0].tokens_per_second + self.after[0].tokens_per_second) / 2

    @property
    def ceiling(self) -> float:
        return (self.before[1].tokens_per_second + self.after[1].tokens_per_second) / 2

    @property
    def ratios(self) -> tuple[float, float]:
        """(c) conc 1 / (a) and (c) conc 8 / (a8)."""
        return (
            self.served[1].tokens_per_second / self.one,
            self.served[8].tokens_per_second / self.ceiling,
        )


def baselines(threads: int) -> tuple[Row, Row]:
    return in_fresh_process(one_stream, threads), in_fresh_process(batched_ceiling, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--requests", type=int, default=6, help="Requests per client at each concurrency."
    )
    parser.add_argument(
        "--trials", type=int, default=3, help="Times (a), (a8) and (c) are measured in turn."
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    llama_server = llama_server_rows(args.threads, args.requests)
    trials = []
    edge = baselines(args.threads)
    for _ in range(args.trials):
        served = forgeline_rows(args.threads, args.requests)
        after = baselines(args.threads)
        trials.append(Trial(edge, served, after))
        edge = after
    # The table shows the trial with the median (c) conc 8 / (a8); the goals use the median
    # of each ratio over the trials.
    shown = sorted(trials, key=lambda trial: trial.ratios[1])[len(trials) // 2]
    base = shown.before[0].tokens_per_second
    print(
        f"SmolLM2-135M Q4_1, {os.cpu_count()} CPUs, threads={args.threads}, "
        f"max_tokens={MAX_TOKENS}, greedy; median of {len(trials)} trials of (a), (a8), (c)"
    )
    print(
        f"{'':<30}{'reqs':>5}{'agg t/s':>9}{'strm t/s':>9}{'ttft50':>8}{'ttft99':>8}"
        f"{'errors':>7}{'vs (a)':>9}"
    )
    print(line("(a) llama-cpp, 1 stream", shown.before[0], base))
    print(line("(a8) 8 sequences batched", shown.before[1], base))
    for concurrency in CONCURRENCY:
        print(line(f"(b) llama_cpp.server, conc {concurrency}", llama_server[concurrency], base))
    for concurrency in CONCURRENCY:
        print(line(f"(c) forgeline serve, conc {concurrency}", shown.served[concurrency], base))
    for number, trial in enumerate(trials, start=1):
        print(
            f"trial {number}: (a) {trial.one:.1f}, (a8) {trial.ceiling:.1f} (before and after), "
            f"(c) conc 1 "
            f"{trial.served[1].tokens_per_second:.1f}, conc 8 "
            f"{trial.served[8].tokens_per_second:.1f} tokens/s; ratios "
            f"{trial.ratios[0]:.2f}, {trial.ratios[1]:.2f}"
        )
    c1_ratio = statistics.median(trial.ratios[0] for trial in trials)
    c8_ratio = statistics.median(trial.ratios[1] for trial in trials)
    c8, b8 = shown.served[8], llama_server[8]
    errors = sum(row.errors for trial in trials for row in trial.served.values())
    print(
        f"(c) conc 1 / (a): {c1_ratio:.2f} (goal >= 0.9); (c) conc 8 / (a8): {c8_ratio:.2f} "
        f"(goal >= 0.9); (c) conc 8 / (b) conc 8: "
        f"{c8.tokens_per_second / b8.tokens_per_second:.2f} (goal >= 1.4); "
        f"(c) conc 8 ttft p50 {(c8.ttft(0.5) or 0) * 1000:.0f} ms (goal < 250); "
        f"(c) errors {errors}"
    )


if __name__ == "__main__":
    main()
