"""The server's one error shape, ``{"error": {"code", "message"}}``, and the exception behind it."""

from __future__ import annotations

import json

from fastapi.responses import Response


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
