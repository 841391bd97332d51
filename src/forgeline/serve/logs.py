"""The server's logging: uvicorn's setup, plus Forgeline's own loggers, with credentials masked
in every line (see :class:`forgeline.credentials.HideCredentials`).

Request content (inputs, prompts, stored responses) is never logged: log lines name requests by
their id, database errors carry no statement parameters (``hide_parameters``), and the access
log shows paths without their query strings (:class:`PathsOnly`), where a client may have put
anything.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG


class PathsOnly(logging.Filter):
    """Uvicorn's access lines without the query string: ``GET /v1/models?email=... 200``
    is logged as ``GET /v1/models 200``."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn.protocols.http: (client_addr, method, full_path, http_version, status_code)
        if isinstance(record.args, tuple) and len(record.args) == 5:
            address, method, path, version, status = record.args
            if isinstance(path, str) and "?" in path:
                record.args = (address, method, path.split("?", 1)[0], version, status)
        return True


def logging_config(level: str = "INFO") -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "credentials": {"()": "forgeline.credentials.HideCredentials"},
        "paths_only": {"()": "forgeline.serve.logs.PathsOnly"},
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["credentials"]
    config["handlers"]["access"]["filters"].append("paths_only")
    config["loggers"]["forgeline"] = {"handlers": ["default"], "level": level, "propagate": False}
    # Every other library's warnings too (SQLAlchemy's pool, asyncio, drivers), through the
    # same masking handler rather than Python's unfiltered fallback.
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
