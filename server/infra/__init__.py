"""Connections to the engines Vonix depends on (Redis); opened and closed by the lifespan."""
