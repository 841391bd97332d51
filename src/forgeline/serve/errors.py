"""The server's one error shape, ``{"error": {"code", "message"}}``, the exception behind it, and
the handlers that turn every failure into it.

What a client reads is written for the client: a mistake of theirs says what is wrong and where;
a failure of ours (a bug, an unreachable database or Redis, a model that would not load) says
only that it happened and the request id. The detail goes to the server log, under that id, with
credentials masked (see :mod:`forgeline.serve.logs`): internal addresses, file paths and
secrets never reach a client.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("forgeline.serve")


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        error_body(code, message),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class ApiError(Exception):
    """Raised anywhere in a request to answer with ``status`` and the error shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "unknown"))


def unavailable(
    request: Request, code: str, what: str, detail: str, retry_after: int | None = 1
) -> ApiError:
    """A 503 for a failure of ours: ``what`` for the client, ``detail`` for the log only."""
    rid = request_id(request)
    log.error("request %s: %s: %s", rid, code, detail)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(503, code, f"{what} (request id {rid})", headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path served by
            # several routes (GET and POST /admin/v1/keys) must list them all.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers or None)

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

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        rid = request_id(request)
        log.error("request %s failed", rid, exc_info=exc)
        # This handler runs outside every middleware, so it sets the request id header itself.
        return error_response(
            500,
            "internal_error",
            f"internal error; the server log has details (request id {rid})",
            {"X-Request-Id": rid},
        )


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
