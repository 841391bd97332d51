"""A lean streaming client for load tests: one HTTP/1.1 POST per connection, its
server-sent events read straight off an asyncio stream.

The benchmarks run the load generator on the same cores as the server under test, so what the
client spends per event is taken from the server. httpx (h11, decoders, line splitting) costs
several times what this does per chunk; both servers under test are driven by this same client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit


class HttpStatusError(RuntimeError):
    pass


async def post_events(
    base: str, path: str, body: dict[str, Any], headers: dict[str, str]
) -> AsyncIterator[dict[str, Any]]:
    """POST ``body`` as JSON and yield each ``data: {...}`` event of the reply as a dict."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        payload = json.dumps(body).encode()
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: {url.netloc}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        status = int((await reader.readline()).split()[1])
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if status != 200:
            raise HttpStatusError(f"status {status}")
        pending = b""
        async for data in _body(reader, chunked):
            pending += data
            *events, pending = pending.split(b"\n")
            for event in events:
                if event.startswith(b"data: {"):
                    yield json.loads(event[6:])
    finally:
        writer.close()


async def _body(reader: asyncio.StreamReader, chunked: bool) -> AsyncIterator[bytes]:
    if not chunked:  # read to the end (the server closes: Connection: close)
        while data := await reader.read(65536):
            yield data
        return
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            return
        yield await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after each chunk
