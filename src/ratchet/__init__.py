"""ratchet: an AI agent that improves its own harness, data and training recipe, and proves it."""

__version__ = "0.1.0"
