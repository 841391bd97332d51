"""The models a server holds: loaded by a background thread so ``/healthz`` answers at once and
``/readyz`` tells a load balancer when predictions can be served."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from forgeline.registry import LoadedModel, ModelRegistry
from forgeline.tasks.base import generator

log = logging.getLogger("forgeline.serve")


class ModelStore:
    """The loaded models, filled by :meth:`load_all` on a background thread at startup."""

    def __init__(
        self,
        registry: ModelRegistry,
        names: list[str] | None,
        then: Sequence[Callable[[Mapping[str, LoadedModel]], None]] = (),
    ) -> None:
        """``then``: what else is to be loaded for the served models before the store is
        ready (e.g. the detectors of models that redact their prompts)."""
        self.registry = registry
        self.names = names
        self._then = then
        self.models: dict[str, LoadedModel] = {}
        self._loaded: dict[str, LoadedModel] = {}
        """Every model loaded: the served ones and the chat models they generate with."""
        self.ready = threading.Event()
        self.failed = threading.Event()

    def load_all(self) -> None:
        try:
            for name in self.names or self.registry.names():
                loaded = self._loaded.get(name) or self.registry.load(name, loaded=self._loaded)
                self._loaded[name] = loaded
                if "generate" in loaded.model.capabilities:
                    generator(loaded.model).engine()  # start it now, not on the first call
                self.models[name] = loaded
                log.info("loaded model %s %s", name, loaded.version.version)
            for load in self._then:
                load(self.models)
            # Models and libraries live as long as the process: moving them out of the garbage
            # collector's generations keeps each full collection from walking them, which
            # stalled every request in flight for about 300 ms under load (serve_bench.py).
            gc.collect()  # first, so only live objects are frozen
            gc.freeze()
            self.ready.set()
        except Exception:  # whatever the cause, the server must say "failed", not "loading"
            # The reason (with file paths) is for the operator; clients learn only that
            # loading failed.
            log.exception("cannot load models")
            self.failed.set()

    def close(self) -> None:
        """Stop the engines of generation models (their decode threads and native memory)."""
        for loaded in self._loaded.values():
            if "generate" in loaded.model.capabilities:
                generator(loaded.model).close()

    @property
    def status(self) -> str:
        if self.ready.is_set():
            return "ready"
        return "failed" if self.failed.is_set() else "loading"
