"""The route class of the API routers: what runs before FastAPI reads a request's body.

FastAPI reads and parses the body before it resolves a route's dependencies, so a check made
in a dependency comes after that work. With a :class:`~forgeline.serve.gateway.Gateway`, the
key is checked and rate-limited here instead, from the headers alone: a request without a valid
key costs no body parsing, and gets 401 whatever its body holds. Then the body is refused if it
holds text that is not valid Unicode (a JSON escape of a lone surrogate such as ``"\\ud800"``),
which no tokenizer or database can take: a 422 naming where, for every route at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from forgeline.serve.errors import ApiError

if TYPE_CHECKING:
    from forgeline.serve.gateway import Gateway

# A lone surrogate can only arrive as an escape: as raw bytes it is invalid UTF-8, which the
# JSON parser already refuses. Bodies without such an escape (nearly all) skip the walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def api_route(gateway: Gateway | None) -> type[APIRoute]:
    """A route class that admits the caller's key (when ``gateway`` is given) and checks the
    body's text before the route runs."""

    class ApiRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                if gateway is not None:
                    request.state.principal = await gateway.admit_key(request)
                await _refuse_invalid_unicode(request)
                return await handler(request)

            return guarded

    return ApiRoute


async def _refuse_invalid_unicode(request: Request) -> None:
    body = await request.body()  # cached on the request: the route reads it from there
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return  # the route answers 400 for malformed JSON
    where = invalid_text_location(parsed)
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
