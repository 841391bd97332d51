"""The FastAPI application: model listing, prediction, health and readiness.

Models load in a background thread so ``/healthz`` answers at once and ``/readyz`` tells a load
balancer when predictions can be served. Predict requests go through an adaptive batcher
per model (see :mod:`forgeline.serve.batching`), which calls the task's batch ``predict``.
With a :class:`~forgeline.serve.gateway.Gateway`, every /v1 call needs an API key and is rate
limited, quota-checked and metered (see :mod:`forgeline.serve.gateway`); the admin API under
/admin/v1 manages keys, usage and invoices.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from forgeline import __version__
from forgeline.config.service import ServeConfig
from forgeline.errors import ForgelineError, InputError, NotSupportedError
from forgeline.registry import LoadedModel, ModelRegistry
from forgeline.serve.admin import admin_router
from forgeline.serve.batching import Batcher, Overloaded
from forgeline.serve.errors import ApiError, error_response
from forgeline.serve.gateway import Call, Gateway, OpenCall
from forgeline.serve.limits import BodySizeLimit
from forgeline.serve.metrics import ServerMetrics
from forgeline.serve.request_id import RequestId

log = logging.getLogger("forgeline.serve")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(
        min_length=1,
        description=(
            "The inputs: texts for a text classifier, objects of feature values for a tabular one."
        ),
        examples=[
            ["I lost my card", "what is my balance"],
            [{"limit_bal": 20000, "age": 24, "utilization": 0.95}],
        ],
    )


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[dict[str, Any]] = Field(
        description=(
            "One per input, in order. Text classifiers give label, score (the probability of "
            "label), fallback (whether the confidence threshold chose the label) and "
            "probabilities; tabular classifiers give label, probability (calibrated), score "
            "(scorecard points), decision and reason_codes."
        )
    )


class ExplainResponse(BaseModel):
    model: str
    version: str
    explanations: list[dict[str, Any]] = Field(
        description="One per input: base value, margin and each feature's contribution to it."
    )


class ModelInfo(BaseModel):
    name: str
    version: str
    task: str
    labels: list[str]
    created_at: str
    input_schema: dict[str, Any] = Field(description="JSON Schema of one item of `inputs`.")


class ModelStore:
    """The loaded models, filled by a background thread at startup."""

    def __init__(self, registry: ModelRegistry, names: list[str] | None) -> None:
        self.registry = registry
        self.names = names
        self.models: dict[str, LoadedModel] = {}
        self.ready = threading.Event()
        self.failure: str | None = None

    def load_all(self) -> None:
        try:
            for name in self.names or self.registry.names():
                loaded = self.registry.load(name)
                self.models[name] = loaded
                log.info("loaded model %s %s", name, loaded.version.version)
            # Models and libraries live as long as the process: moving them out of the garbage
            # collector's generations keeps each full collection from walking them, which
            # stalled every request in flight for about 300 ms under load (serve_bench.py).
            gc.collect()  # first, so only live objects are frozen
            gc.freeze()
            self.ready.set()
        except ForgelineError as exc:
            self.failure = str(exc)
            log.error("cannot load models: %s", exc)


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or an invalid, revoked or expired one"},
    403: {"description": "The key may not use this model or action"},
    429: {"description": "Over the plan's rate limit (Retry-After)"},
}
METERED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    402: {"description": "A hard-capped plan's monthly quota is used up"},
}


def create_app(
    registry: ModelRegistry,
    settings: ServeConfig,
    names: list[str] | None = None,
    gateway: Gateway | None = None,
) -> FastAPI:
    """The app; ``gateway`` is required when ``settings.auth`` is on and unused otherwise."""
    if settings.auth and gateway is None:
        raise ValueError("serve.auth is on: create_app needs a Gateway")
    access = gateway if settings.auth else None
    store = ModelStore(registry, names)
    limits = settings.limits
    metrics = ServerMetrics()
    batchers: dict[str, Batcher] = {}

    def batcher_for(name: str, loaded: LoadedModel) -> Batcher:
        if name not in batchers:
            batchers[name] = Batcher(
                predict=loaded.model.predict,
                settings=settings.models.get(name, settings.batching),
                on_batch=metrics.batch_size.labels(name).observe,
                on_queue=metrics.queue_depth.labels(name).set,
            )
        return batchers[name]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=store.load_all, name="model-loader", daemon=True).start()
        if access is not None:
            access.start()
        yield
        if access is not None:
            await access.close()

    app = FastAPI(
        title="Forgeline",
        version=__version__,
        description="Predictions from models trained with Forgeline.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_body_bytes=limits.max_body_bytes)
    app.add_middleware(RequestId)  # added last, so outermost: even a 413 carries the id

    def admitted(action: str | None) -> Any:
        """A dependency giving the route its :class:`Call`: checked, rate-limited, metered."""

        async def dependency(request: Request, name: str | None = None) -> Call:
            if access is None:
                return OpenCall()
            return await access.admit(request, name, action)

        return Depends(dependency)

    any_call, predict_call, explain_call = admitted(None), admitted("predict"), admitted("explain")

    @app.exception_handler(ApiError)
    async def _apierror_response(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _httperror_response(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            position = errors[0]["loc"][-1]
            return error_response(
                400, "invalid_json", f"request body is not valid JSON (at character {position})"
            )
        problems = []
        for item in errors:
            where = ".".join(str(part) for part in item["loc"] if part != "body") or "body"
            problems.append(f"{where}: {item['msg']}")
        return error_response(422, "invalid_request", "; ".join(problems))

    def get_model(name: str) -> LoadedModel:
        if not store.ready.is_set():
            raise ApiError(503, "not_ready", store.failure or "models are still loading")
        if name not in store.models:
            known = ", ".join(sorted(store.models)) or "none"
            raise ApiError(404, "unknown_model", f"no model named '{name}' (served: {known})")
        return store.models[name]

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Models are loaded and predictions can be served")
    def readyz() -> JSONResponse:
        if store.ready.is_set():
            return JSONResponse({"status": "ready", "models": sorted(store.models)})
        status = "failed" if store.failure else "loading"
        return JSONResponse({"status": status, "detail": store.failure}, status_code=503)

    @app.get(
        "/v1/models", tags=["models"], response_model=list[ModelInfo], responses=AUTH_RESPONSES
    )
    def list_models(call: Call = any_call) -> list[ModelInfo]:
        if not store.ready.is_set():
            raise ApiError(503, "not_ready", store.failure or "models are still loading")
        return [
            ModelInfo(
                name=name,
                version=loaded.version.version,
                task=loaded.version.manifest["task"],
                labels=loaded.model.labels,
                created_at=loaded.version.manifest["created_at"],
                input_schema=loaded.model.input_schema(),
            )
            for name, loaded in sorted(store.models.items())
            if call.may_use(name)
        ]

    @app.post(
        "/v1/models/{name}/predict",
        tags=["models"],
        response_model=PredictResponse,
        responses={
            **METERED_RESPONSES,
            404: {"description": "No such model"},
            413: {"description": "Request body over max_body_bytes"},
            422: {"description": "Invalid inputs, or over max_inputs_per_request/max_input_chars"},
            503: {"description": "Models are still loading, or the queue is full (Retry-After)"},
        },
    )
    async def predict(name: str, request: PredictRequest, call: Call = predict_call) -> Response:
        started = time.perf_counter()
        model_label = name if name in store.models else "unknown"
        status = 500
        try:
            loaded = checked(name, request)

            async def run() -> PredictResponse:
                try:
                    predictions = await batcher_for(name, loaded).submit(request.inputs)
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

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/models/{name}/explain",
        tags=["models"],
        response_model=ExplainResponse,
        responses={
            **METERED_RESPONSES,
            404: {"description": "No such model"},
            422: {"description": "Invalid inputs"},
            501: {"description": "The model's task has no explanations yet"},
        },
    )
    async def explain(name: str, request: PredictRequest, call: Call = explain_call) -> Response:
        loaded = checked(name, request)

        async def run() -> ExplainResponse:
            try:
                # Attributions are heavy and not batched: off the event loop.
                explanations = await asyncio.to_thread(loaded.model.explain, request.inputs)
            except NotSupportedError as exc:
                raise ApiError(501, "not_supported", str(exc)) from None
            return ExplainResponse(
                model=name, version=loaded.version.version, explanations=explanations
            )

        return await call.respond(run, units=len(request.inputs), request=request)

    def checked(name: str, request: PredictRequest) -> LoadedModel:
        """The named model, once the request is within limits and its inputs are valid."""
        loaded = get_model(name)
        if len(request.inputs) > limits.max_inputs_per_request:
            raise ApiError(
                422,
                "too_many_inputs",
                f"{len(request.inputs)} inputs is over the limit "
                f"max_inputs_per_request={limits.max_inputs_per_request}",
            )
        try:
            loaded.model.check_inputs(request.inputs, limits.max_input_chars)
        except InputError as exc:
            raise ApiError(422, "invalid_input", str(exc)) from None
        return loaded

    if access is not None:
        # Last, so /v1 requests are matched against their own routes first.
        app.include_router(admin_router(access))
    return app
