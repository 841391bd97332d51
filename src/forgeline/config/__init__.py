"""Project configuration: the pydantic schema of ``forgeline.yaml`` and its loader."""

from forgeline.config.load import Project, find_project_file, load_project
from forgeline.config.schema import (
    PROJECT_CONFIG,
    AnyTaskConfig,
    TabularClassificationConfig,
    TextClassificationConfig,
)

__all__ = [
    "PROJECT_CONFIG",
    "AnyTaskConfig",
    "Project",
    "TabularClassificationConfig",
    "TextClassificationConfig",
    "find_project_file",
    "load_project",
]
