"""Knowledge-base speed (the knowledge-qa issue's speed targets), with plain
sentence-transformers + NumPy as the baseline in the same run.

A 10,000-entry knowledge base is made from public data in ../shared/data: the questions are
CLINC150 utterances (short, as customers write), the answers Bitext customer-support replies
(about 100 words). It is trained with the encoder off the shelf and compressed (int8 ONNX), as a
user would, then:

1. short questions embedded per second: Forgeline's compressed encoder against
   ``SentenceTransformer.encode`` of the same encoder (batch 32, as its default), on 2,000
   CLINC150 test utterances;
2. 256-token passages embedded per second, both ways;
3. search latency through ``forgeline serve`` (one question per request, 8 in flight, auth
   off) against the baseline's in-process search (encode one question, one matrix product over
   the 10,000 question embeddings, top 3), 8 threads at a time.

Exits 1 unless short questions embed at >= 2x the baseline's rate and the server's p50 search
latency is under 20 ms.

    python benchmarks/kb_bench.py
    python benchmarks/kb_bench.py --project /tmp/kb   # keep the trained base there; reuse it next time
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
from harness import forgeline, free_port, start_server

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CLINC = SHARED / "clinc150_data_full.json"
BITEXT = SHARED / "bitext-customer-support" / "bitext_customer_support_pairs.jsonl"
ENTRIES = 10_000
SHORT_TEXTS = 2_000
PASSAGES = 256
CONCURRENCY = 8
REQUESTS = 800


def knowledge_base(project: Path) -> tuple[list[str], list[str]]:
    """Write the 10,000 entries and labelled questions; the CLINC150 test utterances."""
    clinc = json.loads(CLINC.read_text(encoding="utf-8"))
    questions = list(dict.fromkeys(text for text, _ in clinc["train"] + clinc["val"]))[:ENTRIES]
    replies = [json.loads(line)["response"] for line in BITEXT.read_text("utf-8").splitlines()]
    data = project / "data"
    data.mkdir(parents=True)
    entries = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(len(questions))],
            "question": questions,
            "answer": [replies[i % len(replies)] for i in range(len(questions))],
        }
    )
    entries.to_csv(data / "entries.csv", index=False)
    labelled = entries.sample(400, random_state=0)
    pd.DataFrame({"question": labelled["question"], "entry": labelled["id"]}).to_csv(
        data / "questions.csv", index=False
    )
    (project / "forgeline.yaml").write_text(
        "name: kb\ntask: knowledge-qa\n"
        "data: {entries: data/entries.csv, train: data/questions.csv}\n"
        "encoder: {fine_tune: false}\n"
        "serve: {auth: false, limits: {max_inputs_per_request: 64}}\n",
        encoding="utf-8",
    )
    short = [text for text, _ in clinc["test"]][:SHORT_TEXTS]
    return short, replies


def rate(embed: Callable[[list[str]], object], texts: list[str]) -> float:
    embed(texts[:64])  # warm-up
    started = time.perf_counter()
    embed(texts)
    return len(texts) / (time.perf_counter() - started)


async def drive(url: str, questions: list[str]) -> list[float]:
    latencies: list[float] = []
    queue = list(questions)

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            question = queue.pop()
            started = time.perf_counter()
            async with session.post(url, json={"inputs": [question]}) as response:
                await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return latencies


def main() -> int:
    if not (CLINC.is_file() and BITEXT.is_file()):
        print("../shared/data is absent: nothing to measure")
        return 0
    from sentence_transformers import SentenceTransformer

    from forgeline.base_models import resolve_base_model
    from forgeline.registry import ModelRegistry
    from forgeline.tasks.knowledge_qa import KnowledgeQA

    parser = argparse.ArgumentParser()
    parser.add_argument("--project", type=Path, help="where to build the base (reused if built)")
    kept = parser.parse_args().project
    with tempfile.TemporaryDirectory() as tmp:
        project = kept or Path(tmp)
        reused = (project / "models").is_dir()
        if reused:
            replies = [json.loads(line)["response"] for line in BITEXT.read_text().splitlines()]
            short = [text for text, _ in json.loads(CLINC.read_text())["test"]][:SHORT_TEXTS]
        else:
            short, replies = knowledge_base(project)
        started = time.perf_counter()
        if not reused:
            forgeline("train", cwd=project)
        trained_s = time.perf_counter() - started
        started = time.perf_counter()
        if not reused:
            forgeline("compress", cwd=project)
        compress_s = time.perf_counter() - started
        loaded = ModelRegistry(project / "models").load("kb").model
        assert isinstance(loaded, KnowledgeQA) and loaded.settings.runtime == "onnx"
        baseline = SentenceTransformer(str(resolve_base_model("minilm-l6")), device="cpu")
        tokenizer = baseline.tokenizer
        passages = [
            tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:254])
            for text in (" ".join(replies[i : i + 4]) for i in range(0, 4 * PASSAGES, 4))
        ]

        def encode(texts: list[str]) -> object:
            return baseline.encode(texts, batch_size=32, normalize_embeddings=True)

        speeds = {
            "short": (rate(encode, short), rate(loaded.logits, short)),
            "passages": (rate(encode, passages), rate(loaded.logits, passages)),
        }

        # The baseline's search, in process: embeddings of the 10,000 questions in a matrix.
        entries = pd.read_csv(project / "data" / "entries.csv")
        matrix = baseline.encode(
            list(entries["question"]), batch_size=64, normalize_embeddings=True
        )

        def search(question: str) -> float:
            begun = time.perf_counter()
            vector = baseline.encode([question], normalize_embeddings=True)
            np.argsort(-(matrix @ vector[0]))[:3]
            return time.perf_counter() - begun

        questions = [short[i % len(short)] for i in range(REQUESTS)]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            baseline_latency = list(pool.map(search, questions))

        port = free_port()
        server = start_server(project, port, {})
        url = f"http://127.0.0.1:{port}/v1/models/kb/predict"
        try:
            import httpx

            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.post(url, json={"inputs": ["hi"]}, timeout=10).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.5)
            asyncio.run(drive(url, questions[:50]))  # warm-up
            served_latency = asyncio.run(drive(url, questions))
        finally:
            server.terminate()
            server.wait(timeout=30)

    built = "reused" if reused else f"train {trained_s:.0f} s, compress {compress_s:.0f} s"
    print(f"\n{len(entries)} entries; {built}")
    print(f"{'':34}{'baseline':>10}{'forgeline':>11}{'ratio':>8}")
    for name, label in (("short", "short questions / s"), ("passages", "256-token passages / s")):
        base, ours = speeds[name]
        print(f"{label:34}{base:>10.0f}{ours:>11.0f}{ours / base:>7.2f}x")
    base_p50 = float(np.percentile(baseline_latency, 50)) * 1000
    p50 = float(np.percentile(served_latency, 50)) * 1000
    p95 = float(np.percentile(served_latency, 95)) * 1000
    print(
        f"{'search p50 ms, concurrency 8':34}{base_p50:>10.1f}{p50:>11.1f}{p50 / base_p50:>7.2f}x"
        f"   (forgeline p95 {p95:.1f} ms, through HTTP; baseline in process)"
    )
    checks = {
        "short questions >= 2x baseline": speeds["short"][1] >= 2 * speeds["short"][0],
        "search p50 < 20 ms through the server": p50 < 20,
    }
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
