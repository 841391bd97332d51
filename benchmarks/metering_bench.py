"""What the API product costs per request: auth + rate limit + metering on, against off.

Trains a bundled example (by default the credit one: its model answers in well under a
millisecond, so the product layer's share of each request is as large as it gets; or
``--template text-classification``, the quickstart's MiniLM intent model), then serves it twice
from the same project, alternately, for the same time each:

  off: ``serve.auth: false`` (no key, no limits, nothing recorded);
  on:  every request carries a key; the server checks it, takes a rate-limit token, and commits
       a usage record (SQLite, ``synchronous=FULL``) before it answers.

A plan with a rate limit far above the server's speed is used, so "on" pays for the rate-limit
check but is never throttled. Prints requests/s of each and the ratio; the goal is a loss of
at most 5 %.

    python benchmarks/metering_bench.py [--seconds 15] [--rounds 5] [--concurrency 32] [--redis URL]

Uses wrk (apt install wrk) as the load generator when it is installed: a Python client would
share the two cores with the server and add its own noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from harness import (
    APPLICANT,
    cpu_seconds,
    forgeline,
    free_port,
    start_server,
    trained_example,
    wait_ready,
)

INPUTS = {
    "tabular-classification": APPLICANT,
    "text-classification": "I lost my card and need a new one",
}


async def python_load(
    url: str, body: dict[str, object], headers: dict[str, str], seconds: float, concurrency: int
) -> int:
    """Requests answered in ``seconds`` by an asyncio client (when wrk is not installed)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.post(url, json=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"{response.status_code}: {response.text}")
            done += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
%s
done = function(summary, latency, requests)
  io.write(string.format("answered %%d errors %%d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
"""


def asyncio_load(
    url: str, body: dict[str, object], headers: dict[str, str], seconds: float, concurrency: int
) -> int:
    return asyncio.run(python_load(url, body, headers, seconds, concurrency))


def wrk_load(
    url: str, body: dict[str, object], headers: dict[str, str], seconds: float, concurrency: int
) -> int:
    """Requests answered in ``seconds`` by wrk: a C client, so the server, not the load
    generator, is what the two cores spend their time on."""
    auth = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (json.dumps(body), auth))
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", script.name, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    answered, errors = (int(n) for n in output.split("answered ")[1].split(" errors "))
    if errors:
        raise SystemExit(f"{errors} requests failed:\n{output}")
    return answered


@dataclass
class Run:
    rate: float  # requests/s
    cpu_ms: float  # server CPU per request
    answered: int


def measure(
    project: Path,
    config: str,
    headers: dict[str, str],
    env: dict[str, str],
    args: argparse.Namespace,
) -> Run:
    port = free_port()
    server = start_server(project, port, env, "--config", config)
    base = f"http://127.0.0.1:{port}"
    load = wrk_load if shutil.which("wrk") else asyncio_load
    try:
        wait_ready(base, server)
        url = f"{base}/v1/models/bench/predict"
        body: dict[str, object] = {"inputs": [INPUTS[args.template]]}
        warm = load(url, body, headers, 2, args.concurrency)
        cpu_before = cpu_seconds(server.pid)
        answered = load(url, body, headers, args.seconds, args.concurrency)
        cpu = cpu_seconds(server.pid) - cpu_before
        return Run(answered / args.seconds, 1000 * cpu / answered, answered + warm)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="per run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating off/on runs")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--template",
        choices=sorted(INPUTS),
        default="tabular-classification",
        help="the bundled example to serve (tabular: the cheapest model, so the worst case)",
    )
    parser.add_argument("--redis", help="share rate limits through this Redis URL when on")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = trained_example(Path(tmp), args.template)
        config = project / "forgeline.yaml"
        text = config.read_text().replace("requests_per_second: 50", "requests_per_second: 1000000")
        config.write_text(text)
        (project / "open.yaml").write_text(text.replace("serve:\n", "serve:\n  auth: false\n", 1))
        key = forgeline("keys", "create", "--tenant", "bench", "--plan", "pro", cwd=project).strip()
        on_env = {"FORGELINE_REDIS_URL": args.redis} if args.redis else {}
        off: list[Run] = []
        on: list[Run] = []
        for _ in range(args.rounds):
            off.append(measure(project, "open.yaml", {}, {}, args))
            on.append(
                measure(project, "forgeline.yaml", {"Authorization": f"Bearer {key}"}, on_env, args)
            )
        month = datetime.now(UTC).strftime("%Y-%m")
        usage = forgeline("usage", "--tenant", "bench", "--month", month, "--json", cwd=project)
        recorded = sum(row["units"] for row in json.loads(usage))

    client = "wrk" if shutil.which("wrk") else "an asyncio client (install wrk for less noise)"
    limiter = "Redis" if args.redis else "in-process"
    off_rate = statistics.median(r.rate for r in off)
    on_rate = statistics.median(r.rate for r in on)
    off_cpu = statistics.median(r.cpu_ms for r in off)
    on_cpu = statistics.median(r.cpu_ms for r in on)
    print(
        f"{args.rounds} alternating runs of {args.seconds:g} s each, {args.concurrency} "
        f"connections from {client}; medians"
    )
    print(f"{'':46}{'requests/s':>11}{'ratio':>8}{'server CPU ms/request':>24}")
    print(f"  {'off (serve.auth: false)':44}{off_rate:11.1f}{1:8.3f}{off_cpu:24.3f}")
    label = f"on  (key + {limiter} rate limit + ledger)"
    print(f"  {label:44}{on_rate:11.1f}{on_rate / off_rate:8.3f}{on_cpu:24.3f}")
    print(f"  runs off: {', '.join(f'{r.rate:.0f}' for r in off)}")
    print(f"  runs on:  {', '.join(f'{r.rate:.0f}' for r in on)}")
    print(
        f"  throughput lost to the product layer: {100 * (1 - on_rate / off_rate):.1f} % "
        f"(goal <= 5 %); CPU per request {100 * (on_cpu / off_cpu - 1):+.1f} %"
    )
    metered = sum(r.answered for r in on)
    print(
        f"  ledger: {recorded} units recorded for {metered} requests wrk counted as answered "
        f"(wrk stops with up to {args.concurrency} requests in flight, which the server still "
        "answers and records)"
    )


if __name__ == "__main__":
    main()
