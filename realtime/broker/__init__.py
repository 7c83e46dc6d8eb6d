"""Cross-replica fan-out: one small interface, an in-process and a Redis implementation."""

from realtime.broker.base import Broker, MessageHandler, create_broker

__all__ = ["Broker", "MessageHandler", "create_broker"]
