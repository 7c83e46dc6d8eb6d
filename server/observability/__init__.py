"""Logging, metrics and (later) tracing and error tracking."""
