"""The HTTP API: FastAPI app serving every model in a registry."""

from forgeline.serve.app import create_app

__all__ = ["create_app"]
