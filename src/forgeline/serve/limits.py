"""Request body size limit as ASGI middleware.

An oversized request is refused by its Content-Length when it declares one, before anything is
read. A chunked body is counted as the route reads it, and refused (413) the moment it passes
the limit, so no more than the limit is ever held in memory. Nothing is read before the route
runs: the key is checked first (see :mod:`forgeline.serve.routing`), so a caller without a key
cannot make the server take in a body at all.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgeline.serve.errors import error_body


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit; answered 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit max_body_bytes={limit}")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _refuse(self, send: Send) -> None:
        body = error_body(
            413,
            "body_too_large",
            f"request body is over the limit max_body_bytes={self.max_body_bytes}",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                await self._refuse(send)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, counted, send)
