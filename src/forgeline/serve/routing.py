"""The route class of the API routers: what runs before FastAPI reads a request's body.

FastAPI reads and parses the body before it resolves a route's dependencies, so a check made
in a dependency comes after that work. With a :class:`~forgeline.serve.gateway.Gateway`, the
key is checked and rate-limited here instead, from the headers alone: a request without a valid
key costs no body parsing, and gets 401 whatever its body holds. Then the body's text is
checked, for every route at once: it must be UTF-8 (RFC 8259; the JSON parser would otherwise
guess UTF-16 or let encoded surrogates through), and hold no lone surrogate escape such as
``"\\ud800"``, which no tokenizer or database can take (422, naming where).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from forgeline.serve.errors import ApiError

if TYPE_CHECKING:
    from forgeline.serve.gateway import Gateway

# Once a body is known to be strict UTF-8 (which refuses encoded surrogates), a lone surrogate
# can only arrive as an escape. Bodies without such an escape (nearly all) skip the walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def api_route(
    gateway: Gateway | None,
    refused: Callable[[Request, ApiError], Awaitable[None]] | None = None,
) -> type[APIRoute]:
    """A route class that admits the caller's key (when ``gateway`` is given) and checks the
    body's text before the route runs; ``refused`` is told of each request whose key is
    refused (401, 403), before it is answered."""

    class ApiRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                if gateway is not None:
                    try:
                        request.state.principal = await gateway.admit_key(request)
                    except ApiError as exc:
                        if refused is not None and exc.status in (401, 403):
                            await refused(request, exc)
                        raise
                await _refuse_invalid_unicode(request)
                return await handler(request)

            return guarded

    return ApiRoute


async def _refuse_invalid_unicode(request: Request) -> None:
    body = await request.body()  # cached on the request: the route reads it from there
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "invalid_encoding", f"the request body is not UTF-8 (byte {exc.start})"
        ) from None
    if b"\x00" in body:  # JSON never holds a raw NUL; UTF-16 text is full of them
        raise ApiError(400, "invalid_encoding", "the request body is not UTF-8 JSON")
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        parsed = json.loads(body)
        where = invalid_text_location(parsed)
    except ValueError:
        return  # the route answers 400 for malformed JSON
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body is nested too deeply") from None
    if where is not None:
        raise ApiError(
            422,
            "invalid_text",
            f"{where}: text is not valid Unicode (it holds a lone surrogate escape such as "
            "\\ud800); send UTF-8 text",
        )


def invalid_text_location(value: Any, where: str = "body") -> str | None:
    """Where in parsed JSON a string (value or object key) cannot be encoded as UTF-8."""
    if isinstance(value, str):
        return None if _is_unicode(value) else where
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = invalid_text_location(item, f"{where}[{index}]")
            if found is not None:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            name = where if where != "body" else ""
            path = f"{name}.{key}" if name else str(key)
            if not _is_unicode(key):
                return f"{name or 'body'} (a key)"
            found = invalid_text_location(item, path)
            if found is not None:
                return found
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
