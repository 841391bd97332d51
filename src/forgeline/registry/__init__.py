"""The model registry: immutable, verified model versions under ``models/<name>/<version>/``."""

from forgeline.registry.store import LoadedModel, ModelRegistry, ModelVersion

__all__ = ["LoadedModel", "ModelRegistry", "ModelVersion"]
