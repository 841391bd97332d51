"""The server's one error shape, the exception behind it, and the handlers that turn every
failure into it: ``{"error": {"code", "message", "type", "param"}}``, OpenAI's error body, so
that the official client libraries read Forgeline's errors on every route (``type`` says the
kind of error, ``param`` the request field at fault, or null).

What a client reads is written for the client: a mistake of theirs says what is wrong and where;
a failure of ours (a bug, an unreachable database or Redis, a model that would not load) says
only that it happened and the request id. The detail goes to the server log, under that id, with
credentials masked (see :mod:`forgeline.serve.logs`): internal addresses, file paths and
secrets never reach a client.
"""

from __future__ import annotations

import json
import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("forgeline.serve")
OPENAI_TAG = "openai"
"""The tag of the OpenAI-compatible routes, whose validation errors are 400s."""


ERROR_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    """OpenAI's name for the kind of error a status is."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, code: str, message: str, param: str | None = None) -> bytes:
    error = {"code": code, "message": message, "type": error_type(status), "param": param}
    return json.dumps({"error": error}).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> Response:
    return Response(
        error_body(status, code, message, param),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class ApiError(Exception):
    """Raised anywhere in a request to answer with ``status`` and the error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.param = param


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
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.param)

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
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            position = errors[0]["loc"][-1]
            return error_response(
                400, "invalid_json", f"request body is not valid JSON (at character {position})"
            )
        problems = []
        fields = []
        for item in errors:
            where = ".".join(str(part) for part in item["loc"] if part != "body") or "body"
            fields.append(where)
            problems.append(f"{where}: {item['msg']}")
        # OpenAI's routes answer an invalid parameter with 400, as OpenAI does; Forgeline's
        # own routes with 422.
        route = request.scope.get("route")
        status = 400 if OPENAI_TAG in getattr(route, "tags", ()) else 422
        return error_response(status, "invalid_request", "; ".join(problems), param=fields[0])

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        rid = request_id(request)
        # Where it failed, but not the exception's message: it may quote request content
        # (an input value in a KeyError), which must not reach the log.
        where = "".join(traceback.format_tb(exc.__traceback__))
        log.error("request %s failed: %s (message withheld)\n%s", rid, type(exc).__name__, where)
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
