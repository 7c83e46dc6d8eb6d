"""structlog set-up: JSON lines in production, a readable console in development.

Every log line passes through `redact_secrets`, so a password, token or cookie handed to a logger
by mistake is masked before it is rendered. Standard-library loggers (uvicorn, alembic, asyncio)
go through the same processors so the output is one format.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import orjson
import structlog

_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|otp|totp|recovery|reset_link|dsn",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
REDACTED = "[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(r"\g<scheme>" + REDACTED + "@", value)
        return _BEARER.sub(r"\1" + REDACTED, value)
    if isinstance(value, dict):
        return {k: (REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Mask values whose key looks secret, passwords inside URLs and bearer tokens in strings."""
    for key in list(event_dict):
        if key == "event":
            event_dict[key] = _scrub(event_dict[key])
        elif _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "INFO", json_logs: bool = False, stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    renderer: Any
    if json_logs:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)

    structlog.configure(
        # Level first: a debug line on a hot path costs one check, not the whole chain, when off.
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_vonix", False):
            root.removeHandler(old)
    handler._vonix = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # We write our own access log with the request id; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("databases").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
