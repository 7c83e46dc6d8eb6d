"""Who is in a channel, across replicas: one small interface, an in-process and a Redis backend."""

from realtime.presence.base import Presence, PresenceUnavailable, PresenceUser, create_presence

__all__ = ["Presence", "PresenceUnavailable", "PresenceUser", "create_presence"]
