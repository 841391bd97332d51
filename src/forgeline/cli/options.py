"""Options shared by several commands."""

from pathlib import Path
from typing import Annotated

import typer

from forgeline.config.load import PROJECT_FILE

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=f"Project config (default: ./{PROJECT_FILE})."),
]

VersionOption = Annotated[
    str,
    typer.Option("--model-version", "-m", help="Model version, e.g. v2 (default: latest)."),
]
