"""``/v1/models``: list the served models, predict, and explain.

Predict requests go through an adaptive batcher per model (:mod:`forgeline.serve.batching`).
The routes here take ``inputs`` of any shape; each model's own input and output schemas are
published per model in the OpenAPI document (:mod:`forgeline.serve.openapi`) and enforced by
the model's ``check_inputs``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from forgeline.config.service import ServeConfig
from forgeline.errors import InputError, NotSupportedError
from forgeline.registry import LoadedModel
from forgeline.serve.batching import Batcher, Lane, Overloaded
from forgeline.serve.errors import ApiError
from forgeline.serve.gateway import Gateway
from forgeline.serve.metering import Call, OpenCall
from forgeline.serve.metrics import ServerMetrics
from forgeline.serve.privacy import ServerPrivacy
from forgeline.serve.routing import api_route
from forgeline.serve.store import ModelStore
from forgeline.tasks.base import Generator, Predictor, generator, predictor


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(
        min_length=1,
        description=(
            "The inputs: texts for a text classifier, objects of feature values for a tabular one."
        ),
    )


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[dict[str, Any]] = Field(description="One per input, in order.")


class ExplainResponse(BaseModel):
    model: str
    version: str
    explanations: list[dict[str, Any]] = Field(
        description="One per input: base value, margin and each feature's contribution to it."
    )


class ModelInfo(BaseModel):
    """A served model, in OpenAI's shape (``id``, ``object``, ``created``, ``owned_by``) with
    Forgeline's own fields beside it."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="When the version was registered (Unix time).")
    owned_by: str = "forgeline"
    name: str
    version: str
    task: str
    capabilities: list[str]
    labels: list[str]
    created_at: str
    input_schema: dict[str, Any] | None = Field(
        description="JSON Schema of one item of `inputs` (null: the model does not predict)."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or an invalid, revoked or expired one"},
    403: {"description": "The key may not use this model or action"},
    429: {"description": "Over the plan's rate limit, or too many failed keys (Retry-After)"},
}
CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    400: {"description": "The body is not valid JSON, or a bad Idempotency-Key"},
    402: {"description": "A hard-capped plan's monthly quota is used up"},
    404: {"description": "No such model"},
    409: {"description": "The answer stored for this Idempotency-Key cannot be decrypted"},
    413: {"description": "Request body over max_body_bytes"},
    422: {"description": "Invalid inputs, or over max_inputs_per_request/max_input_chars"},
    503: {"description": "Not ready, overloaded, or metering unavailable (Retry-After)"},
}


