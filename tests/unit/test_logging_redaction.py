from __future__ import annotations

from server.observability.logging import REDACTED, redact_secrets


def test_secret_keys_and_embedded_secrets_are_masked() -> None:
    event = redact_secrets(None, "info", {
        "event": "connecting to postgresql://vonix:hunter2@db/vonix",
        "password": "hunter2",
        "refresh_token": "abc",
        "headers": {"Authorization": "Bearer eyJhbGciOi.x.y", "accept": "json"},
        "note": "sent Bearer abcdef123",
        "count": 3,
    })
    rendered = repr(event)
    assert "hunter2" not in rendered
    assert "abcdef123" not in rendered
    assert "eyJhbGciOi" not in rendered
    assert event["password"] == REDACTED
    assert event["headers"]["accept"] == "json"
    assert event["count"] == 3
