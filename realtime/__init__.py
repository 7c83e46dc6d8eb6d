"""Vonix realtime core: websocket hub, protocol, fan-out, presence, history, bot client.

Nothing here imports Starlette routes or the `server` package: the HTTP layer adapts its
websockets to this package's transport interface, never the reverse.
"""
