"""Hot history: offsets, epochs and a bounded window of recent frames per channel."""

from realtime.history.base import FrameParts, History, Published, create_history

__all__ = ["FrameParts", "History", "Published", "create_history"]
