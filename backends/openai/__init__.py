"""OpenAI fine-tuning backend (official `openai` SDK, async client)."""

from backends.openai.backend import OpenAIBackend
from backends.openai.errors import OpenAIBackendError

__all__ = ["OpenAIBackend", "OpenAIBackendError"]
