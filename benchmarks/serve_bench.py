"""Serving throughput and latency: a naive server against Forgeline, measured in one run.

Starts, one after another, on this machine:
  (a) baseline: FastAPI calling transformers.pipeline("text-classification") once per request,
      on the same fine-tuned model, as a user would write it without Forgeline;
  (b) Forgeline, PyTorch fp32, no batching (max_batch_size 1);
  (c) Forgeline, ONNX int8 (from `forgeline compress`) with adaptive batching;
and drives each with an async HTTP client at several concurrency levels for a fixed time, with
one short query per request. Prints requests/s, p50 and p99 latency, the ratio to (a), and an
estimate of the compute ceiling (FLOPs per request against the measured matmul FLOP/s).

Needs a trained and compressed model, e.g. the CLINC150 example:
    cd examples/clinc150 && python prepare.py && forgeline train && forgeline compress
    python benchmarks/serve_bench.py --project examples/clinc150 --torch-version v1 --onnx-version v2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from harness import cpu_seconds, free_port

ROOT = Path(__file__).resolve().parents[1]
BASELINE_APP = """
import os
from fastapi import FastAPI
from transformers import pipeline
classify = pipeline("text-classification", model=os.environ["BENCH_MODEL"], device="cpu")
app = FastAPI()

@app.post("/v1/models/{name}/predict")
def predict(name: str, body: dict) -> dict:
    return {"predictions": [classify(text)[0] for text in body["inputs"]]}
