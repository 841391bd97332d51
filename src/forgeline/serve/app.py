"""The FastAPI application: the routers of each surface, wired to one model store.

* :mod:`~forgeline.serve.health`: ``/healthz``, ``/readyz``, ``/metrics``;
* :mod:`~forgeline.serve.predict`: ``/v1/models``, predict and explain;
* :mod:`~forgeline.serve.openai`: OpenAI's chat completions and completions;
* :mod:`~forgeline.serve.redact`: ``/v1/redact`` (with ``serve.redact``);
* :mod:`~forgeline.serve.admin`: keys, usage and invoices under ``/admin/v1`` (with auth on).

Models load in a background thread (:class:`~forgeline.serve.store.ModelStore`). With a
:class:`~forgeline.serve.gateway.Gateway`, every /v1 call needs an API key and is rate limited,
quota-checked and metered.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from forgeline import __version__
from forgeline.config.privacy import PrivacyConfig
from forgeline.config.service import ServeConfig
from forgeline.registry import ModelRegistry
from forgeline.serve.admin import admin_router
from forgeline.serve.admin_schemas import create_key_schema
from forgeline.serve.errors import install_error_handlers
from forgeline.serve.gateway import Gateway
from forgeline.serve.health import health_router
from forgeline.serve.limits import BodySizeLimit
from forgeline.serve.metrics import ServerMetrics
from forgeline.serve.openai import openai_router
from forgeline.serve.openapi import generic_document, typed_document
from forgeline.serve.predict import AUTH_RESPONSES, ServedModels, models_router
from forgeline.serve.privacy import ServerPrivacy
from forgeline.serve.redact import redact_router
from forgeline.serve.request_id import RequestId
from forgeline.serve.routing import api_route
from forgeline.serve.store import ModelStore


def create_app(
    registry: ModelRegistry,
    settings: ServeConfig,
    names: list[str] | None = None,
    gateway: Gateway | None = None,
    privacy: ServerPrivacy | None = None,
) -> FastAPI:
    """The app; ``gateway`` is required when ``settings.auth`` is on and unused otherwise.
    ``privacy``: the serving project's privacy settings, for /v1/redact (default: the
    defaults, without the privacy key)."""
    if settings.auth and gateway is None:
        raise ValueError("serve.auth is on: create_app needs a Gateway")
    access = gateway if settings.auth else None
    privacy = privacy or ServerPrivacy(
        PrivacyConfig(),
        registry.root,
        registry.root,
        redact=settings.redact,
        max_queue=settings.batching.max_queue,
    )
    store = ModelStore(registry, names, then=[privacy.load])
    metrics = ServerMetrics()
    served = ServedModels(store, settings, metrics, privacy)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=store.load_all, name="model-loader", daemon=True).start()
        if access is not None:
            access.start()
        yield
        store.close()
        if access is not None:
            await access.close()

    app = FastAPI(
        title="Forgeline",
        version=__version__,
        description="Predictions from models trained with Forgeline.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestId)  # added last, so outermost: even a 413 carries the id
    install_error_handlers(app)
    public_metrics = access is None or settings.metrics == "public"
    app.include_router(health_router(store, metrics, access, public_metrics))
    app.include_router(models_router(served, access))
    app.include_router(openai_router(served, access))
    if privacy.offers_redact:
        app.include_router(redact_router(served, access))
    app.include_router(_openapi_router(app, served, access))
    if access is not None:
        app.include_router(admin_router(access))

    def openapi() -> dict[str, Any]:
        generic = generic_document(app, secured=access is not None)
        if access is None and store.ready.is_set():  # an open server shows its models to all
            return typed_document(generic, store.models, settings.limits)
        return generic

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _openapi_router(app: FastAPI, served: ServedModels, gateway: Gateway | None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["models"], route_class=api_route(gateway))

    @router.get(
        "/openapi.json",
        summary="The OpenAPI document with one typed operation per model this key may use",
        responses={
            200: {"content": {"application/json": {"schema": {"type": "object"}}}},
            **AUTH_RESPONSES,
            503: {"description": "Models are not loaded yet"},
        },
        response_class=JSONResponse,
    )
    def typed_openapi(request: Request) -> JSONResponse:
        served.require_ready()
        principal = getattr(request.state, "principal", None)

        def visible(name: str) -> bool:
            return principal is None or principal.is_admin or principal.may_use(name)

        document = typed_document(
            generic_document(app, secured=gateway is not None),
            served.store.models,
            served.settings.limits,
            visible,
        )
        if gateway is not None and principal is not None and principal.is_admin:
            # An admin may see the plans a new tenant can be put on.
            create = document["paths"]["/admin/v1/keys"]["post"]["requestBody"]["content"]
            create["application/json"]["schema"] = create_key_schema(sorted(gateway.billing.plans))
        return JSONResponse(document)

    return router
