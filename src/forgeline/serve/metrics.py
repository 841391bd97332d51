"""Prometheus metrics of the server: requests, latency, batch sizes and queue depth per model;
for generation, time to first token, tokens generated (tokens per second is their rate), and
each engine's waiting requests and active sequences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from forgeline.tasks.base import Generator


class ServerMetrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "forgeline_requests",
            "Requests by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "forgeline_request_seconds",
            "Time to answer a request, by model and endpoint.",
            ["model", "endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "forgeline_batch_size",
            "Inputs per model forward pass.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "forgeline_queue_depth",
            "Inputs waiting for a batch.",
            ["model"],
            registry=self.registry,
        )

        self.time_to_first_token = Histogram(
            "forgeline_time_to_first_token_seconds",
            "Time from a generation request to its first token, by model.",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.generated_tokens = Counter(
            "forgeline_generated_tokens",
            "Tokens generated, by model (their rate is tokens per second).",
            ["model"],
            registry=self.registry,
        )
        self.generation_queue = Gauge(
            "forgeline_generation_queue_depth",
            "Generation requests waiting for a sequence, by model.",
            ["model"],
            registry=self.registry,
        )
        self.active_sequences = Gauge(
            "forgeline_active_sequences",
            "Sequences being decoded together, by model.",
            ["model"],
            registry=self.registry,
        )
        self._watched: set[str] = set()

    def watch_engine(self, name: str, model: Generator) -> None:
        """Read the engine's queue depth and active sequences whenever metrics are scraped."""
        if name in self._watched:
            return
        self._watched.add(name)
        engine = model.engine()
        self.generation_queue.labels(name).set_function(lambda: engine.queue_depth)
        self.active_sequences.labels(name).set_function(lambda: engine.active_sequences)

    def render(self) -> bytes:
        return generate_latest(self.registry)
