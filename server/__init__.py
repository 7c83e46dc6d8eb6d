"""Vonix HTTP application: auth, data, ops. May use `realtime`; never the other way round."""

__version__ = "0.1.0"
