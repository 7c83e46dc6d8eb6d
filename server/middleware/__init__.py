"""Pure ASGI middleware, one concern per module (they also see websocket scopes untouched)."""