class ServedModels:
    """The models of a :class:`ModelStore` as the routes see them, with a batcher each."""

    def __init__(
        self,
        store: ModelStore,
        settings: ServeConfig,
        metrics: ServerMetrics,
        privacy: ServerPrivacy,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.privacy = privacy
        self._batchers: dict[str, Batcher] = {}
        self._lanes: dict[str, Lane] = {}

    def require_ready(self) -> None:
        if not self.store.ready.is_set():
            if self.store.failed.is_set():
                raise ApiError(503, "not_ready", "the models failed to load; see the server log")
            raise ApiError(503, "not_ready", "models are still loading", {"Retry-After": "1"})

    def get(self, name: str) -> LoadedModel:
        self.require_ready()
        if name not in self.store.models:
            raise ApiError(404, "unknown_model", f"no model named '{name}' is served here")
        return self.store.models[name]

    def predictor(self, name: str) -> tuple[LoadedModel, Predictor]:
        """The named model, if it predicts: 404 otherwise."""
        loaded = self.get(name)
        if "predict" not in loaded.model.capabilities:
            raise ApiError(
                404,
                "unsupported_action",
                f"model '{name}' ({loaded.model.name}) does not predict; it can: "
                f"{', '.join(sorted(loaded.model.capabilities))}",
            )
        return loaded, predictor(loaded.model)

    def generator(self, name: str) -> Generator:
        """The named model, if it generates text: 404 otherwise (OpenAI's model_not_found)."""
        self.require_ready()
        loaded = self.store.models.get(name)
        if loaded is None or "generate" not in loaded.model.capabilities:
            raise ApiError(
                404,
                "model_not_found",
                f"the model '{name}' does not exist or does not generate text",
                param="model",
            )
        model = generator(loaded.model)
        self.metrics.watch_engine(name, model)
        return model

    def batcher(self, name: str, model: Predictor) -> Batcher:
        if name not in self._batchers:
            self._batchers[name] = Batcher(
                predict=model.predict,
                settings=self.settings.models.get(name, self.settings.batching),
                on_batch=self.metrics.batch_size.labels(name).observe,
                on_queue=self.metrics.queue_depth.labels(name).set,
            )
        return self._batchers[name]

    def lane(self, name: str) -> Lane:
        if name not in self._lanes:
            self._lanes[name] = Lane(
                self.settings.models.get(name, self.settings.batching).max_queue
            )
        return self._lanes[name]

    def check_count(self, inputs: Sequence[Any]) -> None:
        """422 for more inputs than ``max_inputs_per_request``."""
        most = self.settings.limits.max_inputs_per_request
        if len(inputs) > most:
            raise ApiError(
                422,
                "too_many_inputs",
                f"{len(inputs)} inputs is over the limit max_inputs_per_request={most}",
            )

    def checked(self, name: str, request: PredictRequest) -> tuple[LoadedModel, Predictor]:
        """The named model, once the request is within limits and its inputs are valid."""
        loaded, model = self.predictor(name)
        self.check_count(request.inputs)
        try:
            model.check_inputs(request.inputs, self.settings.limits.max_input_chars)
        except InputError as exc:
            raise ApiError(422, "invalid_input", str(exc)) from None
        return loaded, model


def models_router(served: ServedModels, gateway: Gateway | None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["models"], route_class=api_route(gateway))
    metrics = served.metrics

    def admitted(action: str | None) -> Any:
        """A dependency giving the route its :class:`Call`: in scope, metered."""

        # async: a plain def would be run on the thread pool, a hand-over per request for
        # what is a few dictionary lookups (on 2 cores, a search's p50 went 2 ms down).
        async def dependency(request: Request, name: str | None = None) -> Call:
            return OpenCall() if gateway is None else gateway.admit(request, name, action)

        return Depends(dependency)

    any_call, predict_call, explain_call = admitted(None), admitted("predict"), admitted("explain")

    @router.get("/models", response_model=ModelList, responses=AUTH_RESPONSES)
    def list_models(call: Call = any_call) -> ModelList:
        served.require_ready()
        return ModelList(
            data=[
                ModelInfo(
                    id=name,
                    created=int(
                        datetime.fromisoformat(loaded.version.manifest["created_at"]).timestamp()
                    ),
                    name=name,
                    version=loaded.version.version,
                    task=loaded.version.manifest["task"],
                    capabilities=sorted(loaded.model.capabilities),
                    labels=loaded.model.labels,
                    created_at=loaded.version.manifest["created_at"],
                    input_schema=(
                        predictor(loaded.model).input_schema()
                        if "predict" in loaded.model.capabilities
                        else None
                    ),
                )
                for name, loaded in sorted(served.store.models.items())
                if call.may_use(name)
            ]
        )

    @router.post("/models/{name}/predict", response_model=PredictResponse, responses=CALL_RESPONSES)
    async def predict(name: str, request: PredictRequest, call: Call = predict_call) -> Response:
        started = time.perf_counter()
        model_label = name if name in served.store.models else "unknown"
        status = 500
        try:
            loaded, model = served.checked(name, request)

            async def run() -> PredictResponse:
                try:
                    predictions = await served.batcher(name, model).submit(request.inputs)
                except Overloaded as exc:
                    raise ApiError(
                        503,
                        "overloaded",
                        f"server busy: {exc}; retry shortly",
                        {"Retry-After": "1"},
                    ) from None
                return PredictResponse(
                    model=name, version=loaded.version.version, predictions=predictions
                )

            response = await call.respond(run, units=len(request.inputs), request=request)
            status = response.status_code
            return response
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(model_label, "predict", str(status)).inc()
            metrics.latency.labels(model_label, "predict").observe(time.perf_counter() - started)

    @router.post(
        "/models/{name}/explain",
        response_model=ExplainResponse,
        responses={**CALL_RESPONSES, 501: {"description": "The model's task has no explanations"}},
    )
    async def explain(name: str, request: PredictRequest, call: Call = explain_call) -> Response:
        loaded, model = served.checked(name, request)
        if "explain" not in model.capabilities:
            raise ApiError(
                501, "not_supported", f"model '{name}' ({model.name}) has no explanations"
            )

        async def run() -> ExplainResponse:
            try:
                # Attributions are heavy and not batched: off the event loop, in a lane of
                # their own.
                explanations = await served.lane(name).run(model.explain, request.inputs)
            except NotSupportedError as exc:
                raise ApiError(501, "not_supported", str(exc)) from None
            except Overloaded as exc:
                raise ApiError(
                    503, "overloaded", f"server busy: {exc}; retry shortly", {"Retry-After": "1"}
                ) from None
            return ExplainResponse(
                model=name, version=loaded.version.version, explanations=explanations
            )

        return await call.respond(run, units=len(request.inputs), request=request)

    return router
