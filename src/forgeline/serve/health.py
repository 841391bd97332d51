"""``/healthz``, ``/readyz`` and ``/metrics``: for load balancers and monitoring.

The two probes answer anyone, so they say only what a load balancer needs (a status and a count
of models), never model names, versions, paths or reasons: those are in the server log.
``/metrics`` shows traffic per model, so it needs an admin key unless ``serve.metrics`` is
``public``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from forgeline.serve.errors import ApiError
from forgeline.serve.gateway import Gateway
from forgeline.serve.metrics import ServerMetrics
from forgeline.serve.store import ModelStore


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "loading", "failed", "metering_unavailable"]
    models: int


def health_router(
    store: ModelStore, metrics: ServerMetrics, gateway: Gateway | None, metrics_public: bool
) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is up", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok")

    @router.get(
        "/readyz",
        summary="Models are loaded and calls can be served (and metered)",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready: loading or failed"}},
    )
    def readyz() -> JSONResponse:
        status = store.status
        if status == "ready" and gateway is not None and not gateway.ledger.health().ok:
            status = "metering_unavailable"
        body = Readiness(status=status, models=len(store.models))
        return JSONResponse(body.model_dump(), status_code=200 if status == "ready" else 503)

    async def metrics_reader(request: Request) -> None:
        if gateway is None or metrics_public:
            return
        principal = await gateway.admit_key(request)
        if not principal.is_admin:
            raise ApiError(403, "not_admin", "reading /metrics needs an admin key")

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        dependencies=[Depends(metrics_reader)],
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
            **(
                {}
                if gateway is None or metrics_public
                else {
                    401: {"description": "No admin key, or an invalid one"},
                    403: {"description": "Not an admin key"},
                    429: {"description": "Over the admin rate limit (Retry-After)"},
                }
            ),
        },
    )
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
