"""The server's logging: uvicorn's setup, plus Forgeline's own loggers, with credentials masked
in every line (see :class:`forgeline.credentials.HideCredentials`).

Request content (inputs, prompts, stored responses) is never logged: log lines name requests by
their id, and database errors carry no statement parameters (``hide_parameters``).
"""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG


def logging_config(level: str = "INFO") -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"credentials": {"()": "forgeline.credentials.HideCredentials"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["credentials"]
    config["loggers"]["forgeline"] = {"handlers": ["default"], "level": level, "propagate": False}
    # Every other library's warnings too (SQLAlchemy's pool, asyncio, drivers), through the
    # same masking handler rather than Python's unfiltered fallback.
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
