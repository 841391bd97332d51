"""Options shared by several commands."""

from pathlib import Path
from typing import Annotated

import typer

from forgeline.config.load import PROJECT_FILE

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=f"Project config (default: ./{PROJECT_FILE})."),
]
