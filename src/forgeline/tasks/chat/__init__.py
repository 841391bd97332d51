"""Chat and text generation on a GGUF model, served by continuous batching."""

from forgeline.tasks.chat.model import ChatModel

__all__ = ["ChatModel"]
