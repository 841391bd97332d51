"""Crash test of the usage ledger: ``kill -9`` the server under load, restart it, and count.

1. Train the bundled credit example and give a tenant a key.
2. Start ``forgeline serve`` and send N requests, C at a time, each with its own
   Idempotency-Key, as a careful client does.
3. Once a third of them are answered, SIGKILL the server. Requests in flight fail.
4. Read the ledger: every 2xx the client received must be in it (none lost). Records committed
   whose response never arrived are allowed: the client saw an error and will retry.
5. Restart the server and retry every unanswered request with the same Idempotency-Key until it
   is answered; those already recorded come back replayed, not billed again.
6. Check that the ledger's rows are exactly the X-Request-Ids of the 2xx responses the client
   holds, one per request: 0 lost, 0 doubled.

    python benchmarks/crash_test.py --database sqlite
    python benchmarks/crash_test.py --database postgresql   # the local PostgreSQL, own schema

With ``--streams``, the same with streamed chat replies (the chat template), killed in the
middle of streams: every stream the client received in full is billed exactly its reported
tokens; every stream cut by the kill is billed, once its reservation's lease has run out, at
least the tokens its client received (what it held: at most one block more); nothing is billed
twice, and no reservation is left.

Exits 1 if any record is lost or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import (
    APPLICANT,
    disposable_database,
    forgeline,
    free_port,
    start_server,
    trained_example,
    wait_ready,
)
from sqlalchemy import create_engine, text


@dataclass
class Client:
    base: str
    key: str
    answered: dict[int, str] = field(default_factory=dict)  # request number -> X-Request-Id
    replayed: set[int] = field(default_factory=set)

    async def send(self, http: httpx.AsyncClient, number: int) -> bool:
        body = {"inputs": [{**APPLICANT, "age": 20 + number % 50}]}
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": f"crash-{number}"}
        while True:
            try:
                response = await http.post(
                    f"{self.base}/v1/models/bench/predict", json=body, headers=headers
                )
            except httpx.TransportError:
                return False
            if response.status_code not in (429, 503):
                break
            # Over the plan's rate limit, or busy: wait as told, as a careful client does.
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        if response.status_code != 200:
            return False
        self.answered[number] = response.headers["x-request-id"]
        if response.headers.get("idempotent-replayed") == "true":
            self.replayed.add(number)
        return True


async def drive(
    client: Client,
    numbers: list[int],
    concurrency: int,
    server: subprocess.Popen[str] | None = None,
    kill_after: int = 0,
) -> None:
    """Send ``numbers``; SIGKILL ``server`` once ``kill_after`` requests are answered."""
    pending = iter(numbers)

    async def worker(http: httpx.AsyncClient) -> None:
        for number in pending:
            await client.send(http, number)
            if server is not None and len(client.answered) >= kill_after and server.poll() is None:
                os.kill(server.pid, signal.SIGKILL)

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))


def ledger(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = [row[0] for row in connection.execute(text("SELECT request_id FROM usage_records"))]
    engine.dispose()
    return rows


def run(database: str, requests: int, concurrency: int) -> bool:
    with tempfile.TemporaryDirectory() as tmp, disposable_database(database, Path(tmp)) as url:
        work = Path(tmp)
        env = {"FORGELINE_DATABASE_URL": url}
        project = trained_example(work)
        # A rate limit well above what the server can do, so many calls are in flight at the kill.
        config = project / "forgeline.yaml"
        config.write_text(
            config.read_text().replace("requests_per_second: 50", "requests_per_second: 5000")
        )
        key = forgeline(
            "keys", "create", "--tenant", "crash", "--plan", "pro", cwd=project, env=env
        )
        port = free_port()
        client = Client(f"http://127.0.0.1:{port}", key.strip())

        server = start_server(project, port, env)
        wait_ready(client.base, server)
        asyncio.run(drive(client, list(range(requests)), concurrency, server, requests // 3))
        if server.poll() is None:
            raise SystemExit("the server was never killed: too few requests were answered")
        before_crash = dict(client.answered)
        rows_at_crash = ledger(url)

        server = start_server(project, port, env)
        wait_ready(client.base, server)
        for _attempt in range(5):
            missing = [n for n in range(requests) if n not in client.answered]
            if not missing:
                break
            asyncio.run(drive(client, missing, concurrency))
        server.terminate()
        server.wait()
        rows = ledger(url)

    received_at_crash = set(before_crash.values())
    lost_at_crash = received_at_crash - set(rows_at_crash)
    answered_ids = set(client.answered.values())
    doubled = sum(count - 1 for count in Counter(rows).values() if count > 1)
    unanswered = requests - len(client.answered)
    print(
        f"database {database}: {requests} requests, {concurrency} at a time, kill -9 after "
        f"{len(before_crash)} answers"
    )
    print(
        f"  at the crash:  {len(rows_at_crash)} ledger rows, {len(received_at_crash)} 2xx "
        f"received, {len(lost_at_crash)} of them missing from the ledger (lost)"
    )
    print(
        f"                 {len(set(rows_at_crash) - received_at_crash)} committed but unanswered "
        "(the client saw an error and retries)"
    )
    print(
        f"  after retries: {len(client.answered)} requests answered ({len(client.replayed)} "
        f"replayed from the ledger), {unanswered} never answered"
    )
    print(
        f"  ledger rows {len(rows)} = 2xx responses {len(answered_ids)}: "
        f"lost {len(answered_ids - set(rows))}, doubled {doubled}, "
        f"unexplained {len(set(rows) - answered_ids)}"
    )
    ok = (
        not lost_at_crash
        and doubled == 0
        and unanswered == 0
        and set(rows) == answered_ids
        and len(rows) == requests
    )
    print("  PASS" if ok else "  FAIL")
    return ok


@dataclass
class Stream:
    request_id: str | None = None
    chunks: int = 0  # content chunks received: at least this many tokens
    usage: dict[str, int] | None = None  # the final usage chunk: the stream was received whole


async def stream_chat(http: httpx.AsyncClient, base: str, key: str, number: int) -> Stream:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": f"Tell me about savings, part {number}."}],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"stream-{number}"}
    seen = Stream()
    try:
        async with http.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                return seen
            seen.request_id = response.headers["x-request-id"]
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                if chunk.get("usage"):
                    seen.usage = chunk["usage"]
                elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    seen.chunks += 1
    except httpx.TransportError:
        pass
    return seen


def records(url: str) -> tuple[dict[str, tuple[int, int]], list[str], int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT request_id, input_tokens, output_tokens FROM usage_records")
        ).all()
        held = connection.execute(text("SELECT COUNT(*) FROM usage_reservations")).scalar()
    engine.dispose()
    return {r[0]: (r[1], r[2]) for r in rows}, [r[0] for r in rows], int(held or 0)


def run_streams(database: str, requests: int, concurrency: int) -> bool:
    lease = 3  # seconds: a killed server's streams are billed soon after the restart
    with tempfile.TemporaryDirectory() as tmp, disposable_database(database, Path(tmp)) as url:
        # The base model as it is: this checks billing, not fine-tuning (minutes less).
        project = trained_example(Path(tmp), template="chat", fine_tune=False)
        config = project / "forgeline.yaml"
        text_config = config.read_text().replace(
            "requests_per_second: 20", "requests_per_second: 5000"
        )
        config.write_text(
            text_config.replace(
                "  currency: USD\n", f"  currency: USD\n  ledger: {{lease_seconds: {lease}}}\n"
            )
        )
        env = {"FORGELINE_DATABASE_URL": url}
        key = forgeline(
            "keys", "create", "--tenant", "crash", "--plan", "pro", cwd=project, env=env
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(project, port, env)
        wait_ready(base, server)
        streams: dict[int, Stream] = {}

        async def first_round() -> None:
            queue = iter(range(requests))

            async def worker(http: httpx.AsyncClient) -> None:
                for number in queue:
                    streams[number] = await stream_chat(http, base, key.strip(), number)
                    whole = sum(1 for s in streams.values() if s.usage)
                    if whole >= requests // 3 and server.poll() is None:
                        os.kill(server.pid, signal.SIGKILL)

            async with httpx.AsyncClient(timeout=60) as http:
                await asyncio.gather(*(worker(http) for _ in range(concurrency)))

        asyncio.run(first_round())
        if server.poll() is None:
            raise SystemExit("the server was never killed: too few streams were answered")
        server = start_server(project, port, env)
        wait_ready(base, server)
        deadline = time.monotonic() + 10 * lease
        while records(url)[2] and time.monotonic() < deadline:
            time.sleep(0.5)  # the restarted server bills the dead one's reservations
        server.terminate()
        server.wait()
        billed, rows, held = records(url)

    whole = {n: s for n, s in streams.items() if s.usage}
    cut = {n: s for n, s in streams.items() if not s.usage and s.request_id}
    exact = sum(
        1
        for s in whole.values()
        if s.usage is not None
        and billed.get(s.request_id or "")
        == (s.usage["prompt_tokens"], s.usage["completion_tokens"])
    )
    covered = sum(1 for s in cut.values() if billed.get(s.request_id or "", (0, -1))[1] >= s.chunks)
    doubled = len(rows) - len(set(rows))
    print(
        f"database {database}: {requests} streamed chat replies, {concurrency} at a time, "
        f"kill -9 after {len(whole)} were received whole"
    )
    print(f"  received whole: {len(whole)}, billed exactly their reported tokens: {exact}")
    print(
        f"  cut by the kill: {len(cut)}, billed at least the tokens received: {covered} "
        f"(billed {sum(billed.get(s.request_id or '', (0, 0))[1] for s in cut.values())} "
        f"output tokens for {sum(s.chunks for s in cut.values())} chunks received)"
    )
    print(f"  ledger rows {len(rows)}, doubled {doubled}, reservations left {held}")
    ok = exact == len(whole) and covered == len(cut) and doubled == 0 and held == 0
    print("  PASS" if ok else "  FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=900)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--streams", action="store_true", help="Streamed chat replies.")
    args = parser.parse_args()
    crash = run_streams if args.streams else run
    raise SystemExit(0 if crash(args.database, args.requests, args.concurrency) else 1)


if __name__ == "__main__":
    main()