"""


def wait_ready(url: str, process: subprocess.Popen[bytes], probe: dict[str, object]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.post(url, json=probe, timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not start")


def forgeline_server(work: Path, version_dir: Path, name: str, batch: int, wait_ms: float) -> Path:
    """A project whose registry holds just one version, with the given batching."""
    project = work / f"{version_dir.name}-{batch}"
    target = project / "models" / name / version_dir.name
    shutil.copytree(version_dir, target, ignore=shutil.ignore_patterns("evaluation"))
    (project / "models" / name / "LATEST").write_text(version_dir.name + "\n")
    (project / "forgeline.yaml").write_text(
        f"name: {name}\ntask: text-classification\ndata: {{train: unused.csv}}\n"
        # auth off: this measures model serving; metering_bench.py measures the product layer.
        f"serve:\n  auth: false\n  batching: {{max_batch_size: {batch}, max_wait_ms: {wait_ms}, max_queue: 4096}}\n"
        "  limits: {max_inputs_per_request: 64}\n"
    )
    return project


@dataclass
class Measurement:
    rate: float  # answered requests/s
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # server process CPU per answered request
    client_cpu_ms: float  # load generator CPU per answered request


def measure(
    url: str, texts: list[str], concurrency: int, seconds: float, server_pid: int
) -> Measurement:
    server_before, client_before = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    latencies = asyncio.run(drive(url, texts, concurrency, seconds))
    elapsed = time.perf_counter() - started
    if not latencies:
        raise SystemExit(f"no request to {url} succeeded at concurrency {concurrency}")
    answered = len(latencies)
    return Measurement(
        answered / elapsed,
        float(np.percentile(latencies, 50)) * 1000,
        float(np.percentile(latencies, 99)) * 1000,
        1000 * (cpu_seconds(server_pid) - server_before) / answered,
        1000 * (time.process_time() - client_before) / answered,
    )


async def drive(url: str, texts: list[str], concurrency: int, seconds: float) -> list[float]:
    """Keep ``concurrency`` requests in flight for ``seconds``; each answered request's latency.

    aiohttp rather than httpx: the client shares the cores with the server, and here httpx spent
    3.7 ms of CPU per request against aiohttp's 0.14 ms, which capped what the server could show.
    """
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    rng = random.Random(concurrency)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            async with session.post(url, json={"inputs": [rng.choice(texts)]}) as response:
                await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return latencies


def matmul_flops() -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < 1.0:
        a @ b
        runs += 1
    return 2 * 1024**3 * runs / (time.perf_counter() - started)


def flops_per_request(model_dir: Path, texts: list[str]) -> tuple[float, float]:
    """2 x (weights of the matmuls) per token, times the mean tokens per request."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    linear = sum(m.weight.numel() for m in model.modules() if m.__class__.__name__ == "Linear")
    tokens = float(np.mean([len(tokenizer(t)["input_ids"]) for t in texts[:500]]))
    return 2.0 * linear * tokens, tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=Path, default=ROOT / "examples" / "clinc150")
    parser.add_argument("--torch-version", default="v1")
    parser.add_argument("--onnx-version", default="v2")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", default="1,8,32,64")
    args = parser.parse_args()
    project = args.project.resolve()
    from forgeline.config import load_project

    name = load_project(project / "forgeline.yaml", check_files=False).config.name
    torch_dir = project / "models" / name / args.torch_version
    onnx_dir = project / "models" / name / args.onnx_version
    if not (onnx_dir / "model.onnx").is_file():
        raise SystemExit(f"{onnx_dir} has no model.onnx; run `forgeline compress` first")
    test_file = project / "data" / "test.jsonl"
    texts = (
        [json.loads(line)["text"] for line in test_file.read_text().splitlines()]
        if test_file.is_file()
        else ["I lost my card", "what is my balance"]
    )
    levels = [int(c) for c in args.concurrency.split(",")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "baseline.py").write_text(BASELINE_APP)
        torch_project = forgeline_server(work, torch_dir, name, batch=1, wait_ms=0)
        onnx_project = forgeline_server(work, onnx_dir, name, batch=32, wait_ms=2)
        uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(work), "baseline:app"]
        serve = [sys.executable, "-m", "forgeline", "serve", "--config"]
        setups = [
            ("(a) pipeline per request", [*uvicorn, "--log-level", "warning"]),
            (
                "(b) forgeline torch fp32, no batching",
                [*serve, str(torch_project / "forgeline.yaml")],
            ),
            ("(c) forgeline onnx int8, batching", [*serve, str(onnx_project / "forgeline.yaml")]),
        ]
        results: dict[str, dict[int, Measurement]] = {}
        for label, command in setups:
            port = free_port()
            process = subprocess.Popen(
                [*command, "--port", str(port)],
                env={**env, "BENCH_MODEL": str(torch_dir)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{port}/v1/models/{name}/predict"
            try:
                wait_ready(url, process, {"inputs": [texts[0]]})
                results[label] = {
                    c: measure(url, texts, c, args.seconds, process.pid) for c in levels
                }
                print(f"measured {label}", flush=True)
            finally:
                process.terminate()
                process.wait(timeout=30)
    baseline = results[setups[0][0]]
    print(f"model: {torch_dir}; {len(texts)} query texts; {args.seconds:g} s per setting")
    print(
        f"{'setup':40}{'conc':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x (a)':>8}"
        f"{'server CPU ms/req':>19}{'client':>8}"
    )
    for label, by_level in results.items():
        for level, m in by_level.items():
            print(
                f"{label:40}{level:6d}{m.rate:9.1f}{m.p50_ms:9.1f}{m.p99_ms:9.1f}"
                f"{m.rate / baseline[level].rate:8.2f}{m.server_cpu_ms:19.2f}{m.client_cpu_ms:8.2f}"
            )
    per_request, tokens = flops_per_request(torch_dir, texts)
    machine = matmul_flops()
    ceiling = machine / per_request
    best = max(m.rate for m in results[setups[2][0]].values())
    print(
        f"compute ceiling: {per_request / 1e6:.1f} MFLOP per request ({tokens:.1f} tokens), "
        f"matmul {machine / 1e9:.1f} GFLOP/s fp32 -> about {ceiling:.0f} req/s; "
        f"(c) at best {best:.0f} req/s = {best / ceiling:.0%} of it (int8 can exceed the fp32 ceiling)"
    )


if __name__ == "__main__":
    main()
