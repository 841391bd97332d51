"""Schemathesis hooks for the fuzzing pass (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import schemathesis

from forgeline.serve.openapi import IDEMPOTENCY_KEY_PATTERN


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, **kwargs: Any) -> None:
    """Bind each valid Idempotency-Key to its request, as a correct client does. A fuzzer drawing
    keys at random reuses one for a different request, which the server rightly refuses with
    422 (as the IETF Idempotency-Key draft says), and the fuzzer would count as a failure."""
    headers: dict[str, str] = case.headers or {}
    key = headers.get("Idempotency-Key")
    if key is None or not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        return  # an invalid key must reach the server as generated: it is the test
    request = json.dumps([case.method, case.path, case.body], sort_keys=True, default=str)
    digest = hashlib.sha256(request.encode()).hexdigest()[:16]
    case.headers["Idempotency-Key"] = f"{key[:238]}-{digest}"
