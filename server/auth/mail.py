"""Outgoing mail: SMTP through aiosmtplib, or the console in development.

`SMTP_URL` looks like `smtp://user:password@host:587?starttls=true` or `smtps://host:465`. With no
SMTP_URL, development prints mail to standard output (never through the logger, whose lines may be
shipped elsewhere: mail carries single-use links).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from server.observability.logging import get_logger

log = get_logger("vonix.mail")


class Mailer(Protocol):
    async def send(self, to: str, subject: str, text: str) -> None: ...


@dataclass(frozen=True)
class SmtpMailer:
    url: str
    sender: str
    timeout: float = 10.0
    breakers: Any = None  # the SMTP server behind a circuit breaker: a dead relay fails fast

    async def send(self, to: str, subject: str, text: str) -> None:
        if self.breakers is None:
            await self._send(to, subject, text)
            return
        await self.breakers.call("smtp", lambda: self._send(to, subject, text))

    async def _send(self, to: str, subject: str, text: str) -> None:
        parts = urlsplit(self.url)
        query = parse_qs(parts.query)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        await aiosmtplib.send(
            message,
            hostname=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=query.get("starttls", ["false"])[0] == "true",
            timeout=self.timeout,
        )
        log.info("mail_sent", subject=subject)


@dataclass(frozen=True)
class ConsoleMailer:
    sender: str

    async def send(self, to: str, subject: str, text: str) -> None:
        print(f"\n--- mail to {to}: {subject} ---\n{text}\n--- end of mail ---\n", file=sys.stdout, flush=True)
        log.info("mail_printed", subject=subject)
