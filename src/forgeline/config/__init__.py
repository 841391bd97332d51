"""Project configuration: the pydantic schema of ``forgeline.yaml`` and its loader."""

from forgeline.config.load import find_project_file, load_project
from forgeline.config.schema import (
    DataConfig,
    FallbackConfig,
    LimitsConfig,
    ProjectConfig,
    ServeConfig,
    SplitConfig,
    TrainingConfig,
)

__all__ = [
    "DataConfig",
    "FallbackConfig",
    "LimitsConfig",
    "ProjectConfig",
    "ServeConfig",
    "SplitConfig",
    "TrainingConfig",
    "find_project_file",
    "load_project",
]
